/* GLib side of the Dovecot host: plain C in, libdovekie out. */
#include "dovekie-config.h"

#include <string.h>

#include "dovekie/loader.h"
#include "dovekie-bridge.h"
#include "dovekie-bridge-private.h"

G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_SAVE_DELIVERY == (gint) DOVEKIE_ORIGIN_DELIVERY);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_READ_OTHER == (gint) DOVEKIE_READ_OTHER);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_READ_SYNC == (gint) DOVEKIE_READ_SYNC);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_TEMPFAIL == (gint) DOVEKIE_VERDICT_TEMPFAIL);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_DIVERT == (gint) DOVEKIE_VERDICT_DIVERT);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_DISCARD == (gint) DOVEKIE_VERDICT_DISCARD);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_ERROR == (gint) DOVEKIE_LOG_ERROR);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_GUARD_SAVE == (gint) DOVEKIE_GUARD_SAVE);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_GUARD_READ == (gint) DOVEKIE_GUARD_READ);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_GUARD_POP3 == (gint) DOVEKIE_GUARD_POP3);

struct dovekie_bridge {
  struct dovekie_bridge_host host;
  DovekieLoader *loader;
  GPtrArray *service_lists; /* gchar*, one per module, for module_info */
};

static void
bridge_log (gpointer data, DovekieLogLevel level, const gchar *module, const gchar *message)
{
  struct dovekie_bridge *bridge = data;
  bridge->host.log (bridge->host.context, (enum dovekie_bridge_level) level, module, message);
}

static gint64
bridge_now (gpointer data)
{
  struct dovekie_bridge *bridge = data;
  return bridge->host.now (bridge->host.context);
}

static gboolean
bridge_kv_get (gpointer data, const gchar *module, const gchar *key, gchar **value_r,
               GError **error)
{
  struct dovekie_bridge *bridge = data;
  const char *value = NULL, *reason = NULL;
  int ret = bridge->host.kv_get (bridge->host.context, module, key, &value, &reason);

  if (ret < 0)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "reading state %s: %s",
                   key, reason != NULL ? reason : "unknown error");
      return FALSE;
    }
  *value_r = ret > 0 ? g_strdup (value) : NULL;
  return TRUE;
}

static gboolean
bridge_kv_set (gpointer data, const gchar *module, const gchar *key, const gchar *value,
               GError **error)
{
  struct dovekie_bridge *bridge = data;
  const char *reason = NULL;

  if (bridge->host.kv_set (bridge->host.context, module, key, value, &reason) < 0)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "writing state %s: %s",
                   key, reason != NULL ? reason : "unknown error");
      return FALSE;
    }
  return TRUE;
}

static gboolean
bridge_kv_defer (gpointer data, const gchar *module, const gchar *key, const gchar *value,
                 GError **error)
{
  struct dovekie_bridge *bridge = data;
  const char *reason = NULL;

  if (bridge->host.kv_defer (bridge->host.context, module, key, value, &reason) < 0)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "writing state %s: %s",
                   key, reason != NULL ? reason : "unknown error");
      return FALSE;
    }
  return TRUE;
}

typedef struct {
  DovekieKvFunc func;
  gpointer data;
} KvIterData;

static bool
bridge_kv_iter_cb (void *func_context, const char *key, const char *value)
{
  KvIterData *iter = func_context;
  return iter->func (key, value, iter->data);
}

static gboolean
bridge_kv_foreach (gpointer data, const gchar *module, const gchar *prefix, DovekieKvFunc func,
                   gpointer func_data, GError **error)
{
  struct dovekie_bridge *bridge = data;
  KvIterData iter = { func, func_data };
  const char *reason = NULL;

  if (bridge->host.kv_iter (bridge->host.context, module, prefix, bridge_kv_iter_cb, &iter,
                            &reason) < 0)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "listing state %s*: %s",
                   prefix, reason != NULL ? reason : "unknown error");
      return FALSE;
    }
  return TRUE;
}

static void
bridge_emit (gpointer data, const gchar *module, const gchar *name, const gchar *const *fields)
{
  struct dovekie_bridge *bridge = data;
  bridge->host.emit (bridge->host.context, module, name, fields);
}

static gssize
source_read (gpointer data, guint8 *buf, gsize len, GError **error)
{
  const struct dovekie_bridge_source *source = data;
  const char *reason = NULL;
  ssize_t n = source->read (source->context, buf, len, &reason);

  if (n < 0)
    g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_IO, "reading the message failed: %s",
                 reason != NULL ? reason : "unknown error");
  return n;
}

static gboolean
source_rewind (gpointer data, GError **error)
{
  const struct dovekie_bridge_source *source = data;
  const char *reason = NULL;

  if (source->rewind (source->context, &reason) < 0)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_IO, "rewinding the message failed: %s",
                   reason != NULL ? reason : "unknown error");
      return FALSE;
    }
  return TRUE;
}

static gint
source_fd (gpointer data)
{
  const struct dovekie_bridge_source *source = data;
  return source->fd != NULL ? source->fd (source->context) : -1;
}

const DovekieMessageSource dovekie_bridge_message_source = {
  .read = source_read,
  .rewind = source_rewind,
  .fd = source_fd,
};

struct dovekie_bridge *
dovekie_bridge_create (const char *const *settings, const char *const *user_keys,
                       const char *default_module_dir, const struct dovekie_bridge_host *host)
{
  struct dovekie_bridge *bridge = g_new0 (struct dovekie_bridge, 1);
  g_autoptr (GHashTable) view = g_hash_table_new (g_str_hash, g_str_equal);
  DovekieHost loader_host = { bridge_log, bridge_now, bridge, NULL, NULL, NULL, NULL, NULL };

  bridge->host = *host;
  if (host->kv_get != NULL && host->kv_set != NULL && host->kv_iter != NULL)
    {
      loader_host.kv_get = bridge_kv_get;
      loader_host.kv_set = bridge_kv_set;
      loader_host.kv_foreach = bridge_kv_foreach;
      if (host->kv_defer != NULL)
        loader_host.kv_defer = bridge_kv_defer;
    }
  if (host->emit != NULL)
    loader_host.emit = bridge_emit;
  for (guint i = 0; settings != NULL && settings[i] != NULL && settings[i + 1] != NULL; i += 2)
    g_hash_table_insert (view, (gpointer) settings[i], (gpointer) settings[i + 1]);
  bridge->loader = dovekie_loader_new_full (view, user_keys, default_module_dir, &loader_host);
  return bridge;
}

void
dovekie_bridge_destroy (struct dovekie_bridge **bridge)
{
  if (*bridge == NULL)
    return;
  dovekie_loader_free ((*bridge)->loader);
  g_clear_pointer (&(*bridge)->service_lists, g_ptr_array_unref);
  g_free (*bridge);
  *bridge = NULL;
}

DovekieLoader *
dovekie_bridge_get_loader (struct dovekie_bridge *bridge)
{
  return bridge->loader;
}

int
dovekie_bridge_fail (GError *error, const char *otherwise, const char **error_r)
{
  *error_r = dovekie_bridge_keep (error != NULL ? error->message : otherwise);
  g_clear_error (&error);
  return -1;
}

unsigned int
dovekie_bridge_module_count (struct dovekie_bridge *bridge)
{
  return bridge != NULL ? dovekie_loader_count (bridge->loader) : 0;
}

bool
dovekie_bridge_active (struct dovekie_bridge *bridge)
{
  return bridge != NULL && (dovekie_loader_count (bridge->loader) > 0 ||
                            dovekie_loader_failed_count (bridge->loader) > 0);
}

unsigned int
dovekie_bridge_failed_count (struct dovekie_bridge *bridge)
{
  return bridge != NULL ? dovekie_loader_failed_count (bridge->loader) : 0;
}

bool
dovekie_bridge_failed_info (struct dovekie_bridge *bridge, unsigned int index,
                            const char **name_r, const char **reason_r, unsigned int *guards_r)
{
  DovekieGuard guards = DOVEKIE_GUARD_NONE;

  if (bridge == NULL ||
      !dovekie_loader_failed_info (bridge->loader, index, name_r, reason_r, &guards))
    return FALSE;
  if (guards_r != NULL)
    *guards_r = (unsigned int) guards;
  return TRUE;
}

bool
dovekie_bridge_guarded (struct dovekie_bridge *bridge, enum dovekie_bridge_guard guard,
                        const char **module_r, const char **reason_r)
{
  return bridge != NULL &&
         dovekie_loader_guarded (bridge->loader, (DovekieGuard) guard, module_r, reason_r);
}

unsigned int
dovekie_bridge_problem_count (struct dovekie_bridge *bridge)
{
  return bridge != NULL ? dovekie_loader_problem_count (bridge->loader) : 0;
}

const char *
dovekie_bridge_problem (struct dovekie_bridge *bridge, unsigned int index)
{
  if (bridge == NULL || index >= dovekie_loader_problem_count (bridge->loader))
    return NULL;
  return dovekie_loader_problem (bridge->loader, index);
}

bool
dovekie_bridge_module_info (struct dovekie_bridge *bridge, unsigned int index,
                            const char **name_r, const char **version_r,
                            const char **description_r, const char **services_r)
{
  const DovekieModule *module;

  if (bridge == NULL || index >= dovekie_loader_count (bridge->loader))
    return FALSE;
  module = dovekie_loader_module (bridge->loader, index);
  if (bridge->service_lists == NULL)
    {
      bridge->service_lists = g_ptr_array_new_with_free_func (g_free);
      for (guint i = 0; i < dovekie_loader_count (bridge->loader); i++)
        {
          const DovekieModule *m = dovekie_loader_module (bridge->loader, i);
          GString *list = g_string_new (NULL);
          for (guint j = 0; m->services != NULL && m->services[j].name != NULL; j++)
            g_string_append_printf (list, "%s%s", j > 0 ? " " : "", m->services[j].name);
          g_ptr_array_add (bridge->service_lists, g_string_free (list, FALSE));
        }
    }
  *name_r = module->name;
  *version_r = module->version != NULL ? module->version : "";
  *description_r = module->description != NULL ? module->description : "";
  *services_r = g_ptr_array_index (bridge->service_lists, index);
  return TRUE;
}

bool
dovekie_bridge_wants_save (struct dovekie_bridge *bridge)
{
  return bridge != NULL && dovekie_loader_wants_save (bridge->loader);
}

bool
dovekie_bridge_wants_read (struct dovekie_bridge *bridge)
{
  return bridge != NULL && dovekie_loader_wants_read (bridge->loader);
}

bool
dovekie_bridge_wants_expunge (struct dovekie_bridge *bridge)
{
  return bridge != NULL && dovekie_loader_wants_expunge (bridge->loader);
}

/* Copies what the host acts on out of `verdict` and frees its strings. */
static enum dovekie_bridge_verdict
finish_result (struct dovekie_bridge *bridge, DovekieVerdict *verdict,
               struct dovekie_bridge_result *result)
{
  DovekieVerdictKind kind = verdict->kind;

  result->reason[0] = '\0';
  result->mailbox[0] = '\0';
  result->keyword[0] = '\0';
  if (kind == DOVEKIE_VERDICT_DIVERT &&
      g_strlcpy (result->mailbox, verdict->mailbox, sizeof (result->mailbox)) >=
        sizeof (result->mailbox))
    {
      if (bridge != NULL)
        bridge->host.log (bridge->host.context, DOVEKIE_BRIDGE_ERROR, NULL,
                          "DIVERT mailbox name too long");
      result->mailbox[0] = '\0';
      kind = DOVEKIE_VERDICT_TEMPFAIL;
      g_strlcpy (result->reason, "Temporary failure checking the message, try again later",
                 sizeof (result->reason));
    }
  else if (kind != DOVEKIE_VERDICT_ACCEPT && verdict->reason != NULL)
    g_strlcpy (result->reason, verdict->reason, sizeof (result->reason));
  if ((kind == DOVEKIE_VERDICT_ACCEPT || kind == DOVEKIE_VERDICT_DIVERT) &&
      verdict->keyword != NULL)
    g_strlcpy (result->keyword, verdict->keyword, sizeof (result->keyword));
  dovekie_verdict_clear (verdict);
  return (enum dovekie_bridge_verdict) kind;
}

/* Runs the save (or read) hooks. `full`: DIVERT and DISCARD come back as
 * such (a delivery, or a sync's DIVERT); else they are refusals, as they
 * cannot apply. A read has no DISCARD; a client's read has no DIVERT, and
 * only a sync's DIVERT keeps its keyword (the quarantine copy's). */
static enum dovekie_bridge_verdict
judge (struct dovekie_bridge *bridge, gboolean save, gint origin,
       const struct dovekie_bridge_message *msg, const struct dovekie_bridge_source *source,
       gboolean full, struct dovekie_bridge_result *result)
{
  DovekieMessageInfo info = { msg->mailbox, msg->uid, msg->size };
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;
  enum dovekie_bridge_verdict kind;

  if (bridge == NULL)
    return finish_result (bridge, &verdict, result);
  if (save)
    dovekie_loader_dispatch_save (bridge->loader, (DovekieSaveOrigin) origin, &info,
                                  &dovekie_bridge_message_source, (gpointer) source, &verdict);
  else
    dovekie_loader_dispatch_read (bridge->loader, (DovekieReadOrigin) origin, &info,
                                  &dovekie_bridge_message_source, (gpointer) source, &verdict);
  kind = finish_result (bridge, &verdict, result);
  if (!save && !(origin == DOVEKIE_READ_SYNC && kind == DOVEKIE_BRIDGE_DIVERT))
    result->keyword[0] = '\0';
  if (kind == DOVEKIE_BRIDGE_DISCARD && (!full || !save))
    kind = DOVEKIE_BRIDGE_REJECT;
  if (kind == DOVEKIE_BRIDGE_DIVERT && (!full || (!save && origin != DOVEKIE_READ_SYNC)))
    {
      kind = DOVEKIE_BRIDGE_REJECT;
      result->mailbox[0] = '\0';
    }
  return kind;
}

enum dovekie_bridge_verdict
dovekie_bridge_save (struct dovekie_bridge *bridge, enum dovekie_bridge_origin origin,
                     const struct dovekie_bridge_message *msg,
                     const struct dovekie_bridge_source *source,
                     char reason[DOVEKIE_BRIDGE_REASON_MAX])
{
  struct dovekie_bridge_result result;
  enum dovekie_bridge_verdict kind = judge (bridge, TRUE, origin, msg, source, FALSE, &result);

  g_strlcpy (reason, result.reason, DOVEKIE_BRIDGE_REASON_MAX);
  return kind;
}

enum dovekie_bridge_verdict
dovekie_bridge_save_result (struct dovekie_bridge *bridge, enum dovekie_bridge_origin origin,
                            const struct dovekie_bridge_message *msg,
                            const struct dovekie_bridge_source *source,
                            struct dovekie_bridge_result *result)
{
  return judge (bridge, TRUE, origin, msg, source, TRUE, result);
}

enum dovekie_bridge_verdict
dovekie_bridge_read (struct dovekie_bridge *bridge, enum dovekie_bridge_read_origin origin,
                     const struct dovekie_bridge_message *msg,
                     const struct dovekie_bridge_source *source,
                     char reason[DOVEKIE_BRIDGE_REASON_MAX])
{
  struct dovekie_bridge_result result;
  enum dovekie_bridge_verdict kind = judge (bridge, FALSE, origin, msg, source, FALSE, &result);

  g_strlcpy (reason, result.reason, DOVEKIE_BRIDGE_REASON_MAX);
  return kind;
}

enum dovekie_bridge_verdict
dovekie_bridge_read_result (struct dovekie_bridge *bridge, enum dovekie_bridge_read_origin origin,
                            const struct dovekie_bridge_message *msg,
                            const struct dovekie_bridge_source *source,
                            struct dovekie_bridge_result *result)
{
  return judge (bridge, FALSE, origin, msg, source, TRUE, result);
}

bool
dovekie_bridge_expunge (struct dovekie_bridge *bridge, const struct dovekie_bridge_message *msg,
                        bool pop3)
{
  DovekieMessageInfo info = { msg->mailbox, msg->uid, msg->size };
  if (bridge == NULL)
    return TRUE;
  return dovekie_loader_dispatch_expunge (bridge->loader, &info, pop3) == DOVEKIE_EXPUNGE_ALLOW;
}

void
dovekie_bridge_pop3_start (struct dovekie_bridge *bridge, const char *user, unsigned int messages)
{
  DovekiePop3Info info = { user, messages, FALSE };
  if (bridge == NULL)
    return;
  dovekie_loader_dispatch_pop3_start (bridge->loader, &info);
}

void
dovekie_bridge_pop3_end (struct dovekie_bridge *bridge, const char *user, unsigned int messages,
                         bool quit_seen)
{
  DovekiePop3Info info = { user, messages, quit_seen };
  if (bridge == NULL)
    return;
  dovekie_loader_dispatch_pop3_end (bridge->loader, &info);
}
