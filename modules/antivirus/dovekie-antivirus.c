/* dovekie antivirus module: scans saved, delivered and read mail with
 * ClamAV (clamd, or libclamav in-process) and turns the verdict into the
 * configured action.
 *
 * Flow for one message:
 *   1. read it once: SHA-256 and size (and the bytes, for libclamav);
 *   2. over dovekie_av_max_size: dovekie_av_over_size decides; accepted
 *      mail is left to the rescan job, which scans up to
 *      dovekie_av_rescan_max_size, and mail that even the rescan would not
 *      scan is refused (nothing infected sits unscanned for good);
 *   3. the verdict cache (kv "v/<sha256>") answers if it holds a verdict
 *      made with the current signature-DB version;
 *   4. else scan, and store the verdict (an LMTP transaction scans once
 *      for all its recipients: see "one scan per LMTP transaction");
 *   5. infected: APPEND/COPY are refused with the signature name, a
 *      client's read is refused (REJECT: it never moves anything), new
 *      mail found at a mailbox sync follows dovekie_av_read_action
 *      (replace: DIVERT into the quarantine mailbox with $Virus:<signature>,
 *      the host stores a short notice; refuse, and always when
 *      dovekie_av_action = tag: REJECT, nothing moves),
 *      LMTP follows dovekie_av_action (quarantine: DIVERT into
 *      dovekie_av_quarantine_mailbox; reject; tag: ACCEPT with the keyword
 *      $Infected; discard: DISCARD); a scanner failure follows
 *      dovekie_av_on_error.
 * Every scan and every failure is logged once, and emitted as the event
 * dovekie_av_scan_finished (fields origin, result, engine, cached, action)
 * for Dovecot's stats service.
 */
#include "dovekie-config.h"

#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include <gmodule.h>

#include "dovekie/module.h"
#include "dovekie/antivirus.h"
#include "dovekie/log-quote.h"
#include "dovekie-av.h"
#include "dovekie-av-cache.h"
#include "dovekie-av-clamd.h"
#include "dovekie-av-clamdconf.h"
#include "dovekie-av-engine.h"
#include "dovekie-av-notice.h"

static const gchar *const engine_choices[] = { "clamd", "libclamav", NULL };
static const gchar *const action_choices[] = { "quarantine", "reject", "tag", "discard", NULL };
static const gchar *const on_error_choices[] = { "tempfail", "accept", NULL };
static const gchar *const over_size_choices[] = { "accept-and-log", "tempfail", "reject", NULL };
static const gchar *const on_read_choices[] = { "off", "unscanned", "always", NULL };
static const gchar *const read_action_choices[] = { "replace", "refuse", NULL };

static const DovekieSettingDef av_settings[] = {
  { "dovekie_av_engine", DOVEKIE_SETTING_ENUM, "clamd", 0, 0, engine_choices,
    "scanner: clamd (online default) or libclamav (in-process; small DBs, jobs)" },
  { "dovekie_av_clamd", DOVEKIE_SETTING_STRING, "unix:/var/run/clamav/clamd.ctl", 0, 4096, NULL,
    "clamd servers tried in order: unix:/path and tcp:HOST:PORT, separated by spaces or commas" },
  { "dovekie_av_connect_timeout_msecs", DOVEKIE_SETTING_UINT, "2000", 1, 60000, NULL,
    "time to connect to one clamd server, in milliseconds" },
  { "dovekie_av_scan_timeout_msecs", DOVEKIE_SETTING_UINT, "60000", 1, 3600000, NULL,
    "time for one clamd server to take a message and answer, in milliseconds" },
  { "dovekie_av_clamd_fildes", DOVEKIE_SETTING_BOOL, "yes", 0, 0, NULL,
    "unix: clamd servers read a plainly stored message's file themselves (FILDES, no copy)" },
  { "dovekie_av_max_size", DOVEKIE_SETTING_SIZE, "25M", 1, G_GUINT64_CONSTANT (1) << 30, NULL,
    "largest message scanned; larger ones follow dovekie_av_over_size" },
  { "dovekie_av_over_size", DOVEKIE_SETTING_ENUM, "accept-and-log", 0, 0, over_size_choices,
    "message over dovekie_av_max_size: accept-and-log (left to the rescan job; refused when it "
    "is over dovekie_av_rescan_max_size too), tempfail or reject" },
  { "dovekie_av_rescan_max_size", DOVEKIE_SETTING_SIZE, "512M", 1, G_GUINT64_CONSTANT (4) << 30,
    NULL,
    "largest message `doveadm dovekie rescan` scans (in memory, with libclamav's file and scan "
    "limits raised to it); not below dovekie_av_max_size" },
  { "dovekie_av_action", DOVEKIE_SETTING_ENUM, "quarantine", 0, 0, action_choices,
    "infected LMTP delivery: quarantine (into dovekie_av_quarantine_mailbox), reject (550 5.7.1 "
    "with the signature name), tag (delivered with the keyword $Infected) or discard (logged)" },
  { "dovekie_av_quarantine_mailbox", DOVEKIE_SETTING_STRING, "Quarantine", 1, 255, NULL,
    "mailbox quarantined deliveries go to (not INBOX); created on demand, not subscribed" },
  { "dovekie_av_quarantine_days", DOVEKIE_SETTING_UINT, "30", 0, 3650, NULL,
    "days quarantined mail is kept before `doveadm dovekie quarantine expire` deletes it "
    "(0: kept until deleted by hand)" },
  { "dovekie_av_on_error", DOVEKIE_SETTING_ENUM, "tempfail", 0, 0, on_error_choices,
    "scanner unavailable, timed out or unparsable: tempfail (retry later) or accept (logged)" },
  { "dovekie_av_scan_on_read", DOVEKIE_SETTING_ENUM, "unscanned", 0, 0, on_read_choices,
    "scan stored mail no save hook judged, at a session's first sync of the mailbox and on "
    "FETCH/RETR/TOP: off, unscanned (not yet judged with the current DB) or always" },
  { "dovekie_av_read_action", DOVEKIE_SETTING_ENUM, "replace", 0, 0, read_action_choices,
    "unscanned infected mail found in a mailbox (placed by another MDA): replace (moved into "
    "the quarantine mailbox when a session first syncs the mailbox, a short notice is added) "
    "or refuse (left in place); a read of infected mail (FETCH, SEARCH, RETR, TOP) is always "
    "refused and never moves it; with dovekie_av_action = tag nothing moves" },
  { "dovekie_av_sync_max_messages", DOVEKIE_SETTING_UINT, "200", 1, 100000, NULL,
    "new messages an IMAP or POP3 session judges at one sync of a mailbox; the rest at the "
    "next syncs (reads judge them meanwhile)" },
  { "dovekie_av_cache", DOVEKIE_SETTING_BOOL, "yes", 0, 0, NULL,
    "keep verdicts per message digest and DB version in the user's mailbox attributes" },
  { "dovekie_av_cache_entries", DOVEKIE_SETTING_UINT, "100000", 100, 10000000, NULL,
    "most verdicts kept per user: past it, verdicts of other DB versions are dropped, then "
    "others, down to three quarters (forgetting one only costs a scan)" },
  { "dovekie_av_db_check_interval", DOVEKIE_SETTING_UINT, "60", 0, 86400, NULL,
    "seconds between checks of the signature-DB version (clamd's signature files or VERSION, "
    "libclamav reload)" },
  { "dovekie_av_clamd_database", DOVEKIE_SETTING_STRING, "", 0, 4096, NULL,
    "clamd only: directory of the signature files clamd loads; any change to them retires "
    "cached verdicts (empty: DatabaseDirectory of dovekie_av_clamd_conf)" },
  { "dovekie_av_clamd_conf", DOVEKIE_SETTING_STRING, "/etc/clamav/clamd.conf", 0, 4096, NULL,
    "clamd only: clamd's configuration; its DatabaseDirectory is used when its LocalSocket "
    "(or loopback TCPSocket) is one of dovekie_av_clamd (empty: not read; no such file or "
    "another clamd: verdicts go by clamd VERSION alone)" },
  { "dovekie_av_libclamav_db", DOVEKIE_SETTING_STRING, "/var/lib/clamav", 1, 4096, NULL,
    "libclamav only: signature database directory" },
  { "dovekie_av_max_scansize", DOVEKIE_SETTING_SIZE, "100M", 1, G_GUINT64_CONSTANT (4) << 30, NULL,
    "libclamav only: data scanned per message, unpacked containers included" },
  { "dovekie_av_max_filesize", DOVEKIE_SETTING_SIZE, "25M", 1, G_GUINT64_CONSTANT (4) << 30, NULL,
    "libclamav only: largest single file (attachment, archive member) scanned" },
  { "dovekie_av_max_recursion", DOVEKIE_SETTING_UINT, "16", 1, 64, NULL,
    "libclamav only: container nesting depth" },
  { "dovekie_av_max_files", DOVEKIE_SETTING_UINT, "10000", 1, 1000000, NULL,
    "libclamav only: files scanned inside one message" },
  { "dovekie_av_max_scantime_msecs", DOVEKIE_SETTING_UINT, "120000", 1, 3600000, NULL,
    "libclamav only: time spent on one message, in milliseconds" },
  { NULL, 0, NULL, 0, 0, NULL, NULL },
};

static const gchar *const save_origin_names[] = { "append", "copy", "delivery" };
static const gchar *const read_origin_names[] = { "fetch", "pop3", "other", "sync" };

#define REASON_UNAVAILABLE "Virus scanner unavailable, try again later"
#define REASON_TOO_BIG "Message too large to be scanned for viruses"
#define INFECTED_KEYWORD "$Infected"
/* A quarantined message carries "$Virus:<signature>" (an IMAP keyword, so
 * the owner's client shows it in the message list and doveadm lists it).
 * Dovecot's default mail_max_keyword_length is 50. */
#define QUARANTINE_KEYWORD_PREFIX "$Virus:"
#define QUARANTINE_KEYWORD_MAX 50

typedef struct {
  DovekieAvClamd *clamd; /* NULL with libclamav */
  gchar *clamd_db;       /* clamd's signature directory, or NULL: VERSION alone */
  gchar *version;        /* last DB version seen */
  gboolean rescanning;   /* a rescan job: its own size limit and libclamav limits */
  gchar *rescan_version; /* the DB version the rescan job judges with and marks */
  gint64 version_at;     /* when, in host seconds */
  gboolean kv_warned;    /* a kv failure was logged already */
  gint64 cache_count;    /* verdict records, as counted; -1: not read yet */
} AvUser;

/* What a scan of one message came to. */
typedef struct {
  guint8 digest[DOVEKIE_AV_DIGEST_LEN];
  guint64 size;
  gboolean too_big;
  DovekieAvStatus status;
  gchar *signature;
  gboolean cached;
  gboolean reused; /* taken from the delivery memo, not scanned again */
} AvScan;

static void
av_scan_clear (AvScan *scan)
{
  g_clear_pointer (&scan->signature, g_free);
}

/* ---- reading the message ---- */

typedef struct {
  DovekieContext *ctx;
  DovekieMessage *msg;
} MessageReader;

static gssize
message_read (gpointer data, guint8 *buf, gsize len, GError **error)
{
  MessageReader *r = data;
  return r->ctx->api->read (r->msg, buf, len, error);
}

static gboolean
message_rewind (gpointer data, GError **error)
{
  MessageReader *r = data;
  return r->ctx->api->rewind (r->msg, error);
}

static gint
message_fd (gpointer data)
{
  MessageReader *r = data;
  return r->ctx->api->fd (r->msg);
}

/* ---- module lifecycle ---- */

static gboolean
av_uses_libclamav (DovekieContext *ctx)
{
  return g_str_equal (ctx->api->get_string (ctx, "dovekie_av_engine"), "libclamav");
}

/* Settings the loader's table cannot judge alone. IMAP treats INBOX
 * case-insensitively, and so does this check; a namespace prefix that
 * still leads to INBOX is the host's to refuse (it alone knows the
 * namespaces). */
static gboolean
av_check_quarantine_mailbox (DovekieContext *ctx, GError **error)
{
  const gchar *mailbox = ctx->api->get_string (ctx, "dovekie_av_quarantine_mailbox");
  g_autofree gchar *quoted = NULL;

  if (mailbox == NULL || g_ascii_strcasecmp (mailbox, "INBOX") != 0)
    return TRUE;
  quoted = dovekie_log_quote (mailbox);
  g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
               "dovekie_av_quarantine_mailbox: %s would deliver infected mail into INBOX; "
               "name a mailbox of its own, e.g. Quarantine", quoted);
  return FALSE;
}

/* The libclamav signature DB is loaded at the first scan (loading it is too
 * costly for every session start), but a directory that is not there or
 * that the mail user cannot read can never work: the module does not
 * start, and so guards what it guards, instead of tempfailing every scan
 * with no word of the setting. */
static gboolean
av_check_libclamav_db (DovekieContext *ctx, GError **error)
{
  const gchar *dir = ctx->api->get_string (ctx, "dovekie_av_libclamav_db");
  const gchar *why = NULL;

  if (!av_uses_libclamav (ctx))
    return TRUE;
  if (!g_file_test (dir, G_FILE_TEST_EXISTS))
    why = "no such directory";
  else if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    why = "not a directory";
  else if (g_access (dir, R_OK | X_OK) < 0)
    why = "the mail user cannot read it";
  if (why == NULL)
    return TRUE;
  g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
               "dovekie_av_libclamav_db = %s: %s", dir, why);
  return FALSE;
}

/* clamd's signature directory (see dovekie-av-clamdconf.h), or NULL when
 * only clamd's VERSION can key the verdicts. A directory named in
 * dovekie_av_clamd_database that the mail user cannot read never works:
 * the module does not start. clamd.conf is optional (a remote clamd has
 * none here); one that is there but unreadable is logged. */
static gboolean
av_clamd_database (DovekieContext *ctx, gchar **dir_r, GError **error)
{
  const gchar *dir = ctx->api->get_string (ctx, "dovekie_av_clamd_database");
  const gchar *conf_path = ctx->api->get_string (ctx, "dovekie_av_clamd_conf");
  g_autoptr (DovekieAvClamdConf) conf = NULL;
  g_autoptr (GError) local = NULL;
  gboolean missing;

  *dir_r = NULL;
  if (dir != NULL && dir[0] != '\0')
    {
      if (!g_file_test (dir, G_FILE_TEST_IS_DIR) || g_access (dir, R_OK | X_OK) < 0)
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                       "dovekie_av_clamd_database = %s: not a directory the mail user can read",
                       dir);
          return FALSE;
        }
      *dir_r = g_strdup (dir);
      return TRUE;
    }
  if (conf_path == NULL || conf_path[0] == '\0')
    return TRUE;
  conf = dovekie_av_clamdconf_read (conf_path, &missing, &local);
  if (conf == NULL)
    {
      if (!missing)
        dovekie_log (ctx, DOVEKIE_LOG_WARNING,
                     "dovekie_av_clamd_conf: %s; verdicts go by clamd VERSION alone, which "
                     "misses unofficial signature updates", local->message);
      return TRUE;
    }
  if (dovekie_av_clamdconf_serves (conf, ctx->api->get_string (ctx, "dovekie_av_clamd")))
    *dir_r = g_strdup (conf->database_directory);
  return TRUE;
}

/* Mail accepted over dovekie_av_max_size is left to the rescan job, so
 * the job must scan at least what the online paths skip. */
static gboolean
av_check_rescan_max_size (DovekieContext *ctx, GError **error)
{
  guint64 online = ctx->api->get_uint (ctx, "dovekie_av_max_size");
  guint64 rescan = ctx->api->get_uint (ctx, "dovekie_av_rescan_max_size");

  if (rescan >= online)
    return TRUE;
  g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
               "dovekie_av_rescan_max_size (%" G_GUINT64_FORMAT " bytes) is below "
               "dovekie_av_max_size (%" G_GUINT64_FORMAT " bytes): accepted mail over "
               "dovekie_av_max_size would never be scanned", rescan, online);
  return FALSE;
}

static gboolean
av_init (DovekieContext *ctx, GError **error)
{
  g_autofree AvUser *user = NULL;
  g_autoptr (DovekieAvClamd) clamd = NULL;

  if (!av_check_quarantine_mailbox (ctx, error) || !av_check_rescan_max_size (ctx, error))
    return FALSE;
  /* Parsed with libclamav too: a list that cannot work is refused before
   * an engine switch would bring it into use. */
  clamd = dovekie_av_clamd_new (
    ctx->api->get_string (ctx, "dovekie_av_clamd"),
    (guint) ctx->api->get_uint (ctx, "dovekie_av_connect_timeout_msecs"),
    (guint) ctx->api->get_uint (ctx, "dovekie_av_scan_timeout_msecs"), error);
  if (clamd == NULL || !av_check_libclamav_db (ctx, error))
    return FALSE;
  user = g_new0 (AvUser, 1);
  user->cache_count = -1;
  if (!av_uses_libclamav (ctx))
    {
      dovekie_av_clamd_set_fildes (clamd, ctx->api->get_bool (ctx, "dovekie_av_clamd_fildes"));
      if (!av_clamd_database (ctx, &user->clamd_db, error))
        return FALSE;
      user->clamd = g_steal_pointer (&clamd);
    }
  ctx->module_data = g_steal_pointer (&user);
  return TRUE;
}

static void
av_deinit (DovekieContext *ctx)
{
  AvUser *user = ctx->module_data;

  dovekie_av_clamd_free (user->clamd);
  g_free (user->clamd_db);
  g_free (user->version);
  g_free (user->rescan_version);
  g_free (user);
  ctx->module_data = NULL;
}

/* A rescan reads up to dovekie_av_rescan_max_size, and libclamav must not
 * skip what it was given: a file or a whole message under that size is
 * scanned whole. */
static void
av_limits (DovekieContext *ctx, DovekieAvLimits *limits)
{
  AvUser *user = ctx->module_data;
  guint64 rescan_max = ctx->api->get_uint (ctx, "dovekie_av_rescan_max_size");

  memset (limits, 0, sizeof (*limits));
  limits->max_scansize = ctx->api->get_uint (ctx, "dovekie_av_max_scansize");
  limits->max_filesize = ctx->api->get_uint (ctx, "dovekie_av_max_filesize");
  if (user != NULL && user->rescanning)
    {
      limits->max_scansize = MAX (limits->max_scansize, rescan_max);
      limits->max_filesize = MAX (limits->max_filesize, rescan_max);
    }
  limits->max_recursion = (guint32) ctx->api->get_uint (ctx, "dovekie_av_max_recursion");
  limits->max_files = (guint32) ctx->api->get_uint (ctx, "dovekie_av_max_files");
  limits->max_scantime_ms = (guint32) ctx->api->get_uint (ctx, "dovekie_av_max_scantime_msecs");
}

static gboolean
av_prepare_libclamav (DovekieContext *ctx, GError **error)
{
  DovekieAvLimits limits;
  g_autofree gchar *notice = NULL;
  gboolean ok;

  av_limits (ctx, &limits);
  ok = dovekie_av_engine_prepare (ctx->api->get_string (ctx, "dovekie_av_libclamav_db"), &limits,
                                  (guint) ctx->api->get_uint (ctx, "dovekie_av_db_check_interval"),
                                  &notice, error);
  if (notice != NULL)
    dovekie_log (ctx, DOVEKIE_LOG_INFO, "%s", notice);
  return ok;
}

static void av_cache_prune (DovekieContext *ctx, AvUser *user, const gchar *version);

/* The current signature-DB version, looked at at most every
 * dovekie_av_db_check_interval seconds. With clamd and its signature
 * directory known, it is read from the directory as libclamav would load
 * it (engine, official DB version, fingerprint of every other signature
 * file): clamd's VERSION misses unofficial files, and the directory can be
 * read while clamd is down, so cached verdicts still answer then. */
static gboolean
av_db_version (DovekieContext *ctx, AvUser *user, const gchar **version_r, GError **error)
{
  gint64 now = ctx->api->now (ctx);
  guint64 interval = ctx->api->get_uint (ctx, "dovekie_av_db_check_interval");
  gboolean changed = FALSE;

  if (user->clamd == NULL)
    {
      gchar *version;
      if (!av_prepare_libclamav (ctx, error))
        return FALSE;
      version = dovekie_av_engine_version ();
      changed = user->version != NULL && !g_str_equal (user->version, version);
      g_free (user->version);
      user->version = version;
    }
  else if (user->version == NULL || now < user->version_at ||
           (guint64) (now - user->version_at) >= interval)
    {
      gchar *version = NULL;
      if (user->clamd_db != NULL ?
          !dovekie_av_engine_peek_version (user->clamd_db, &version, error) :
          !dovekie_av_clamd_version (user->clamd, &version, error))
        return FALSE;
      if (user->version != NULL && !g_str_equal (user->version, version))
        {
          dovekie_log (ctx, DOVEKIE_LOG_INFO, "signature DB version changed: %s -> %s",
                       user->version, version);
          changed = TRUE;
        }
      g_free (user->version);
      user->version = version;
      user->version_at = now;
    }
  /* The records of the old version can only cost room now. */
  if (changed && ctx->api->get_bool (ctx, "dovekie_av_cache"))
    av_cache_prune (ctx, user, user->version);
  *version_r = user->version;
  return TRUE;
}

/* ---- the cache ---- */

static void
av_kv_failed (DovekieContext *ctx, AvUser *user, const gchar *what, const GError *error)
{
  if (user->kv_warned)
    return;
  user->kv_warned = TRUE;
  dovekie_log (ctx, DOVEKIE_LOG_WARNING, "verdict cache unavailable (%s: %s); scanning without it",
               what, error->message);
}

static gboolean
av_cache_lookup (DovekieContext *ctx, AvUser *user, const gchar *key, const gchar *version,
                 AvScan *scan, gboolean *exists_r)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *value = NULL;
  g_autofree gchar *stored_version = NULL;
  gchar *signature = NULL;
  DovekieAvStatus status;

  *exists_r = TRUE; /* on a failed read: not counted twice */
  if (!ctx->api->kv_get (ctx, key, &value, &error))
    {
      av_kv_failed (ctx, user, "read", error);
      return FALSE;
    }
  *exists_r = value != NULL;
  if (value == NULL)
    return FALSE;
  if (!dovekie_av_cache_parse (value, &stored_version, &status, &signature))
    {
      dovekie_log (ctx, DOVEKIE_LOG_WARNING, "ignoring malformed cache record %s", key);
      return FALSE;
    }
  if (!g_str_equal (stored_version, version))
    {
      g_free (signature);
      return FALSE;
    }
  scan->status = status;
  scan->signature = signature;
  scan->cached = TRUE;
  return TRUE;
}

/* ---- the cache's bound ----
 *
 * Records are counted in "cache-count" as they are added (an overwrite of
 * an older version's record adds none). Past dovekie_av_cache_entries, or
 * when this process sees the DB version change, one pass over the records
 * drops those of other versions and, if still too many, others, down to
 * three quarters of the bound, so passes stay rare (a bound of B costs one
 * pass per B/4 new records). A "released" record of the current version is
 * the admin's decision and is kept. Counting may drift (records written by
 * an older release, a process that died with writes held); every pass
 * counts again. */
#define CACHE_COUNT_KEY "cache-count"

typedef struct {
  const gchar *version;
  GPtrArray *drop;  /* keys of other versions or malformed */
  GPtrArray *keep;  /* keys of the current version that may go */
  guint64 kept;     /* records left, released ones included */
} AvPrune;

static gboolean
av_prune_record (const gchar *key, const gchar *value, gpointer data)
{
  AvPrune *prune = data;
  g_autofree gchar *version = NULL;
  g_autofree gchar *signature = NULL;
  DovekieAvStatus status;

  if (!dovekie_av_cache_parse (value, &version, &status, &signature) ||
      !g_str_equal (version, prune->version))
    {
      g_ptr_array_add (prune->drop, g_strdup (key));
      return TRUE;
    }
  prune->kept++;
  /* Released: clean with a signature. */
  if (!(status == DOVEKIE_AV_CLEAN && signature != NULL))
    g_ptr_array_add (prune->keep, g_strdup (key));
  return TRUE;
}

static void
av_cache_prune (DovekieContext *ctx, AvUser *user, const gchar *version)
{
  guint64 bound = ctx->api->get_uint (ctx, "dovekie_av_cache_entries");
  g_autoptr (GPtrArray) drop = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  AvPrune prune = { version, drop, keep, 0 };
  g_autoptr (GError) error = NULL;
  g_autofree gchar *count = NULL;
  guint64 target = bound - bound / 4;
  guint dropped_other;

  if (!ctx->api->kv_foreach (ctx, DOVEKIE_AV_CACHE_PREFIX, av_prune_record, &prune, &error))
    {
      av_kv_failed (ctx, user, "list", error);
      return;
    }
  dropped_other = drop->len;
  /* Still too many: any of the current version's, in listing order. */
  for (guint i = 0; prune.kept > target && i < keep->len; i++, prune.kept--)
    g_ptr_array_add (drop, g_strdup (keep->pdata[i]));
  for (guint i = 0; i < drop->len && error == NULL; i++)
    if (!ctx->api->kv_defer (ctx, drop->pdata[i], NULL, &error))
      av_kv_failed (ctx, user, "prune", error);
  user->cache_count = (gint64) prune.kept;
  count = g_strdup_printf ("%" G_GUINT64_FORMAT, prune.kept);
  if (error == NULL && !ctx->api->kv_defer (ctx, CACHE_COUNT_KEY, count, &error))
    av_kv_failed (ctx, user, "prune", error);
  dovekie_log (ctx, DOVEKIE_LOG_INFO,
               "verdict cache pruned: %u of other DB versions, %u more over the bound of %"
               G_GUINT64_FORMAT "; %" G_GUINT64_FORMAT " left", dropped_other,
               drop->len - dropped_other, bound, prune.kept);
}

/* Counts one new record; prunes past the bound. */
static void
av_cache_count (DovekieContext *ctx, AvUser *user, const gchar *version)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = NULL;
  guint64 n = 0;

  if (user->cache_count < 0)
    {
      if (!ctx->api->kv_get (ctx, CACHE_COUNT_KEY, &text, &error))
        {
          av_kv_failed (ctx, user, "read", error);
          return;
        }
      if (text != NULL && !g_ascii_string_to_unsigned (text, 10, 0, G_MAXINT64, &n, NULL))
        n = 0;
      user->cache_count = (gint64) n;
      g_clear_pointer (&text, g_free);
    }
  user->cache_count++;
  if ((guint64) user->cache_count > ctx->api->get_uint (ctx, "dovekie_av_cache_entries"))
    {
      av_cache_prune (ctx, user, version);
      return;
    }
  text = g_strdup_printf ("%" G_GINT64_FORMAT, user->cache_count);
  if (!ctx->api->kv_defer (ctx, CACHE_COUNT_KEY, text, &error))
    av_kv_failed (ctx, user, "write", error);
}

/* Verdicts are held by the host and committed in batches (a cache: a
 * write lost with its process costs a scan). */
static void
av_cache_store (DovekieContext *ctx, AvUser *user, const gchar *key, const gchar *version,
                const AvScan *scan, gboolean existed)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *value = dovekie_av_cache_format (version, scan->status, scan->signature);

  if (!ctx->api->kv_defer (ctx, key, value, &error))
    {
      av_kv_failed (ctx, user, "write", error);
      return;
    }
  if (!existed)
    av_cache_count (ctx, user, version);
}

/* ---- judging one message ---- */

/* The scan of a message already read once (scan->digest is set): the
 * verdict cache, else the scanner. `bytes` holds the message for
 * libclamav (clamd == NULL). */
static gboolean
av_scan_digested (DovekieContext *ctx, DovekieAvClamd *clamd, MessageReader *mr,
                  const DovekieAvReader *reader, GByteArray *bytes, gboolean use_cache,
                  AvScan *scan, GError **error)
{
  AvUser *user = ctx->module_data;
  guint64 max_size = ctx->api->get_uint (ctx, "dovekie_av_max_size");
  g_autofree gchar *key = NULL;
  g_autofree gchar *engine_version = NULL;
  const gchar *version = NULL;
  gboolean existed = FALSE;

  if (ctx->api->get_bool (ctx, "dovekie_av_cache"))
    {
      if (clamd == NULL && user->clamd != NULL)
        {
          /* A clamd user's rescan: the in-process engine's version. */
          if (!av_prepare_libclamav (ctx, error))
            return FALSE;
          version = engine_version = dovekie_av_engine_version ();
        }
      else if (!av_db_version (ctx, user, &version, error))
        return FALSE;
      key = dovekie_av_cache_key (scan->digest);
      if (use_cache && av_cache_lookup (ctx, user, key, version, scan, &existed))
        return TRUE;
    }
  if (clamd != NULL)
    {
      if (!message_rewind (mr, error) ||
          !dovekie_av_clamd_scan (clamd, reader, max_size, &scan->status, &scan->signature,
                                  error))
        return FALSE;
    }
  else
    {
      if (!av_prepare_libclamav (ctx, error) ||
          !dovekie_av_engine_scan (bytes->data, bytes->len, &scan->status, &scan->signature,
                                   error))
        return FALSE;
    }
  if (key != NULL)
    av_cache_store (ctx, user, key, version, scan, existed);
  return TRUE;
}

/* ---- one scan per LMTP transaction ----
 *
 * LMTP hands every recipient of a transaction the same bytes: the message
 * with the trace fields Dovecot prepends once per transaction (Return-Path,
 * Received naming the transaction's id, and Delivered-To only when there is
 * a single recipient), or, after the first recipient stored it, that
 * stored copy. Recipients are separate users, with separate verdict
 * caches, and are judged one after the other in one process. So the
 * result of a delivery's scan (clean, infected with its signature, or the
 * scanner's failure) is kept here and reused by the deliveries of the very
 * same bytes that follow, when the settings that decide the result (the
 * scanner and its limits) are the same; each recipient's own policy
 * (dovekie_av_action, dovekie_av_on_error, dovekie_av_max_size) still
 * applies to it. A failure is reused too: with a hung clamd a transaction
 * of N recipients waits one scan timeout, not N.
 *
 * One slot, one thread (a Dovecot process), bounded in time: reuse stops
 * AV_MEMO_IDLE_USEC after the last use and AV_MEMO_MAX_USEC after the
 * scan, so the deliveries of one transaction share a scan while an MTA's
 * retry (minutes later) or a new signature DB gets a fresh one. Forgetting
 * only costs a scan. */
#define AV_MEMO_IDLE_USEC (5 * G_USEC_PER_SEC)
#define AV_MEMO_MAX_USEC (60 * G_USEC_PER_SEC)

typedef struct {
  gboolean set;
  guint8 digest[DOVEKIE_AV_DIGEST_LEN]; /* of all the bytes scanned */
  guint64 size;
  gchar *scanner;                       /* av_scanner_fingerprint */
  gint64 made, used;                    /* monotonic */
  DovekieAvStatus status;
  gchar *signature;
  gboolean cached;
  gchar *engine;                        /* for the log */
  GError *error;                        /* the scan failed */
} AvMemo;

static AvMemo av_memo;

static void
av_memo_clear (void)
{
  g_clear_pointer (&av_memo.scanner, g_free);
  g_clear_pointer (&av_memo.signature, g_free);
  g_clear_pointer (&av_memo.engine, g_free);
  g_clear_error (&av_memo.error);
  memset (&av_memo, 0, sizeof (av_memo));
}

static void av_memo_free_at_exit (void) __attribute__ ((destructor));

static void
av_memo_free_at_exit (void)
{
  av_memo_clear ();
}

/* The settings that decide what a scan of given bytes comes to. */
static gchar *
av_scanner_fingerprint (DovekieContext *ctx)
{
  static const gchar *const strings[] = {
    "dovekie_av_engine", "dovekie_av_clamd", "dovekie_av_libclamav_db",
  };
  static const gchar *const numbers[] = {
    "dovekie_av_connect_timeout_msecs", "dovekie_av_scan_timeout_msecs",
    "dovekie_av_max_scansize", "dovekie_av_max_filesize", "dovekie_av_max_recursion",
    "dovekie_av_max_files", "dovekie_av_max_scantime_msecs",
  };
  GString *fp = g_string_new (NULL);

  for (guint i = 0; i < G_N_ELEMENTS (strings); i++)
    {
      const gchar *value = ctx->api->get_string (ctx, strings[i]);
      if (value == NULL)
        value = "";
      /* Length-prefixed: no value can pass for another. */
      g_string_append_printf (fp, "%" G_GSIZE_FORMAT ":%s;", strlen (value), value);
    }
  for (guint i = 0; i < G_N_ELEMENTS (numbers); i++)
    g_string_append_printf (fp, "%" G_GUINT64_FORMAT ";", ctx->api->get_uint (ctx, numbers[i]));
  return g_string_free (fp, FALSE);
}

/* TRUE when the memo answers for these bytes and settings: then *ok_r is
 * the scan's result, with scan or error filled as the scan left them. */
static gboolean
av_memo_reuse (const gchar *scanner, AvScan *scan, gboolean *ok_r, GError **error)
{
  gint64 now = g_get_monotonic_time ();

  if (!av_memo.set || now - av_memo.used > AV_MEMO_IDLE_USEC ||
      now - av_memo.made > AV_MEMO_MAX_USEC || now < av_memo.made ||
      av_memo.size != scan->size ||
      memcmp (av_memo.digest, scan->digest, DOVEKIE_AV_DIGEST_LEN) != 0 ||
      !g_str_equal (av_memo.scanner, scanner))
    return FALSE;
  av_memo.used = now;
  scan->reused = TRUE;
  if (av_memo.error != NULL)
    {
      g_propagate_error (error, g_error_copy (av_memo.error));
      *ok_r = FALSE;
      return TRUE;
    }
  scan->status = av_memo.status;
  scan->signature = g_strdup (av_memo.signature);
  scan->cached = av_memo.cached;
  *ok_r = TRUE;
  return TRUE;
}

static void
av_memo_keep (gchar *scanner, const AvScan *scan, const GError *failure, const gchar *engine)
{
  av_memo_clear ();
  av_memo.set = TRUE;
  memcpy (av_memo.digest, scan->digest, DOVEKIE_AV_DIGEST_LEN);
  av_memo.size = scan->size;
  av_memo.scanner = scanner;
  av_memo.made = av_memo.used = g_get_monotonic_time ();
  if (failure != NULL)
    av_memo.error = g_error_copy (failure);
  else
    {
      av_memo.status = scan->status;
      av_memo.signature = g_strdup (scan->signature);
      av_memo.cached = scan->cached;
    }
  av_memo.engine = g_strdup (engine);
}

static const gchar *av_engine_name (DovekieContext *ctx);

/* Scans (or looks up) one message, with clamd unless the user has
 * libclamav or `in_process` asks for it (a rescan job). A `delivery`
 * reuses the result of the same bytes' scan for the previous recipient of
 * its transaction (see above). FALSE with `error`: DOVEKIE_ERROR_IO when
 * the message could not be read, anything else is a scanner failure. */
static gboolean
av_scan_message (DovekieContext *ctx, DovekieMessage *msg, gboolean use_cache,
                 gboolean in_process, gboolean delivery, AvScan *scan, GError **error)
{
  AvUser *user = ctx->module_data;
  DovekieAvClamd *clamd = in_process ? NULL : user->clamd;
  MessageReader mr = { ctx, msg };
  DovekieAvReader reader = { message_read, message_rewind, &mr, message_fd };
  g_autoptr (GByteArray) bytes = clamd == NULL ? g_byte_array_new () : NULL;
  g_autofree gchar *scanner = NULL;
  g_autoptr (GError) local = NULL;
  gboolean ok;

  if (!dovekie_av_digest (&reader,
                          ctx->api->get_uint (ctx, in_process && user->rescanning ?
                                                       "dovekie_av_rescan_max_size" :
                                                       "dovekie_av_max_size"),
                          scan->digest, &scan->size, &scan->too_big, bytes, error))
    return FALSE;
  if (scan->too_big)
    return TRUE;
  if (delivery)
    {
      scanner = av_scanner_fingerprint (ctx);
      if (av_memo_reuse (scanner, scan, &ok, error))
        return ok;
    }
  ok = av_scan_digested (ctx, clamd, &mr, &reader, bytes, use_cache, scan, &local);
  /* A message that could not be read says nothing about the scanner. */
  if (delivery && (ok || local->code != DOVEKIE_ERROR_IO))
    av_memo_keep (g_steal_pointer (&scanner), scan, local, av_engine_name (ctx));
  if (!ok)
    g_propagate_error (error, g_steal_pointer (&local));
  return ok;
}

static const gchar *
av_engine_name (DovekieContext *ctx)
{
  AvUser *user = ctx->module_data;
  return user->clamd != NULL ? dovekie_av_clamd_scan_label (user->clamd) : "libclamav";
}

/* Counts one judged message as an event: result clean, infected, error or
 * too_big; engine clamd or libclamav; action what the verdict became. */
static void
av_emit (DovekieContext *ctx, const gchar *origin, const gchar *result, gboolean cached,
         const gchar *action)
{
  AvUser *user = ctx->module_data;
  dovekie_emit (ctx, "dovekie_av_scan_finished", "origin", origin, "result", result,
                "engine", user->clamd != NULL ? "clamd" : "libclamav",
                "cached", cached ? "yes" : "no", "action", action, NULL);
}

/* "$Virus:<signature>", with anything an IMAP atom cannot hold made '_'
 * and cut to QUARANTINE_KEYWORD_MAX. g_free it. */
static gchar *
av_quarantine_keyword (const gchar *signature)
{
  GString *kw = g_string_new (QUARANTINE_KEYWORD_PREFIX);

  for (const gchar *p = signature; *p != '\0' && kw->len < QUARANTINE_KEYWORD_MAX; p++)
    {
      gboolean ok = *p > 0x20 && *p < 0x7f && strchr ("(){]%*\"\\", *p) == NULL;
      g_string_append_c (kw, ok ? *p : '_');
    }
  return g_string_free (kw, FALSE);
}

/* Sets the verdict for an infected message; returns the action's name.
 * `sync`: a read by the host at a mailbox sync (the message is new there,
 * no client has fetched it), the one read that may move a message. */
static const gchar *
av_infected_verdict (DovekieContext *ctx, gboolean delivery, gboolean read, gboolean sync,
                     const gchar *signature, DovekieVerdict *verdict)
{
  const gchar *action = ctx->api->get_string (ctx, "dovekie_av_action");
  g_autofree gchar *reason = NULL;
  g_autofree gchar *keyword = NULL;

  /* A sync moves a message only when the admin wants infected mail in
   * quarantine: with dovekie_av_action = tag the message was delivered on
   * purpose, tagged, and stays where it is (issue 16, invariant 5). A
   * client's read never moves anything (invariant 2): it is refused, its
   * bytes are never served, and the next sync or the rescan moves it. */
  if (sync && g_str_equal (ctx->api->get_string (ctx, "dovekie_av_read_action"), "replace")
      && !g_str_equal (action, "tag"))
    {
      reason = g_strdup_printf ("Virus %s found", signature);
      dovekie_verdict_divert (verdict,
                              ctx->api->get_string (ctx, "dovekie_av_quarantine_mailbox"),
                              reason);
      keyword = av_quarantine_keyword (signature);
      dovekie_verdict_set_keyword (verdict, keyword);
      return "quarantine";
    }
  if (read)
    {
      reason = g_strdup_printf ("Virus %s found: the message cannot be read", signature);
      dovekie_verdict_set (verdict, DOVEKIE_VERDICT_REJECT, reason);
      return "refuse";
    }
  if (!delivery || g_str_equal (action, "reject"))
    {
      reason = g_strdup_printf ("Message rejected: virus %s found", signature);
      dovekie_verdict_set (verdict, DOVEKIE_VERDICT_REJECT, reason);
      return "reject";
    }
  if (g_str_equal (action, "tag"))
    {
      dovekie_verdict_set_keyword (verdict, INFECTED_KEYWORD);
      return "tag";
    }
  if (g_str_equal (action, "discard"))
    {
      reason = g_strdup_printf ("Message discarded: virus %s found", signature);
      dovekie_verdict_set (verdict, DOVEKIE_VERDICT_DISCARD, reason);
      return "discard";
    }
  reason = g_strdup_printf ("Message quarantined: virus %s found", signature);
  dovekie_verdict_divert (verdict, ctx->api->get_string (ctx, "dovekie_av_quarantine_mailbox"),
                          reason);
  keyword = av_quarantine_keyword (signature);
  dovekie_verdict_set_keyword (verdict, keyword);
  return "quarantine";
}

/* The log line of one judged message; `action` is only shown for an
 * infected one. */
static void
av_log_scan (DovekieContext *ctx, const gchar *origin, const DovekieMessageInfo *info,
             const AvScan *scan, const gchar *engine, const gchar *action)
{
  gboolean infected = scan->status == DOVEKIE_AV_INFECTED;
  g_autofree gchar *mailbox = dovekie_log_quote (info->mailbox);
  gchar digest_hex[17];

  for (guint i = 0; i < 8; i++)
    g_snprintf (digest_hex + 2 * i, 3, "%02x", scan->digest[i]);
  /* A reused result says so: "scan origin=" counts the scans made. */
  dovekie_log (ctx, infected ? DOVEKIE_LOG_WARNING : DOVEKIE_LOG_INFO,
               "scan%s origin=%s mailbox=%s uid=%u size=%" G_GUINT64_FORMAT
               " sha256=%s result=%s%s%s engine=%s cached=%s%s%s", scan->reused ? " reused" : "",
               origin, mailbox, info->uid, scan->size, digest_hex, infected ? "infected" : "clean",
               infected ? " signature=" : "", infected ? scan->signature : "",
               scan->cached ? "cache" : engine, scan->cached ? "yes" : "no",
               infected ? " action=" : "", infected ? action : "");
}

/* Whether a message over dovekie_av_max_size is within
 * dovekie_av_rescan_max_size: by the host's size when it knows it, else by
 * reading on from where the digest stopped (counting only). FALSE when
 * the message could not be read. */
static gboolean
av_within_rescan (DovekieContext *ctx, DovekieMessage *msg, const DovekieMessageInfo *info,
                  const AvScan *scan, gboolean *within_r, GError **error)
{
  guint64 limit = ctx->api->get_uint (ctx, "dovekie_av_rescan_max_size");
  g_autofree guint8 *buf = NULL;
  guint64 total = scan->size;

  if (info->size >= 0)
    {
      *within_r = (guint64) info->size <= limit;
      return TRUE;
    }
  buf = g_malloc (65536);
  while (total <= limit)
    {
      gssize n = ctx->api->read (msg, buf, 65536, error);
      if (n < 0)
        return FALSE;
      if (n == 0)
        break;
      total += (guint64) n;
    }
  *within_r = total <= limit;
  return TRUE;
}

/* Runs one message through the scanner and the policy. `origin` names
 * the event in the log. On TRUE the verdict is set; FALSE only when the
 * message itself could not be read. */
static gboolean
av_judge (DovekieContext *ctx, const gchar *origin, gboolean delivery, gboolean read,
          gboolean sync, gboolean use_cache, const DovekieMessageInfo *info, DovekieMessage *msg,
          DovekieVerdict *verdict, GError **error)
{
  AvScan scan;
  g_autoptr (GError) local = NULL;
  g_autofree gchar *mailbox = dovekie_log_quote (info->mailbox);
  const gchar *action = "accept";

  memset (&scan, 0, sizeof (scan));
  if (!av_scan_message (ctx, msg, use_cache, FALSE, delivery, &scan, &local))
    {
      const gchar *on_error = ctx->api->get_string (ctx, "dovekie_av_on_error");
      av_scan_clear (&scan);
      if (local->code == DOVEKIE_ERROR_IO)
        {
          g_propagate_error (error, g_steal_pointer (&local));
          return FALSE;
        }
      if (g_str_equal (on_error, "accept"))
        {
          dovekie_log (ctx, DOVEKIE_LOG_WARNING,
                       "scan%s origin=%s mailbox=%s uid=%u result=error action=accept error=%s",
                       scan.reused ? " reused" : "", origin, mailbox, info->uid, local->message);
          av_emit (ctx, origin, "error", scan.reused, "accept");
          return TRUE;
        }
      dovekie_log (ctx, DOVEKIE_LOG_ERROR,
                   "scan%s origin=%s mailbox=%s uid=%u result=error action=tempfail error=%s",
                   scan.reused ? " reused" : "", origin, mailbox, info->uid, local->message);
      dovekie_verdict_set (verdict, DOVEKIE_VERDICT_TEMPFAIL, REASON_UNAVAILABLE);
      av_emit (ctx, origin, "error", scan.reused, "tempfail");
      return TRUE;
    }
  if (scan.too_big)
    {
      const gchar *policy = ctx->api->get_string (ctx, "dovekie_av_over_size");
      const gchar *why = "";

      /* Accepted unscanned, it must be within the rescan job's reach; a
       * read judges mail already stored, which only the rescan can judge. */
      if (!read && g_str_equal (policy, "accept-and-log"))
        {
          gboolean rescannable;
          if (!av_within_rescan (ctx, msg, info, &scan, &rescannable, error))
            return FALSE;
          if (!rescannable)
            {
              policy = "reject";
              why = " (over dovekie_av_rescan_max_size too: nothing would ever scan it)";
            }
          else
            why = " (left to the rescan job)";
        }
      /* At a sync a TEMPFAIL says the scanner failed, and the host stops
       * judging new mail for a while. An over-size message is no such
       * failure: it stays where it is (REJECT at a sync), the reads answer
       * it with the tempfail, and the sync goes on with the next one. */
      if (sync && g_str_equal (policy, "tempfail"))
        {
          policy = "reject";
          why = " (at a sync: it stays, and reads of it are refused for now)";
        }
      dovekie_log (ctx, DOVEKIE_LOG_WARNING,
                   "scan origin=%s mailbox=%s uid=%u result=too-big size>%" G_GUINT64_FORMAT
                   " action=%s%s", origin, mailbox, info->uid,
                   ctx->api->get_uint (ctx, "dovekie_av_max_size"), policy, why);
      if (g_str_equal (policy, "reject"))
        dovekie_verdict_set (verdict, DOVEKIE_VERDICT_REJECT, REASON_TOO_BIG);
      else if (g_str_equal (policy, "tempfail"))
        dovekie_verdict_set (verdict, DOVEKIE_VERDICT_TEMPFAIL, REASON_TOO_BIG);
      av_emit (ctx, origin, "too_big", FALSE,
               g_str_equal (policy, "accept-and-log") ? "accept" : policy);
      return TRUE;
    }

  if (scan.status == DOVEKIE_AV_INFECTED)
    action = av_infected_verdict (ctx, delivery, read, sync, scan.signature, verdict);
  av_log_scan (ctx, origin, info, &scan, scan.reused ? av_memo.engine : av_engine_name (ctx),
               action);
  av_emit (ctx, origin, scan.status == DOVEKIE_AV_INFECTED ? "infected" : "clean",
           scan.cached || scan.reused, action);
  av_scan_clear (&scan);
  return TRUE;
}

static gboolean
av_save (DovekieContext *ctx, DovekieSaveOrigin origin, const DovekieMessageInfo *info,
         DovekieMessage *msg, DovekieVerdict *verdict, GError **error)
{
  return av_judge (ctx, save_origin_names[origin], origin == DOVEKIE_ORIGIN_DELIVERY, FALSE,
                   FALSE, TRUE, info, msg, verdict, error);
}

static gboolean
av_read (DovekieContext *ctx, DovekieReadOrigin origin, const DovekieMessageInfo *info,
         DovekieMessage *msg, DovekieVerdict *verdict, GError **error)
{
  const gchar *when = ctx->api->get_string (ctx, "dovekie_av_scan_on_read");

  if (g_str_equal (when, "off"))
    return TRUE;
  return av_judge (ctx, read_origin_names[origin], FALSE, TRUE, origin == DOVEKIE_READ_SYNC,
                   g_str_equal (when, "unscanned"),
                   info, msg, verdict, error);
}

/* ---- the "antivirus" service: the verdict cache, for scan-status ---- */

typedef struct {
  DovekieAntivirusVerdictFunc func;
  gpointer data;
} AvForeach;

static gboolean
av_foreach_record (const gchar *key, const gchar *value, gpointer data)
{
  AvForeach *each = data;
  g_autofree gchar *version = NULL;
  g_autofree gchar *signature = NULL;
  DovekieAvStatus status;

  (void) key;
  if (!dovekie_av_cache_parse (value, &version, &status, &signature))
    each->func ("", "malformed", each->data);
  else
    each->func (version,
                status == DOVEKIE_AV_INFECTED ? "infected" : signature != NULL ? "released" : "clean",
                each->data);
  return TRUE;
}

static gboolean
av_foreach_verdict (DovekieContext *ctx, DovekieAntivirusVerdictFunc func, gpointer data,
                    GError **error)
{
  AvForeach each = { func, data };
  return ctx->api->kv_foreach (ctx, DOVEKIE_AV_CACHE_PREFIX, av_foreach_record, &each, error);
}

static gboolean
av_probe (DovekieContext *ctx, gchar **scanner_r, gchar **version_r, GError **error)
{
  AvUser *user = ctx->module_data;

  *version_r = NULL;
  if (user->clamd == NULL)
    {
      const gchar *db = ctx->api->get_string (ctx, "dovekie_av_libclamav_db");
      *scanner_r = g_strconcat ("libclamav ", db, NULL);
      return dovekie_av_engine_peek_version (db, version_r, error);
    }
  if (!dovekie_av_clamd_version (user->clamd, version_r, error))
    {
      *scanner_r = g_strconcat ("clamd ", ctx->api->get_string (ctx, "dovekie_av_clamd"), NULL);
      return FALSE;
    }
  *scanner_r = g_strconcat ("clamd ", dovekie_av_clamd_server (user->clamd), NULL);
  return TRUE;
}

/* ---- rescan of stored mail (doveadm dovekie rescan) ---- */

#define RESCAN_MARK_PREFIX "r/"

static gboolean
av_rescan_begin (DovekieContext *ctx, GError **error)
{
  AvUser *user = ctx->module_data;

  g_clear_pointer (&user->rescan_version, g_free);
  user->rescanning = TRUE;
  if (!av_prepare_libclamav (ctx, error))
    return FALSE;
  user->rescan_version = dovekie_av_engine_version ();
  return TRUE;
}

static guint
av_sync_max_messages (DovekieContext *ctx)
{
  return (guint) ctx->api->get_uint (ctx, "dovekie_av_sync_max_messages");
}

static gchar *
av_read_memo_key (DovekieContext *ctx)
{
  AvUser *user = ctx->module_data;
  g_autoptr (GError) error = NULL;
  const gchar *version;

  /* No memo where an acceptance may judge nothing: with on_error =
   * accept a read or a sync accepts what the scanner could not answer for,
   * and remembering that would keep the message from ever being judged. */
  if (!g_str_equal (ctx->api->get_string (ctx, "dovekie_av_scan_on_read"), "unscanned") ||
      !ctx->api->get_bool (ctx, "dovekie_av_cache") ||
      g_str_equal (ctx->api->get_string (ctx, "dovekie_av_on_error"), "accept"))
    return NULL;
  if (!av_db_version (ctx, user, &version, &error))
    return NULL; /* the read asks the module, which says why */
  return g_strdup_printf ("1|%s|%s|%s|%s|%" G_GUINT64_FORMAT "|%" G_GUINT64_FORMAT, version,
                          ctx->api->get_string (ctx, "dovekie_av_engine"),
                          ctx->api->get_string (ctx, "dovekie_av_action"),
                          ctx->api->get_string (ctx, "dovekie_av_over_size"),
                          ctx->api->get_uint (ctx, "dovekie_av_max_size"),
                          ctx->api->get_uint (ctx, "dovekie_av_rescan_max_size"));
}

static const gchar *
av_quarantine_mailbox (DovekieContext *ctx)
{
  return ctx->api->get_string (ctx, "dovekie_av_quarantine_mailbox");
}

/* What the rescan made of one stored message. */
typedef enum {
  RESCAN_CLEAN = 0,
  RESCAN_INFECTED,
  RESCAN_TOO_BIG, /* over dovekie_av_rescan_max_size: not scanned */
} RescanStatus;

typedef struct {
  RescanStatus status;
  gboolean cached;  /* judged with this DB version before: not scanned again */
  gchar *signature; /* INFECTED: the signature name */
  gchar *keyword;   /* INFECTED: the quarantine copy's keyword, as on a
                     * quarantined delivery */
} RescanResult;

/* Judges one stored message with the in-process engine, the verdict cache
 * first, and stores the verdict. Logs and counts it (origin "rescan"). */
static gboolean
av_rescan_message (DovekieContext *ctx, const DovekieMessageInfo *info, DovekieMessage *msg,
                   RescanResult *result, GError **error)
{
  AvScan scan;
  g_autofree gchar *mailbox = dovekie_log_quote (info->mailbox);

  memset (result, 0, sizeof (*result));
  memset (&scan, 0, sizeof (scan));
  if (!av_scan_message (ctx, msg, TRUE, TRUE, FALSE, &scan, error))
    {
      av_scan_clear (&scan);
      av_emit (ctx, "rescan", "error", FALSE, "none");
      return FALSE;
    }
  if (scan.too_big)
    {
      dovekie_log (ctx, DOVEKIE_LOG_WARNING,
                   "scan origin=rescan mailbox=%s uid=%u result=too-big size>%" G_GUINT64_FORMAT,
                   mailbox, info->uid, ctx->api->get_uint (ctx, "dovekie_av_rescan_max_size"));
      av_emit (ctx, "rescan", "too_big", FALSE, "none");
      result->status = RESCAN_TOO_BIG;
      return TRUE;
    }
  /* av_rescan_batch applies the action (the host moves the message) and
   * says so. */
  av_log_scan (ctx, "rescan", info, &scan, "libclamav", "quarantine");
  av_emit (ctx, "rescan", scan.status == DOVEKIE_AV_INFECTED ? "infected" : "clean", scan.cached,
           scan.status == DOVEKIE_AV_INFECTED ? "quarantine" : "accept");
  result->status = scan.status == DOVEKIE_AV_INFECTED ? RESCAN_INFECTED : RESCAN_CLEAN;
  result->cached = scan.cached;
  if (scan.status == DOVEKIE_AV_INFECTED)
    result->keyword = av_quarantine_keyword (scan.signature);
  result->signature = g_steal_pointer (&scan.signature);
  return TRUE;
}

/* A mark is the kv record "r/<mailbox_key>" = "<version> <uid>" (the
 * loader refuses a key that is not plain). */
static gchar *
av_rescan_mark_key (const gchar *mailbox_key)
{
  return g_strconcat (RESCAN_MARK_PREFIX, mailbox_key, NULL);
}

static gboolean
av_rescan_get_mark (DovekieContext *ctx, const gchar *mailbox_key, const gchar *version,
                    guint32 *uid_r, GError **error)
{
  g_autofree gchar *key = av_rescan_mark_key (mailbox_key);
  g_autofree gchar *value = NULL;
  const gchar *space;
  guint64 uid;

  *uid_r = 0;
  if (!ctx->api->kv_get (ctx, key, &value, error))
    return FALSE;
  if (value == NULL)
    return TRUE;
  space = strrchr (value, ' ');
  if (space == NULL || !g_ascii_string_to_unsigned (space + 1, 10, 1, G_MAXUINT32, &uid, NULL))
    {
      /* A mark we cannot read costs a full pass, nothing else. */
      dovekie_log (ctx, DOVEKIE_LOG_WARNING, "ignoring malformed rescan mark %s", key);
      return TRUE;
    }
  if ((gsize) (space - value) == strlen (version) && strncmp (value, version, strlen (version)) == 0)
    *uid_r = (guint32) uid;
  return TRUE;
}

static gboolean
av_rescan_set_mark (DovekieContext *ctx, const gchar *mailbox_key, const gchar *version,
                    guint32 uid, GError **error)
{
  g_autofree gchar *key = av_rescan_mark_key (mailbox_key);
  g_autofree gchar *value = g_strdup_printf ("%s %u", version, uid);

  return ctx->api->kv_set (ctx, key, value, error);
}

/* One rescan_mailbox call. */
typedef struct {
  DovekieContext *ctx;
  const DovekieAntivirusRescanHost *host;
  gpointer host_data;
  const DovekieAntivirusRescanJob *job;
  DovekieAntivirusRescanCounts *counts;
  gchar *mailbox; /* job->mailbox, quoted for the log */
} RescanMailbox;

static void av_rescan_log (RescanMailbox *rm, DovekieLogLevel level, const gchar *format, ...)
    G_GNUC_PRINTF (3, 4);

static void
av_rescan_log (RescanMailbox *rm, DovekieLogLevel level, const gchar *format, ...)
{
  g_autofree gchar *line = NULL;
  va_list args;

  va_start (args, format);
  line = g_strdup_vprintf (format, args);
  va_end (args);
  rm->host->log (rm->host_data, level, line);
}

/* The host's read callback: judges the message while the host has it open. */
typedef struct {
  DovekieContext *ctx;
  RescanResult result;
} RescanRead;

static gboolean
av_rescan_read (const DovekieMessageInfo *info, DovekieMessage *msg, gpointer data,
                GError **error)
{
  RescanRead *read = data;

  return av_rescan_message (read->ctx, info, msg, &read->result, error);
}

/* Counts one judged message and applies the action: an infected message
 * moves into quarantine, unless it is there already. */
static gboolean
av_rescan_apply (RescanMailbox *rm, guint32 uid, const RescanResult *result, GError **error)
{
  DovekieAntivirusRescanCounts *counts = rm->counts;
  const gchar *quarantine = av_quarantine_mailbox (rm->ctx);
  g_autofree gchar *quoted = NULL;

  if (result->status == RESCAN_TOO_BIG)
    {
      counts->too_big++;
      return TRUE;
    }
  if (result->cached)
    counts->cached++;
  else
    counts->scanned++;
  if (result->status != RESCAN_INFECTED)
    return TRUE;
  counts->infected++;
  if (rm->job->is_quarantine)
    {
      av_rescan_log (rm, DOVEKIE_LOG_INFO,
                     "rescan user=%s mailbox=%s uid=%u signature=%s action=none "
                     "(already in quarantine)",
                     rm->job->user, rm->mailbox, uid, result->signature);
      return TRUE;
    }
  if (!rm->host->move (rm->host_data, uid, quarantine, result->keyword, error))
    return FALSE;
  counts->moved++;
  quoted = dovekie_log_quote (quarantine);
  av_rescan_log (rm, DOVEKIE_LOG_INFO,
                 "rescan user=%s mailbox=%s uid=%u signature=%s action=quarantine mailbox=%s",
                 rm->job->user, rm->mailbox, uid, result->signature, quoted);
  return TRUE;
}

/* Judges the `count` UIDs in one batch of the host's. A failure rolls the
 * batch's moves back (the host keeps its verdicts). */
static gboolean
av_rescan_batch (RescanMailbox *rm, const guint32 *uids, guint count, GError **error)
{
  gboolean ok = TRUE;

  if (!rm->host->batch_begin (rm->host_data, error))
    return FALSE;
  for (guint i = 0; i < count && ok; i++)
    {
      RescanRead read = { rm->ctx, { 0 } };
      gint ret = rm->host->read (rm->host_data, uids[i], av_rescan_read, &read, error);

      if (ret < 0)
        ok = FALSE;
      else if (ret > 0)
        {
          rm->counts->checked++;
          if (rm->job->budget != NULL)
            (*rm->job->budget)--;
          ok = av_rescan_apply (rm, uids[i], &read.result, error);
        }
      /* else expunged meanwhile */
      g_free (read.result.signature);
      g_free (read.result.keyword);
    }
  /* An error of the batch is the one to tell; the end's comes when the
   * batch itself went well. */
  return rm->host->batch_end (rm->host_data, ok, ok ? error : NULL) && ok;
}

static gboolean
av_rescan_mailbox (DovekieContext *ctx, const DovekieAntivirusRescanHost *host,
                   gpointer host_data, const DovekieAntivirusRescanJob *job,
                   DovekieAntivirusRescanCounts *counts_r, GError **error)
{
  AvUser *user = ctx->module_data;
  const gchar *version = user->rescan_version;
  g_autofree gchar *mailbox = dovekie_log_quote (job->mailbox);
  RescanMailbox rm = { ctx, host, host_data, job, counts_r, mailbox };
  const guint32 *uids = NULL;
  guint count = 0, n;
  gboolean ok = TRUE;

  memset (counts_r, 0, sizeof (*counts_r));
  if (version == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                           "rescan_mailbox before rescan_begin");
      av_rescan_log (&rm, DOVEKIE_LOG_ERROR, "rescan: %s", (*error)->message);
      return FALSE;
    }
  if (!job->restart &&
      !av_rescan_get_mark (ctx, job->mailbox_key, version, &counts_r->resumed_after, error))
    {
      av_rescan_log (&rm, DOVEKIE_LOG_ERROR, "rescan: cannot read the mark of %s of %s: %s",
                     mailbox, job->user, (*error)->message);
      return FALSE;
    }
  if (!host->list (host_data, counts_r->resumed_after, &uids, &count, error))
    {
      av_rescan_log (&rm, DOVEKIE_LOG_ERROR, "rescan: cannot list %s of %s: %s", mailbox,
                     job->user, (*error)->message);
      return FALSE;
    }
  counts_r->listed = TRUE;
  av_rescan_log (&rm, DOVEKIE_LOG_INFO,
                 "rescan start user=%s mailbox=%s version=%s messages=%u after_uid=%u "
                 "to_check=%u",
                 job->user, mailbox, version, job->messages, counts_r->resumed_after, count);
  for (guint pos = 0; pos < count; pos += n)
    {
      g_autoptr (GError) mark_error = NULL;

      n = MIN (DOVEKIE_ANTIVIRUS_RESCAN_BATCH, count - pos);
      if (job->budget != NULL)
        {
          if (*job->budget == 0)
            {
              counts_r->stopped = TRUE;
              break;
            }
          n = (guint) MIN ((guint64) n, *job->budget);
        }
      if (!av_rescan_batch (&rm, uids + pos, n, error))
        {
          av_rescan_log (&rm, DOVEKIE_LOG_ERROR, "rescan of %s of %s stopped: %s", mailbox,
                         job->user, (*error)->message);
          counts_r->stopped = TRUE;
          ok = FALSE;
          break;
        }
      if (!av_rescan_set_mark (ctx, job->mailbox_key, version, uids[pos + n - 1], &mark_error))
        {
          /* The work is done; the next run only repeats it. */
          av_rescan_log (&rm, DOVEKIE_LOG_WARNING, "rescan: cannot store the mark of %s of %s: %s",
                         mailbox, job->user, mark_error->message);
        }
      av_rescan_log (&rm, DOVEKIE_LOG_INFO,
                     "rescan progress user=%s mailbox=%s checked=%u/%u infected=%u", job->user,
                     mailbox, pos + n, count, counts_r->infected);
    }
  av_rescan_log (&rm, DOVEKIE_LOG_INFO,
                 "rescan %s user=%s mailbox=%s checked=%u scanned=%u cached=%u too_big=%u "
                 "infected=%u moved=%u",
                 counts_r->stopped ? "stopped" : "done", job->user, mailbox, counts_r->checked,
                 counts_r->scanned, counts_r->cached, counts_r->too_big, counts_r->infected,
                 counts_r->moved);
  return ok;
}

/* ---- the quarantine (doveadm dovekie quarantine) ---- */

static gboolean
av_quarantine_cutoff (DovekieContext *ctx, gint64 *cutoff_r)
{
  guint64 days = ctx->api->get_uint (ctx, "dovekie_av_quarantine_days");

  *cutoff_r = 0;
  if (days == 0)
    return FALSE;
  *cutoff_r = ctx->api->now (ctx) - (gint64) days * 86400;
  return TRUE;
}

/* Whether a host-given signature can stand in a cache record. */
static gboolean
av_signature_is_word (const gchar *signature)
{
  gsize len = signature != NULL ? strlen (signature) : 0;

  if (len == 0 || len > DOVEKIE_AV_SIGNATURE_MAX)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if ((guchar) signature[i] <= 0x20 || (guchar) signature[i] > 0x7e)
      return FALSE;
  return TRUE;
}

static gboolean
av_release_message (DovekieContext *ctx, const DovekieMessageInfo *info, DovekieMessage *msg,
                    const gchar *signature, gchar **version_r, GError **error)
{
  AvUser *user = ctx->module_data;
  MessageReader mr = { ctx, msg };
  DovekieAvReader reader = { message_read, message_rewind, &mr, message_fd };
  g_autofree gchar *mailbox = dovekie_log_quote (info->mailbox);
  g_autofree gchar *key = NULL;
  g_autofree gchar *value = NULL;
  const gchar *version;
  AvScan scan;

  *version_r = NULL;
  memset (&scan, 0, sizeof (scan));
  if (!ctx->api->get_bool (ctx, "dovekie_av_cache"))
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                           "dovekie_av_cache is off: a released message would be caught again");
      return FALSE;
    }
  if (!av_signature_is_word (signature))
    signature = "unknown";
  if (!dovekie_av_digest (&reader, ctx->api->get_uint (ctx, "dovekie_av_max_size"), scan.digest,
                          &scan.size, &scan.too_big, NULL, error))
    return FALSE;
  if (!av_db_version (ctx, user, &version, error))
    return FALSE;
  *version_r = g_strdup (version);
  if (scan.too_big)
    return TRUE; /* never scanned anyway: nothing to mark */
  key = dovekie_av_cache_key (scan.digest);
  value = dovekie_av_cache_format_released (version, signature);
  if (!ctx->api->kv_set (ctx, key, value, error))
    return FALSE;
  dovekie_log (ctx, DOVEKIE_LOG_INFO, "released mailbox=%s uid=%u signature=%s version=%s",
               mailbox, info->uid, signature, version);
  return TRUE;
}

/* The notice is the same for every user: no setting shapes it. */
static gchar *
av_quarantine_notice (G_GNUC_UNUSED DovekieContext *ctx, const DovekieAntivirusNotice *notice,
                      GError **error)
{
  return dovekie_av_notice_text (notice, error);
}

static const DovekieAntivirusService av_service = {
  .foreach_verdict = av_foreach_verdict,
  .probe = av_probe,
  .rescan_begin = av_rescan_begin,
  .quarantine_mailbox = av_quarantine_mailbox,
  .rescan_mailbox = av_rescan_mailbox,
  .quarantine_cutoff = av_quarantine_cutoff,
  .release_message = av_release_message,
  .sync_max_messages = av_sync_max_messages,
  .read_memo_key = av_read_memo_key,
  .quarantine_notice = av_quarantine_notice,
};

static const DovekieService av_services[] = {
  { DOVEKIE_ANTIVIRUS_SERVICE, &av_service },
  { NULL, NULL },
};

/* GModule calls this when the module is loaded: the module stays loaded
 * for the life of the process, so a libclamav engine is built once per
 * process, not once per user session. */
G_MODULE_EXPORT const gchar *g_module_check_init (GModule *module);

G_MODULE_EXPORT const gchar *
g_module_check_init (GModule *module)
{
  g_module_make_resident (module);
  return NULL;
}

G_MODULE_EXPORT const DovekieModule dovekie_module = {
  .abi = DOVEKIE_MODULE_ABI,
  .name = "antivirus",
  .version = PACKAGE_VERSION,
  .description = "scans delivered, saved, copied and read mail with ClamAV",
  .settings = av_settings,
  .services = av_services,
  .init = av_init,
  .deinit = av_deinit,
  .save = av_save,
  .read = av_read,
  .expunge = NULL,
  .pop3_start = NULL,
  .pop3_end = NULL,
};
