/* dovekie example module: the module contract end to end.
 *
 * It refuses any saved message that contains dovekie_example_reject, and
 * logs one line per hook so tests can prove which Dovecot process called
 * it. It is the template for real modules, and a test fixture.
 */
#include "dovekie-config.h"

#include <string.h>

#include <gmodule.h>

#include "dovekie/module.h"
#include "dovekie/log-quote.h"
#include "dovekie-example.h"

#define EXAMPLE_READ_CHUNK 65536

static const DovekieSettingDef example_settings[] = {
  /* A default marker, so the sandbox shows a refusal on embedded defaults;
   * set it empty to refuse nothing. */
  { "dovekie_example_reject", DOVEKIE_SETTING_STRING, "DOVEKIE-EXAMPLE-REJECT", 0, 1024, NULL,
    "refuse saved messages containing this text (empty: refuse nothing)" },
  { "dovekie_example_reason", DOVEKIE_SETTING_STRING,
    "message refused by the example module", 0, 200, NULL,
    "text given to the client when a message is refused" },
  { "dovekie_example_count_saves", DOVEKIE_SETTING_BOOL, "no", 0, 1, NULL,
    "count accepted saves in the user's module state (shows the kv store)" },
  { NULL, 0, NULL, 0, 0, NULL, NULL },
};

static const gchar *const save_origin_names[] = { "append", "copy", "delivery" };
static const gchar *const read_origin_names[] = { "fetch", "pop3", "other", "sync" };

gboolean
dovekie_example_find (DovekieContext *ctx, DovekieMessage *msg, const gchar *needle,
                      gboolean *found_r, GError **error)
{
  gsize needle_len = strlen (needle);
  g_autofree guint8 *buf = NULL;
  gsize keep = 0;

  *found_r = FALSE;
  if (needle_len == 0)
    return TRUE;
  /* The window keeps the last needle_len - 1 bytes of the previous chunk,
   * so a match that straddles two reads is still seen. */
  buf = g_malloc (needle_len - 1 + EXAMPLE_READ_CHUNK);
  for (;;)
    {
      gssize n = ctx->api->read (msg, buf + keep, EXAMPLE_READ_CHUNK, error);
      if (n < 0)
        return FALSE;
      if (n == 0)
        return TRUE;
      gsize have = keep + (gsize) n;
      if (memmem (buf, have, needle, needle_len) != NULL)
        {
          *found_r = TRUE;
          return TRUE;
        }
      keep = MIN (have, needle_len - 1);
      memmove (buf, buf + have - keep, keep);
    }
}

static gboolean
sum_counter (const gchar *key, const gchar *value, gpointer data)
{
  guint64 n = 0;

  (void) key;
  /* Foreign bytes: parse whole-string; a garbled entry counts as 0. */
  if (g_ascii_string_to_unsigned (value, 10, 0, G_MAXUINT32, &n, NULL))
    *(guint64 *) data += n;
  return TRUE;
}

/* Adds one to the user's persistent counter of saves from `origin`
 * ("saves/<origin>") and returns the total over all origins, or 0 after
 * logging why the state could not be used. */
static guint64
example_count_save (DovekieContext *ctx, const gchar *origin)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *key = g_strconcat ("saves/", origin, NULL);
  g_autofree gchar *old = NULL;
  g_autofree gchar *new = NULL;
  guint64 count = 0, total = 0;

  if (!ctx->api->kv_get (ctx, key, &old, &error))
    goto failed;
  if (old != NULL && !g_ascii_string_to_unsigned (old, 10, 0, G_MAXUINT32, &count, NULL))
    {
      g_autofree gchar *quoted = dovekie_log_quote (old);
      dovekie_log (ctx, DOVEKIE_LOG_WARNING, "state '%s' holds %s; restarting at 0", key,
                   quoted);
      count = 0;
    }
  new = g_strdup_printf ("%" G_GUINT64_FORMAT, count + 1);
  if (!ctx->api->kv_set (ctx, key, new, &error) ||
      !ctx->api->kv_foreach (ctx, "saves/", sum_counter, &total, &error))
    goto failed;
  return total;

failed:
  dovekie_log (ctx, DOVEKIE_LOG_WARNING, "cannot count saves: %s", error->message);
  return 0;
}

static gboolean
example_save (DovekieContext *ctx, DovekieSaveOrigin origin, const DovekieMessageInfo *info,
              DovekieMessage *msg, DovekieVerdict *verdict, GError **error)
{
  const gchar *needle = ctx->api->get_string (ctx, "dovekie_example_reject");
  g_autofree gchar *mailbox = dovekie_log_quote (info->mailbox);
  gboolean found = FALSE;

  if (needle != NULL && *needle != '\0' && !dovekie_example_find (ctx, msg, needle, &found, error))
    return FALSE;
  /* A counter for Dovecot's stats: metric { filter = event=dovekie_example_saved } */
  dovekie_emit (ctx, "dovekie_example_saved", "origin", save_origin_names[origin],
                "verdict", found ? "reject" : "accept", NULL);
  if (found)
    {
      dovekie_verdict_set (verdict, DOVEKIE_VERDICT_REJECT,
                           ctx->api->get_string (ctx, "dovekie_example_reason"));
    }
  else if (ctx->api->get_bool (ctx, "dovekie_example_count_saves"))
    {
      dovekie_log (ctx, DOVEKIE_LOG_INFO, "hook=save origin=%s mailbox=%s verdict=accept saves=%"
                   G_GUINT64_FORMAT, save_origin_names[origin], mailbox,
                   example_count_save (ctx, save_origin_names[origin]));
      return TRUE;
    }
  dovekie_log (ctx, DOVEKIE_LOG_INFO, "hook=save origin=%s mailbox=%s verdict=%s",
               save_origin_names[origin], mailbox, found ? "reject" : "accept");
  return TRUE;
}

static gboolean
example_read (DovekieContext *ctx, DovekieReadOrigin origin, const DovekieMessageInfo *info,
              DovekieMessage *msg, DovekieVerdict *verdict, GError **error)
{
  g_autofree gchar *mailbox = dovekie_log_quote (info->mailbox);

  (void) msg;
  (void) verdict;
  (void) error;
  dovekie_log (ctx, DOVEKIE_LOG_INFO, "hook=read origin=%s mailbox=%s uid=%u",
               read_origin_names[origin], mailbox, info->uid);
  return TRUE;
}

static DovekieExpungeAction
example_expunge (DovekieContext *ctx, const DovekieMessageInfo *info, gboolean pop3)
{
  g_autofree gchar *mailbox = dovekie_log_quote (info->mailbox);

  dovekie_log (ctx, DOVEKIE_LOG_INFO, "hook=expunge mailbox=%s uid=%u pop3=%s",
               mailbox, info->uid, pop3 ? "yes" : "no");
  return DOVEKIE_EXPUNGE_ALLOW;
}

static void
example_pop3_start (DovekieContext *ctx, const DovekiePop3Info *info)
{
  dovekie_log (ctx, DOVEKIE_LOG_INFO, "hook=pop3_start messages=%u", info->messages);
}

static void
example_pop3_end (DovekieContext *ctx, const DovekiePop3Info *info)
{
  dovekie_log (ctx, DOVEKIE_LOG_INFO, "hook=pop3_end quit=%s",
               info->quit_seen ? "yes" : "no");
}

G_MODULE_EXPORT const DovekieModule dovekie_module = {
  .abi = DOVEKIE_MODULE_ABI,
  .name = "example",
  .version = PACKAGE_VERSION,
  .description = "refuses messages containing a configured string; logs every hook",
  .settings = example_settings,
  .services = NULL,
  .init = NULL,
  .deinit = NULL,
  .save = example_save,
  .read = example_read,
  .expunge = example_expunge,
  .pop3_start = example_pop3_start,
  .pop3_end = example_pop3_end,
};
