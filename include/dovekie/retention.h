/* The "retention" service: what the retention module offers the host's
 * POP3 session code and expiry job (see doc/retention.md).
 *
 * A host looks it up with dovekie_loader_service (loader, "retention", &ctx)
 * and calls every function with that ctx. All functions are non-NULL.
 * UIDs are INBOX UIDs; the module keeps its state per user with the
 * host's kv store.
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

/* One INBOX message, as the host sees it. */
typedef struct {
  guint32 uid;
  gint64 saved; /* save (delivery) time, Unix seconds; -1 if unknown */
  gint64 size;  /* physical size in bytes; -1 if unknown */
  gboolean hidden; /* carries the hide keyword */
} DovekieRetentionMessage;

/* What `doveadm dovekie status` shows of a user's retention state. */
typedef struct {
  guint records;    /* INBOX messages some POP3 view downloaded or DELEd */
  guint downloaded; /* of them, downloaded by at least one view */
  guint deleted;    /* of them, DELEd by at least one view (hidden or kept) */
  guint corrupt;    /* records that do not parse (their messages are kept) */
} DovekieRetentionSummary;

typedef struct {
  /* The keyword that marks a message hidden from every POP3 view (the
   * host uses it as the session's pop3_deleted_flag). Valid until deinit. */
  const gchar *(*hide_keyword) (DovekieContext *ctx);
  /* POP3 listing: TRUE hides message `uid` from this session. Called once
   * per message while the host builds the session's message list. */
  gboolean (*pop3_hidden) (DovekieContext *ctx, guint32 uid);
  /* The session ended with QUIT (never called for a dropped session).
   * `retrieved`: UIDs the client RETRieved; `deleted`: UIDs it DELEd.
   * The module records them, then appends to `hide_uids` (guint32) the
   * UIDs the host must mark with hide_keyword. FALSE with `error` if the
   * state could not be stored; nothing was then recorded for sure. The
   * Dovecot host runs this call as one kv batch: its kv_set calls are
   * committed together after it returns (all or nothing), not each before
   * it returns; the host drops the batch when this returns FALSE. */
  gboolean (*pop3_quit) (DovekieContext *ctx, const guint32 *retrieved, guint n_retrieved,
                         const guint32 *deleted, guint n_deleted, GArray *hide_uids,
                         GError **error);
  /* The expiry plan for the whole INBOX (`messages`, all of them, in any
   * order): sets reasons[i] for messages[i]. quota_limit 0 means unknown.
   * Until `done` is called, the module's expunge hook allows exactly the
   * planned messages. Records of UIDs not in `messages` are dropped. The
   * user's IMAP action wins over the records: in the shared view, a
   * message that some view DELEd but that no longer carries the hide
   * keyword was restored by the user, so its record is dropped and it is
   * kept (a new message for POP3). A message that carries the keyword
   * with no DELE recorded (moved out of INBOX and back, say) is appended
   * to `unhide_uids` (guint32): the host removes the keyword, unless it
   * runs dry, so nothing stays hidden for ever. */
  gboolean (*plan) (DovekieContext *ctx, const DovekieRetentionMessage *messages, guint n,
                    guint64 quota_used, guint64 quota_limit, DovekieRetentionReason *reasons,
                    GArray *unhide_uids, GError **error);
  /* The host has expunged `uids` (a subset of the plan; n may be 0 after a
   * dry run). Drops their records and ends the plan. */
  void (*done) (DovekieContext *ctx, const guint32 *uids, guint n);
  /* Called at the end of a POP3 session that ended with QUIT, after
   * pop3_quit: TRUE if the host should run the plan now. FALSE when
   * dovekie_retention_expire_at_quit is off, or when the module's records
   * show that the plan would expunge nothing (it then also leaves records
   * of vanished messages for the next doveadm run to drop). */
  gboolean (*expire_at_quit) (DovekieContext *ctx);
  /* Counts the records, read afresh. FALSE with `error` if they cannot be
   * read. */
  gboolean (*summary) (DovekieContext *ctx, DovekieRetentionSummary *summary, GError **error);
  /* NULL, or why this user's login name may not open a POP3 session (a
   * client name that is not valid); the host then refuses the login.
   * Valid until deinit. */
  const gchar *(*login_error) (DovekieContext *ctx);
  /* TRUE if a POP3 DELE changes nothing for this user (dele = ignore):
   * the host says so in its QUIT reply instead of "messages deleted". */
  gboolean (*dele_ignored) (DovekieContext *ctx);
} DovekieRetentionService;

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
