/* The "retention" service: what the retention module offers the host's
 * POP3 session code and expiry job (see doc/retention.md).
 *
 * A host looks it up with dovekie_loader_service (loader, "retention", &ctx)
 * and calls every function with that ctx. All functions are non-NULL.
 * UIDs are INBOX UIDs; the module keeps its records in the host's
 * per-message store (DovekieRetentionStore below).
 */
#ifndef DOVEKIE_RETENTION_H
#define DOVEKIE_RETENTION_H

#include <glib.h>

#include "dovekie/module.h"

G_BEGIN_DECLS

#define DOVEKIE_RETENTION_SERVICE "retention"

/* Why the policy lets a message go. */
typedef enum {
  DOVEKIE_RETENTION_KEEP = 0,     /* not expunged */
  DOVEKIE_RETENTION_EXPIRED,      /* retention days after the first download are over */
  DOVEKIE_RETENTION_MAX_AGE,      /* older than the absolute maximum age */
  DOVEKIE_RETENTION_QUOTA,        /* over the quota threshold; oldest download first */
} DovekieRetentionReason;

/* The retention records live where the host keeps per-message state (the
 * Dovecot host: an index extension of INBOX, see doc/design-notes.md):
 * one fixed-size record per message, DOVEKIE_RETENTION_PACKED_SIZE bytes,
 * all zero for a message no POP3 client touched, and one table per
 * mailbox, DOVEKIE_RETENTION_TABLE_SIZE bytes, all zero when new. The
 * module owns both layouts (dovekie-retention-record.h); the host stores
 * the bytes, and drops a message's record with the message (expunge,
 * UIDVALIDITY change; a copy gets no record). A table an older version
 * stored is shorter (it lacked the last 16 bytes): the host hands it
 * over with the missing bytes as zero, and stores the whole size when it
 * is next written. */
#define DOVEKIE_RETENTION_PACKED_SIZE 24
#define DOVEKIE_RETENTION_TABLE_SIZE (8 + 64 * 65 + 64 * 8 + 16)

/* One INBOX message, as the host sees it. */
typedef struct {
  guint32 uid;
  gint64 saved; /* save (delivery) time, Unix seconds; -1 if unknown */
  gint64 size;  /* physical size in bytes; -1 if unknown */
  gboolean hidden; /* carries the hide keyword */
  guint8 packed[DOVEKIE_RETENTION_PACKED_SIZE]; /* its record, as stored */
} DovekieRetentionMessage;

/* What `doveadm dovekie status` shows of a user's retention state. */
typedef struct {
  guint records;    /* INBOX messages some POP3 view downloaded or DELEd */
  guint downloaded; /* of them, downloaded by at least one view */
  guint deleted;    /* of them, DELEd by at least one view (hidden or kept) */
  guint corrupt;    /* records that do not parse (their messages are kept) */
} DovekieRetentionSummary;

/* The host's records of one mailbox, inside one open host transaction
 * that the host commits (or rolls back) with the mailbox change that
 * made it call the module: what `put` writes is stored all or nothing,
 * with that change. */
typedef struct _DovekieRetentionStore DovekieRetentionStore;
struct _DovekieRetentionStore {
  /* The mailbox's table as of this transaction (TABLE_SIZE bytes). */
  const guint8 *table;
  /* Copies `uid`'s record into `packed` (PACKED_SIZE bytes; zero when it
   * has none or the message is gone). FALSE with `error` if unreadable. */
  gboolean (*get) (DovekieRetentionStore *store, guint32 uid, guint8 *packed, GError **error);
  /* Sets `uid`'s record (all zero: none); nothing if the message is gone.
   * FALSE with `error` if it cannot be written. */
  gboolean (*put) (DovekieRetentionStore *store, guint32 uid, const guint8 *packed,
                   GError **error);
  /* Sets the table (TABLE_SIZE bytes). FALSE with `error`. */
  gboolean (*put_table) (DovekieRetentionStore *store, const guint8 *table, GError **error);
};

typedef struct {
  /* The keyword that marks a message hidden from every POP3 view (the
   * host uses it as the session's pop3_deleted_flag). Valid until deinit. */
  const gchar *(*hide_keyword) (DovekieContext *ctx);
  /* POP3 listing: called once with the mailbox's table (TABLE_SIZE bytes)
   * before the host builds the session's message list, then pop3_hidden
   * once per message. */
  void (*pop3_listing) (DovekieContext *ctx, const guint8 *table);
  /* TRUE hides message `uid`, whose record is `packed`, from this
   * session. O(1), no allocation. */
  gboolean (*pop3_hidden) (DovekieContext *ctx, guint32 uid, const guint8 *packed);
  /* The session ended with QUIT (never called for a dropped session).
   * `retrieved`: UIDs the client RETRieved; `deleted`: UIDs it DELEd.
   * The module records them through `store` (inside the host's QUIT
   * transaction), then appends to `hide_uids` (guint32) the UIDs the host
   * must mark with hide_keyword. FALSE with `error` if the records could
   * not be written; the host then rolls the whole QUIT back. */
  gboolean (*pop3_quit) (DovekieContext *ctx, DovekieRetentionStore *store,
                         const guint32 *retrieved, guint n_retrieved,
                         const guint32 *deleted, guint n_deleted, GArray *hide_uids,
                         GError **error);
  /* The expiry plan for the whole INBOX (`messages`, all of them, in any
   * order, each with its record; `store` for the table and for records
   * the plan drops): sets reasons[i] for messages[i]. quota_limit 0 means
   * unknown. Until `done` is called, the module's expunge hook allows
   * exactly the planned messages. The user's IMAP action wins over the
   * records: in the shared view, a message that some view DELEd but that
   * no longer carries the hide keyword was restored by the user, so its
   * record is dropped and it is kept (a new message for POP3). A message
   * that carries the keyword with no DELE recorded (moved out of INBOX
   * and back, say) is appended to `unhide_uids` (guint32): the host
   * removes the keyword, unless it runs dry, so nothing stays hidden for
   * ever. `summary`, if not NULL, gets the counts of the records. */
  gboolean (*plan) (DovekieContext *ctx, DovekieRetentionStore *store,
                    const DovekieRetentionMessage *messages, guint n,
                    guint64 quota_used, guint64 quota_limit, DovekieRetentionReason *reasons,
                    GArray *unhide_uids, DovekieRetentionSummary *summary, GError **error);
  /* The host has expunged `uids` (a subset of the plan; n may be 0 after a
   * dry run). Counts them and ends the plan. */
  void (*done) (DovekieContext *ctx, const guint32 *uids, guint n);
  /* Called at the end of a POP3 session that ended with QUIT, after
   * pop3_quit, with the mailbox's table as stored after the QUIT
   * (TABLE_SIZE bytes): TRUE if the host should run the plan now. FALSE
   * when dovekie_retention_expire_at_quit is off, or when the table shows
   * that the plan would expunge nothing (it keeps the earliest download
   * of any record, so this costs the same at any mailbox size). */
  gboolean (*expire_at_quit) (DovekieContext *ctx, const guint8 *table);
  /* Moves the records an older version kept in the host's kv store (one
   * entry per UID) into `store`, sets the table's migrated mark, and
   * removes the old entries with kv_set (the Dovecot host commits those
   * after `store`'s transaction). The host calls it while the table lacks
   * the mark (dovekie_retention_table_migrated). *n_r: records moved.
   * FALSE with `error`: nothing was moved; the host retries later. */
  gboolean (*migrate) (DovekieContext *ctx, DovekieRetentionStore *store, guint *n_r,
                       GError **error);
  /* NULL, or why this user's login name may not open a POP3 session (a
   * client name that is not valid); the host then refuses the login.
   * Valid until deinit. */
  const gchar *(*login_error) (DovekieContext *ctx);
  /* TRUE if a POP3 DELE changes nothing for this user (dele = ignore):
   * the host says so in its QUIT reply instead of "messages deleted". */
  gboolean (*dele_ignored) (DovekieContext *ctx);
} DovekieRetentionService;

/* TRUE if the table (TABLE_SIZE bytes) says the records were migrated
 * from the kv store already (byte 4, bit 0). */
static inline gboolean
dovekie_retention_table_migrated (const guint8 *table)
{
  return (table[4] & 1) != 0;
}

/* "keep", "expired", "max-age", "quota". */
static inline const gchar *
dovekie_retention_reason_name (DovekieRetentionReason reason)
{
  switch (reason)
    {
    case DOVEKIE_RETENTION_EXPIRED: return "expired";
    case DOVEKIE_RETENTION_MAX_AGE: return "max-age";
    case DOVEKIE_RETENTION_QUOTA: return "quota";
    case DOVEKIE_RETENTION_KEEP: break;
    }
  return "keep";
}

G_END_DECLS

#endif
