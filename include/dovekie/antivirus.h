/* The "antivirus" service: what the antivirus module tells the host's
 * `doveadm dovekie scan-status` about a user's verdict cache and
 * `doveadm dovekie status` about the scanner, `doveadm dovekie rescan`
 * (the module runs it, mailbox by mailbox, through a vtable of the host's
 * storage steps: DovekieAntivirusRescanHost), what `doveadm dovekie quarantine`
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

/* Messages per batch of rescan_mailbox: per transaction and per stored
 * resume mark. */
#define DOVEKIE_ANTIVIRUS_RESCAN_BATCH 100

/* One cached verdict: the signature-DB version it was made with and
 * "clean", "infected", "released" (by an admin, from quarantine) or
 * "malformed" (a record that cannot be parsed;
 * version is then ""). Strings are valid for the call. */
typedef void (*DovekieAntivirusVerdictFunc) (const gchar *version, const gchar *verdict,
                                             gpointer data);

/* What a rescan of one mailbox is about. Strings are borrowed for the
 * call. */
typedef struct {
  const gchar *user;        /* whose mail, for the log lines */
  const gchar *mailbox;     /* its name as the user sees it */
  const gchar *mailbox_key; /* names the mailbox for the resume mark: the
                             * Dovecot host uses its GUID and UIDVALIDITY */
  guint messages;           /* messages in it, for the log */
  gboolean is_quarantine;   /* the quarantine mailbox: infected mail stays */
  gboolean restart;         /* ignore the resume mark: start at UID 1 */
  /* How many more messages the run may check over all its mailboxes
   * (--max-messages): rescan_mailbox takes off those it checks, and
   * stops this mailbox at 0. NULL: no limit. */
  guint64 *budget;
} DovekieAntivirusRescanJob;

/* One mailbox's figures, the row the host prints. */
typedef struct {
  gboolean listed;        /* the mark and the UIDs were read: a row */
  guint32 resumed_after;  /* the resume mark it started after (0: none) */
  guint checked, scanned, cached, too_big, infected, moved;
  gboolean stopped;       /* not to the end: the budget, or a failure */
} DovekieAntivirusRescanCounts;

/* What rescan_mailbox does with one message the host reads: judges it.
 * FALSE with `error` when it cannot. */
typedef gboolean (*DovekieAntivirusRescanReadFunc) (const DovekieMessageInfo *info,
                                                   DovekieMessage *msg, gpointer data,
                                                   GError **error);

/* The host's half of a rescan of one mailbox: the steps only it can take
 * on its storage. `host_data` is what the host gave rescan_mailbox. Every
 * function is non-NULL; an `error` says what failed, for the log. */
typedef struct {
  /* The UIDs after `after`, ascending, in *uids_r (*count_r of them; owned
   * by the host, valid until rescan_mailbox returns). */
  gboolean (*list) (gpointer host_data, guint32 after, const guint32 **uids_r, guint *count_r,
                    GError **error);
  /* Begins a batch: the reads and moves until batch_end are one
   * transaction of the mailbox, the quarantine copies one of the
   * quarantine mailbox, and the verdicts the module stores one write.
   * The host holds the lock that every other mover of the mailbox takes
   * (the Dovecot host's sync check) and syncs after taking it, so a
   * message that another mover took meanwhile reads as expunged and
   * nothing moves into quarantine twice. */
  gboolean (*batch_begin) (gpointer host_data, GError **error);
  /* Calls func with the message `uid` of the batch's transaction, readable
   * for the length of the call. 1 after func returned TRUE; 0 without a
   * call when the message was expunged meanwhile; -1 with `error` when it
   * cannot be read or func failed (func's error). */
  gint (*read) (gpointer host_data, guint32 uid, DovekieAntivirusRescanReadFunc func,
                gpointer func_data, GError **error);
  /* Moves the message the last read gave (`uid`) into `mailbox` with the
   * IMAP keyword `keyword`: a copy there and an expunge here, both done
   * at batch_end. */
  gboolean (*move) (gpointer host_data, guint32 uid, const gchar *mailbox, const gchar *keyword,
                    GError **error);
  /* Ends the batch and lets the lock go. The verdicts are stored whatever
   * `commit` says (a lost one is only scanned again). commit TRUE commits
   * the quarantine copies first and then the mailbox, so a crash between
   * the two leaves a duplicate in quarantine, never a lost message; FALSE
   * with `error` when either commit failed. commit FALSE rolls both
   * back. */
  gboolean (*batch_end) (gpointer host_data, gboolean commit, GError **error);
  /* One line of the rescan's log (progress, start, done, each move and
   * failure), which the host writes as its own: the Dovecot host with its
   * "dovekie: " prefix where the command's other lines go. */
  void (*log) (gpointer host_data, DovekieLogLevel level, const gchar *line);
} DovekieAntivirusRescanHost;

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
   * says: a rescan is a long-lived job, not an imap process) and takes
   * its signature-DB version for the rescan_mailbox calls that follow. */
  gboolean (*rescan_begin) (DovekieContext *ctx, GError **error);
  /* The mailbox a rescan moves infected mail into, and leaves alone:
   * dovekie_av_quarantine_mailbox. Valid while ctx is. */
  const gchar *(*quarantine_mailbox) (DovekieContext *ctx);
  /* Rescans one mailbox after rescan_begin, through `host`: the UIDs
   * after its resume mark (the highest UID finished with this DB version;
   * all with job->restart), in batches of DOVEKIE_ANTIVIRUS_RESCAN_BATCH,
   * each judged with that engine (the verdict cache first) and, when
   * infected outside the quarantine mailbox, moved into it. The mark
   * moves on after each batch that ended well. Logs through host->log and
   * fills *counts_r. TRUE when it went to the end or to the budget; FALSE
   * with `error` (logged already) when it could not start
   * (counts_r->listed FALSE) or a batch failed: that batch's moves are
   * undone, its verdicts kept, the mark stays before it, and the rest of
   * the mailbox is left. */
  gboolean (*rescan_mailbox) (DovekieContext *ctx, const DovekieAntivirusRescanHost *host,
                              gpointer host_data, const DovekieAntivirusRescanJob *job,
                              DovekieAntivirusRescanCounts *counts_r, GError **error);

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
