/* dovekie-retention: the per-message state record and its strict parser.
 *
 * One record per INBOX message (by UID) holds, for every POP3 client
 * identity that touched the message, the time of its first download (RETR
 * followed by QUIT) and whether it DELEd the message (then QUIT). The text
 * form, stored as a per-user key-value entry, is
 *
 *   "1" ( " " ID ":" TIME ":" FLAG )*
 *
 *   ID    "*" (the shared identity) or 1..64 of [A-Za-z0-9._-]
 *   TIME  Unix seconds, decimal, no sign, no leading zero, 0..DOVEKIE_RETENTION_TIME_MAX;
 *         0 means "never downloaded"
 *   FLAG  "-" or "d" (DELEd)
 *
 * Records are untrusted bytes (another process or a replica may have
 * written them): the parser accepts exactly this grammar and nothing else,
 * at most DOVEKIE_RETENTION_RECORD_MAX bytes and DOVEKIE_RETENTION_CLIENTS_MAX
 * identities, no identity twice, no entry that says nothing (0 and "-").
 */
#ifndef DOVEKIE_RETENTION_RECORD_H
#define DOVEKIE_RETENTION_RECORD_H

#include <glib.h>

#include "dovekie/retention.h"

G_BEGIN_DECLS

#define DOVEKIE_RETENTION_ID_MAX 64
#define DOVEKIE_RETENTION_CLIENTS_MAX 64
/* 64 entries of the longest form (" " ID ":" TIME ":" FLAG) fit. */
#define DOVEKIE_RETENTION_RECORD_MAX 8192
/* 9999-12-31T23:59:59Z */
#define DOVEKIE_RETENTION_TIME_MAX G_GINT64_CONSTANT (253402300799)
#define DOVEKIE_RETENTION_SHARED_ID "*"

typedef struct {
  gchar id[DOVEKIE_RETENTION_ID_MAX + 1];
  gint64 downloaded; /* first download by this identity, 0 = never */
  gboolean deleted;  /* this identity DELEd it (and said QUIT) */
} DovekieRetentionClient;

/* Zero-initialize one ({ 0 }) before its first use; its entries are
 * allocated as needed (a record costs what its identities need, not
 * DOVEKIE_RETENTION_CLIENTS_MAX entries) and freed by
 * dovekie_retention_record_clear. */
typedef struct {
  guint n_clients;
  DovekieRetentionClient *clients;
} DovekieRetentionRecord;

/* Frees the entries; the record is then empty and reusable. */
void dovekie_retention_record_clear (DovekieRetentionRecord *record);
/* Clears and frees a heap record; NULL is ignored. */
void dovekie_retention_record_free (DovekieRetentionRecord *record);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (DovekieRetentionRecord, dovekie_retention_record_clear)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DovekieRetentionRecord, dovekie_retention_record_free)

/* TRUE if `id` is "*" or 1..DOVEKIE_RETENTION_ID_MAX of [A-Za-z0-9._-]. */
gboolean dovekie_retention_id_valid (const gchar *id);

/* Parses `len` bytes of `text` (no NUL needed; a NUL byte is an error)
 * into `record` (an initialized record; its old entries are freed). FALSE
 * with `error` (DOVEKIE_ERROR_PROTOCOL) naming the first problem; `record`
 * is then empty. */
gboolean dovekie_retention_record_parse (const gchar *text, gsize len,
                                         DovekieRetentionRecord *record, GError **error);

/* The text form of `record`; g_free it. Always parses back equal. */
gchar *dovekie_retention_record_format (const DovekieRetentionRecord *record);

/* The entry of `id`, or NULL. With `create`, adds an empty entry when
 * missing; NULL then only when the record is full or `id` is invalid. */
DovekieRetentionClient *dovekie_retention_record_client (DovekieRetentionRecord *record,
                                                         const gchar *id, gboolean create);

/* The earliest download time of any identity, 0 if none downloaded it. */
gint64 dovekie_retention_record_first_download (const DovekieRetentionRecord *record);

/* TRUE if any identity DELEd the message. */
gboolean dovekie_retention_record_deleted (const DovekieRetentionRecord *record);

/* ---- the stored form (see DovekieRetentionStore) ----
 *
 * Table, DOVEKIE_RETENTION_TABLE_SIZE bytes per mailbox:
 *   0..3   version, little endian: 1 (0 in a table never written; then
 *          every byte is 0)
 *   4..7   flags, little endian: bit 0 = the kv records were migrated
 *   then DOVEKIE_RETENTION_CLIENTS_MAX slots of DOVEKIE_RETENTION_ID_MAX + 1
 *   bytes: a client identity, NUL-padded; used slots first, then empty ones;
 *   then DOVEKIE_RETENTION_CLIENTS_MAX times 8 bytes, little endian: the
 *   last QUIT of the slot's identity, Unix seconds (0 for an empty slot
 *   or one never seen since this field exists);
 *   then two times 8 bytes, little endian, the floors: no record's first
 *   download is earlier than the first, and no DELEd record's is earlier
 *   than the second; 0 when no record (no DELEd record) has a download.
 *   They hold only with flag bit 1 (else both are 0): each plan, which
 *   reads every record, sets them and the bit; each QUIT lowers them for
 *   the records it writes; an expunge or a dropped record leaves them
 *   lower than needed, which only makes the next QUIT run a plan that
 *   sets them again. So a QUIT knows in O(1) whether anything can be due
 *   (see expire_at_quit). Two sessions that write the floor of a mailbox
 *   that had none in the same instant keep the later one: the records of
 *   the other are then first seen due at a QUIT up to that gap (seconds)
 *   late; the expiry run does not use the floors.
 *
 * Record, DOVEKIE_RETENTION_PACKED_SIZE bytes per message, all zero = none:
 *   0..7   first download by any identity, Unix seconds, little endian
 *   8..15  bit i: the identity of slot i downloaded the message
 *   16..23 bit i: the identity of slot i DELEd it
 * Every set bit names a used slot, and the first download is set (in
 * 1..DOVEKIE_RETENTION_TIME_MAX) exactly when a download bit is. Each
 * identity's own download time is not kept: the policy only uses the
 * first one (dovekie_retention_record_first_download).
 */
#define DOVEKIE_RETENTION_TABLE_VERSION 1
#define DOVEKIE_RETENTION_TABLE_MIGRATED 1u
#define DOVEKIE_RETENTION_TABLE_FLOORS 2u

typedef struct {
  guint32 flags;
  guint n_ids;
  gchar ids[DOVEKIE_RETENTION_CLIENTS_MAX][DOVEKIE_RETENTION_ID_MAX + 1];
  gint64 last_quit[DOVEKIE_RETENTION_CLIENTS_MAX];
  gint64 floor_downloaded; /* with DOVEKIE_RETENTION_TABLE_FLOORS, else 0 */
  gint64 floor_deleted;
} DovekieRetentionTable;

/* Parses the table bytes. FALSE with `error` (DOVEKIE_ERROR_PROTOCOL) if
 * they break the layout above; `table` is then empty. */
gboolean dovekie_retention_table_parse (const guint8 *bytes, DovekieRetentionTable *table,
                                        GError **error);
/* TRUE if the table bytes were never written (version 0): the mailbox
 * has no record. */
gboolean dovekie_retention_table_unwritten (const guint8 *bytes);
/* Writes `table` as DOVEKIE_RETENTION_TABLE_SIZE bytes (version 1). */
void dovekie_retention_table_format (const DovekieRetentionTable *table, guint8 *bytes);
/* The slot of `id`, or -1. With `create`, adds it when missing; -1 then
 * only when the table is full or `id` is not valid. */
gint dovekie_retention_table_slot (DovekieRetentionTable *table, const gchar *id,
                                   gboolean create);

/* A record whose first download is `first` (0: none) and that some
 * identity DELEd (`deleted`) is written: lowers the floors to cover it,
 * when the table keeps them. */
void dovekie_retention_table_cover (DovekieRetentionTable *table, gint64 first, gboolean deleted);

/* The slots (bit i = slot i) whose identity ended a session with QUIT
 * at or after `since`. */
guint64 dovekie_retention_table_active (const DovekieRetentionTable *table, gint64 since);

/* TRUE if every byte of a stored record is 0 (no record). */
gboolean dovekie_retention_packed_empty (const guint8 *packed);
/* The fields of a stored record, unchecked. */
gint64 dovekie_retention_packed_first (const guint8 *packed);
guint64 dovekie_retention_packed_downloaded (const guint8 *packed);
guint64 dovekie_retention_packed_deleted (const guint8 *packed);

/* Reads a stored record into `record` (initialized; old entries freed),
 * one entry per set slot, each downloaded entry with the first download
 * time. FALSE with `error` (DOVEKIE_ERROR_PROTOCOL) if it breaks the
 * layout; `record` is then empty. */
gboolean dovekie_retention_record_unpack (const DovekieRetentionTable *table,
                                          const guint8 *packed,
                                          DovekieRetentionRecord *record, GError **error);
/* Writes `record` into `packed`, adding its identities to `table` as
 * needed (*table_changed, unless NULL, is then set TRUE). FALSE with `error` when the
 * table has no room for an identity; `packed` is then unchanged. */
gboolean dovekie_retention_record_pack (DovekieRetentionTable *table,
                                        const DovekieRetentionRecord *record, guint8 *packed,
                                        gboolean *table_changed, GError **error);

G_END_DECLS

#endif
