/* GLib side of the antivirus service: counts a user's cached verdicts
 * (scan-status), rescans a mailbox through the host's steps, serves the
 * quarantine commands (expiry cutoff, release) and makes the quarantine
 * notice. */
#include "dovekie-config.h"

#include <stdlib.h>
#include <string.h>

#include "dovekie/loader.h"
#include "dovekie/antivirus.h"
#include "dovekie-bridge-private.h"
#include "dovekie-antivirus.h"

#define AV_NOT_LOADED "the antivirus module is not loaded"

/* error's message in *error_r; frees error. */
static int
av_failed (GError *error, const char **error_r)
{
  return dovekie_bridge_fail (error, "unknown error", error_r);
}

static const DovekieAntivirusService *
av_service (struct dovekie_bridge *bridge, DovekieContext **ctx_r)
{
  DovekieLoader *loader = bridge != NULL ? dovekie_bridge_get_loader (bridge) : NULL;

  *ctx_r = NULL;
  if (loader == NULL)
    return NULL;
  return dovekie_loader_service (loader, DOVEKIE_ANTIVIRUS_SERVICE, ctx_r);
}

bool
dovekie_bridge_has_antivirus (struct dovekie_bridge *bridge)
{
  DovekieContext *ctx;
  return av_service (bridge, &ctx) != NULL;
}

/* Keys are "<version>\t<verdict>"; values are counts. */
static void
count_verdict (const gchar *version, const gchar *verdict, gpointer data)
{
  GHashTable *counts = data;
  gchar *key = g_strconcat (version, "\t", verdict, NULL);
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (counts, key));

  g_hash_table_replace (counts, key, GUINT_TO_POINTER (n + 1));
}

static int
compare_keys (const void *a, const void *b)
{
  return strcmp (*(const gchar *const *) a, *(const gchar *const *) b);
}

int
dovekie_bridge_av_status (struct dovekie_bridge *bridge, dovekie_bridge_av_row_func_t *row,
                          void *context, const char **error_r)
{
  DovekieContext *ctx;
  const DovekieAntivirusService *svc = av_service (bridge, &ctx);
  g_autoptr (GHashTable) counts = NULL;
  GError *error = NULL;
  g_autofree gpointer *keys = NULL;
  guint n = 0;

  if (svc == NULL)
    {
      *error_r = AV_NOT_LOADED;
      return -1;
    }
  counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  if (!svc->foreach_verdict (ctx, count_verdict, counts, &error))
    return av_failed (error, error_r);
  keys = g_hash_table_get_keys_as_array (counts, &n);
  qsort (keys, n, sizeof (gpointer), compare_keys);
  for (guint i = 0; i < n; i++)
    {
      const gchar *key = keys[i];
      const gchar *tab = strchr (key, '\t');
      g_autofree gchar *version = g_strndup (key, (gsize) (tab - key));

      row (context, version, tab + 1,
           GPOINTER_TO_UINT (g_hash_table_lookup (counts, key)));
    }
  return 0;
}

static const DovekieAntivirusService *
av_service_or_error (struct dovekie_bridge *bridge, DovekieContext **ctx_r,
                     const char **error_r)
{
  const DovekieAntivirusService *svc = av_service (bridge, ctx_r);

  if (svc == NULL)
    *error_r = AV_NOT_LOADED;
  return svc;
}

int
dovekie_bridge_av_rescan_begin (struct dovekie_bridge *bridge, const char **error_r)
{
  DovekieContext *ctx;
  const DovekieAntivirusService *svc = av_service_or_error (bridge, &ctx, error_r);
  GError *error = NULL;

  if (svc == NULL)
    return -1;
  if (!svc->rescan_begin (ctx, &error))
    return av_failed (error, error_r);
  return 0;
}

int
dovekie_bridge_av_quarantine_mailbox (struct dovekie_bridge *bridge, const char **quarantine_r)
{
  DovekieContext *ctx;
  const DovekieAntivirusService *svc = av_service (bridge, &ctx);

  *quarantine_r = "";
  if (svc == NULL)
    return -1;
  *quarantine_r = dovekie_bridge_keep (svc->quarantine_mailbox (ctx));
  return 0;
}

int
dovekie_bridge_av_read_memo_key (struct dovekie_bridge *bridge, uint64_t *key_r)
{
  DovekieContext *ctx;
  const DovekieAntivirusService *svc = av_service (bridge, &ctx);
  g_autofree gchar *key = NULL;
  g_autoptr (GChecksum) sum = NULL;
  guint8 digest[32];
  gsize len = sizeof (digest);

  *key_r = 0;
  if (svc == NULL || (key = svc->read_memo_key (ctx)) == NULL)
    return -1;
  /* Eight bytes of its SHA-256: what the index keeps per message. 0 is
     "nothing remembered", so a key never hashes to it. */
  sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (sum, (const guchar *) key, -1);
  g_checksum_get_digest (sum, digest, &len);
  memcpy (key_r, digest, sizeof (*key_r));
  if (*key_r == 0)
    *key_r = 1;
  return 0;
}

unsigned int
dovekie_bridge_av_sync_max_messages (struct dovekie_bridge *bridge)
{
  DovekieContext *ctx;
  const DovekieAntivirusService *svc = av_service (bridge, &ctx);

  return svc == NULL ? 0 : svc->sync_max_messages (ctx);
}

/* One dovekie_bridge_av_rescan_mailbox call: the host's steps, behind the
 * module's DovekieAntivirusRescanHost. */
typedef struct {
  const struct dovekie_bridge_av_rescan_host *host;
  void *context;
} RescanHost;

static gboolean
rescan_step_failed (const char *reason, GError **error)
{
  g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                       reason != NULL ? reason : "unknown error");
  return FALSE;
}

static gboolean
rescan_list (gpointer data, guint32 after, const guint32 **uids_r, guint *count_r,
             GError **error)
{
  RescanHost *rh = data;
  const char *reason = NULL;

  if (rh->host->list (rh->context, after, uids_r, count_r, &reason) < 0)
    return rescan_step_failed (reason, error);
  return TRUE;
}

static gboolean
rescan_batch_begin (gpointer data, GError **error)
{
  RescanHost *rh = data;
  const char *reason = NULL;

  if (rh->host->batch_begin (rh->context, &reason) < 0)
    return rescan_step_failed (reason, error);
  return TRUE;
}

/* The module's read callback, called by the host's reader. */
typedef struct {
  DovekieAntivirusRescanReadFunc func;
  gpointer data;
  GError *error; /* func's */
} RescanReader;

static int
rescan_reader (void *context, const struct dovekie_bridge_message *msg,
               const struct dovekie_bridge_source *source, const char **error_r)
{
  RescanReader *reader = context;
  DovekieMessageInfo info = { msg->mailbox, msg->uid, msg->size };
  DovekieMessage *message = dovekie_message_new (&dovekie_bridge_message_source,
                                                 (gpointer) source);
  gboolean ok = reader->func (&info, message, reader->data, &reader->error);

  dovekie_message_free (message);
  if (ok)
    return 0;
  *error_r = reader->error != NULL ? reader->error->message : "unknown error";
  return -1;
}

static gint
rescan_read (gpointer data, guint32 uid, DovekieAntivirusRescanReadFunc func, gpointer func_data,
             GError **error)
{
  RescanHost *rh = data;
  RescanReader reader = { func, func_data, NULL };
  const char *reason = NULL;
  int ret = rh->host->read (rh->context, uid, rescan_reader, &reader, &reason);

  if (ret >= 0)
    return ret;
  /* The scan's own error, rather than the host's copy of its text. */
  if (reader.error != NULL)
    g_propagate_error (error, reader.error);
  else
    rescan_step_failed (reason, error);
  return -1;
}

static gboolean
rescan_move (gpointer data, guint32 uid, const gchar *mailbox, const gchar *keyword,
             GError **error)
{
  RescanHost *rh = data;
  const char *reason = NULL;

  if (rh->host->move (rh->context, uid, mailbox, keyword, &reason) < 0)
    return rescan_step_failed (reason, error);
  return TRUE;
}

static gboolean
rescan_batch_end (gpointer data, gboolean commit, GError **error)
{
  RescanHost *rh = data;
  const char *reason = NULL;

  if (rh->host->batch_end (rh->context, commit, &reason) < 0)
    return rescan_step_failed (reason, error);
  return TRUE;
}

static void
rescan_log (gpointer data, DovekieLogLevel level, const gchar *line)
{
  RescanHost *rh = data;

  rh->host->log (rh->context, (enum dovekie_bridge_level) level, line);
}

static const DovekieAntivirusRescanHost rescan_host = {
  rescan_list, rescan_batch_begin, rescan_read, rescan_move, rescan_batch_end, rescan_log,
};

int
dovekie_bridge_av_rescan_mailbox (struct dovekie_bridge *bridge,
                                  const struct dovekie_bridge_av_rescan_host *host,
                                  void *context, const struct dovekie_bridge_av_rescan_job *job,
                                  struct dovekie_bridge_av_rescan_counts *counts_r,
                                  const char **error_r)
{
  DovekieContext *ctx;
  const DovekieAntivirusService *svc = av_service_or_error (bridge, &ctx, error_r);
  RescanHost rh = { host, context };
  guint64 budget = job->budget != NULL ? *job->budget : 0;
  DovekieAntivirusRescanJob in = {
    job->user, job->mailbox, job->mailbox_key, job->messages, job->is_quarantine, job->restart,
    job->budget != NULL ? &budget : NULL,
  };
  DovekieAntivirusRescanCounts counts = { 0 };
  GError *error = NULL;
  gboolean ok;

  memset (counts_r, 0, sizeof (*counts_r));
  if (svc == NULL)
    return -1;
  ok = svc->rescan_mailbox (ctx, &rescan_host, &rh, &in, &counts, &error);
  if (job->budget != NULL)
    *job->budget = budget;
  counts_r->listed = counts.listed;
  counts_r->resumed_after = counts.resumed_after;
  counts_r->checked = counts.checked;
  counts_r->scanned = counts.scanned;
  counts_r->cached = counts.cached;
  counts_r->too_big = counts.too_big;
  counts_r->infected = counts.infected;
  counts_r->moved = counts.moved;
  counts_r->stopped = counts.stopped;
  return ok ? 0 : av_failed (error, error_r);
}

int
dovekie_bridge_av_probe (struct dovekie_bridge *bridge, const char **scanner_r,
                         const char **version_r, const char **error_r)
{
  DovekieContext *ctx;
  const DovekieAntivirusService *svc = av_service_or_error (bridge, &ctx, error_r);
  GError *error = NULL;
  g_autofree gchar *scanner = NULL;
  g_autofree gchar *version = NULL;
  gboolean ok;

  *scanner_r = "";
  *version_r = "";
  if (svc == NULL)
    return -1;
  ok = svc->probe (ctx, &scanner, &version, &error);
  if (scanner != NULL)
    *scanner_r = dovekie_bridge_keep (scanner);
  if (!ok)
    return av_failed (error, error_r);
  *version_r = dovekie_bridge_keep (version);
  return 0;
}

int
dovekie_bridge_av_quarantine_cutoff (struct dovekie_bridge *bridge, int64_t *cutoff_r,
                                     const char **error_r)
{
  DovekieContext *ctx;
  const DovekieAntivirusService *svc = av_service_or_error (bridge, &ctx, error_r);
  gint64 cutoff = 0;

  *cutoff_r = 0;
  if (svc == NULL)
    return -1;
  if (!svc->quarantine_cutoff (ctx, &cutoff))
    return 0;
  *cutoff_r = cutoff;
  return 1;
}

int
dovekie_bridge_av_release (struct dovekie_bridge *bridge, const struct dovekie_bridge_message *msg,
                           const struct dovekie_bridge_source *source, const char *signature,
                           const char **version_r, const char **error_r)
{
  DovekieContext *ctx;
  const DovekieAntivirusService *svc = av_service_or_error (bridge, &ctx, error_r);
  DovekieMessageInfo info = { msg->mailbox, msg->uid, msg->size };
  GError *error = NULL;
  g_autofree gchar *version = NULL;
  DovekieMessage *message;
  gboolean ok;

  *version_r = "";
  if (svc == NULL)
    return -1;
  message = dovekie_message_new (&dovekie_bridge_message_source, (gpointer) source);
  ok = svc->release_message (ctx, &info, message, signature, &version, &error);
  dovekie_message_free (message);
  if (!ok)
    return av_failed (error, error_r);
  *version_r = dovekie_bridge_keep (version);
  return 0;
}

int
dovekie_bridge_av_notice (struct dovekie_bridge *bridge,
                          const struct dovekie_bridge_av_notice *notice,
                          const char **text_r, const char **error_r)
{
  DovekieContext *ctx;
  const DovekieAntivirusService *svc = av_service_or_error (bridge, &ctx, error_r);
  DovekieAntivirusNotice in = {
    notice->from, notice->to, notice->subject, notice->date,
    notice->mailbox, notice->reason, notice->host, notice->unique, notice->time,
  };
  GError *error = NULL;
  g_autofree gchar *text = NULL;

  *text_r = "";
  if (svc == NULL)
    return -1;
  text = svc->quarantine_notice (ctx, &in, &error);
  if (text == NULL)
    return av_failed (error, error_r);
  *text_r = dovekie_bridge_keep (text);
  return 0;
}
