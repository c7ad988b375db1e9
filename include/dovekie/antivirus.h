/* The "antivirus" service: what the antivirus module tells the host's
 * `doveadm dovekie scan-status` about a user's verdict cache and
 * `doveadm dovekie status` about the scanner, how `doveadm dovekie
 * rescan` judges stored mail, what `doveadm dovekie quarantine`
 * needs (the expiry cutoff, a release), and the notice the sync check
 * stores in place of quarantined mail.
 *
 * A host looks it up with dovekie_loader_service (loader, "antivirus", &ctx)
 * and calls every function with that ctx. All functions are non-NULL.
 */
#ifndef DOVEKIE_ANTIVIRUS_H
#define DOVEKIE_ANTIVIRUS_H

#include <glib.h>

#include "dovekie/module.h"

G_BEGIN_DECLS

#define DOVEKIE_ANTIVIRUS_SERVICE "antivirus"

/* One cached verdict: the signature-DB version it was made with and
 * "clean", "infected", "released" (by an admin, from quarantine) or
 * "malformed" (a record that cannot be parsed;
 * version is then ""). Strings are valid for the call. */
typedef void (*DovekieAntivirusVerdictFunc) (const gchar *version, const gchar *verdict,
                                             gpointer data);

/* What a rescan made of one stored message. */
typedef enum {
  DOVEKIE_ANTIVIRUS_RESCAN_CLEAN = 0,
  DOVEKIE_ANTIVIRUS_RESCAN_INFECTED,
  DOVEKIE_ANTIVIRUS_RESCAN_TOO_BIG, /* over dovekie_av_max_size: not scanned */
} DovekieAntivirusRescanStatus;

typedef struct {
  DovekieAntivirusRescanStatus status;
  gboolean cached;   /* judged with this DB version before: not scanned again */
  gchar *signature;  /* INFECTED: the signature name (owned by the caller) */
  gchar *keyword;    /* INFECTED: the quarantine copy's keyword, "$Virus:<signature>"
                      * as on a quarantined delivery (owned by the caller) */
} DovekieAntivirusRescan;

/* What the quarantine notice is made of: the original's From, To, Subject
 * and Date header values as the host read them (raw, unfolded or not;
 * NULL when absent), the quarantine mailbox and the reason the verdict
 * gave, the host's name (in From and Message-ID), a token the host makes
 * unique on that host within the second (in Message-ID) and the time
 * (Unix seconds, the Date). Strings are borrowed for the call. */
typedef struct {
  const gchar *from;
  const gchar *to;
  const gchar *subject;
  const gchar *date;
  const gchar *mailbox;
  const gchar *reason;
  const gchar *host;
  const gchar *unique;
  gint64 time;
} DovekieAntivirusNotice;

typedef struct {
  /* Calls func once per record of the user's verdict cache, in no
   * particular order. FALSE with `error` when the store cannot be read. */
  gboolean (*foreach_verdict) (DovekieContext *ctx, DovekieAntivirusVerdictFunc func,
                               gpointer data, GError **error);

  /* For `doveadm dovekie status`: the scanner the user's settings name, in
   * scanner_r ("clamd unix:/run/clamav/clamd.ctl", the server that
   * answered; "libclamav /var/lib/clamav"), and its signature-DB version
   * in version_r. clamd is asked for VERSION; libclamav's DB headers are
   * read without loading it. FALSE with `error` (scanner_r still set)
   * when the scanner does not answer. Both strings owned by the caller. */
  gboolean (*probe) (DovekieContext *ctx, gchar **scanner_r, gchar **version_r, GError **error);

  /* Makes the in-process libclamav engine ready (whatever dovekie_av_engine
   * says: a rescan is a long-lived job, not an imap process) and returns
   * its signature-DB version in version_r (owned by the caller). */
  gboolean (*rescan_begin) (DovekieContext *ctx, gchar **version_r, GError **error);
  /* The mailbox a rescan moves infected mail into, and leaves alone:
   * dovekie_av_quarantine_mailbox. Valid while ctx is. */
  const gchar *(*quarantine_mailbox) (DovekieContext *ctx);
  /* Judges one stored message with that engine, the verdict cache first,
   * and stores the verdict. Logs and counts it (origin "rescan"). FALSE
   * with `error` when the message cannot be read or the scan fails. */
  gboolean (*rescan_message) (DovekieContext *ctx, const DovekieMessageInfo *info,
                              DovekieMessage *msg, DovekieAntivirusRescan *result,
                              GError **error);
  /* Where a rescan of one mailbox got to: the highest UID finished with
   * DB version `version`, or 0. `mailbox_key` names the mailbox (the host
   * uses its GUID and UIDVALIDITY). set stores it; uid 0 forgets it. */
  gboolean (*rescan_get_mark) (DovekieContext *ctx, const gchar *mailbox_key,
                               const gchar *version, guint32 *uid_r, GError **error);
  gboolean (*rescan_set_mark) (DovekieContext *ctx, const gchar *mailbox_key,
                               const gchar *version, guint32 uid, GError **error);

  /* For `doveadm dovekie quarantine expire`: quarantined mail saved before
   * *cutoff_r (Unix seconds, the host's clock) has been kept
   * dovekie_av_quarantine_days. FALSE (cutoff 0) when that is 0: kept
   * until deleted by hand. */
  gboolean (*quarantine_cutoff) (DovekieContext *ctx, gint64 *cutoff_r);
  /* For `doveadm dovekie quarantine release`: records in the verdict cache
   * that this message (its digest) was released by the admin, so that it
   * is served and not caught again with the current signature-DB version
   * (returned in version_r, owned by the caller); a new DB version judges
   * it afresh. `signature` is what it was held for (NULL: unknown). FALSE
   * with `error` when the message cannot be read, the scanner cannot tell
   * its version, or dovekie_av_cache is off. */
  gboolean (*release_message) (DovekieContext *ctx, const DovekieMessageInfo *info,
                               DovekieMessage *msg, const gchar *signature, gchar **version_r,
                               GError **error);
  /* For the host's sync check: how many new messages one sync of a
   * mailbox judges (dovekie_av_sync_max_messages). */
  guint (*sync_max_messages) (DovekieContext *ctx);
  /* For the host's read path: a key under which it may remember, per stored
   * message, that a read of it was accepted, and accept the next reads of
   * that message without asking again while the key stays the same. It
   * names everything a read's outcome depends on (the signature-DB version
   * and the settings that decide what a read of a judged message gets), so
   * a new DB version or policy changes it and every message is judged
   * afresh. NULL when reads must be judged every time
   * (dovekie_av_scan_on_read is not "unscanned", dovekie_av_cache is off,
   * dovekie_av_on_error is "accept", which accepts unjudged mail) or the DB
   * version cannot be told now. Cheap: the version is looked at
   * at most every dovekie_av_db_check_interval. Owned by the caller. */
  gchar *(*read_memo_key) (DovekieContext *ctx);
  /* For the host's sync check: the bytes of the short message stored in
   * place of a quarantined one, a complete CRLF message (headers and a
   * text/plain body) that quotes each of the original's values on one line,
   * so no value can add a header or a line. Owned by the caller. NULL with
   * `error` when an input it needs is missing. */
  gchar *(*quarantine_notice) (DovekieContext *ctx, const DovekieAntivirusNotice *notice,
                               GError **error);
} DovekieAntivirusService;

G_END_DECLS

#endif
