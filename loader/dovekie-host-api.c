/* The services the loader hands each module: settings, log, clock, message
 * bytes, kv state and events. Checks what modules pass before the host
 * sees it. */
#include "dovekie-config.h"

#include <string.h>

#include "dovekie-loader-private.h"


static LoadedModule *
loaded_from_ctx (DovekieContext *ctx)
{
  return (LoadedModule *) ctx;
}

static const gchar *
api_get_string (DovekieContext *ctx, const gchar *key)
{
  LoadedModule *lm = loaded_from_ctx (ctx);
  if (!g_hash_table_contains (lm->values, key))
    {
      g_critical ("dovekie-%s asked for undeclared setting %s", lm->module->name, key);
      return NULL;
    }
  return g_hash_table_lookup (lm->values, key);
}

static guint64
api_get_uint (DovekieContext *ctx, const gchar *key)
{
  LoadedModule *lm = loaded_from_ctx (ctx);
  const guint64 *number = g_hash_table_lookup (lm->numbers, key);
  if (number == NULL)
    {
      g_critical ("dovekie-%s asked for undeclared number %s", lm->module->name, key);
      return 0;
    }
  return *number;
}

static gboolean
api_get_bool (DovekieContext *ctx, const gchar *key)
{
  return api_get_uint (ctx, key) != 0;
}

static void
api_log (DovekieContext *ctx, DovekieLogLevel level, const gchar *message)
{
  LoadedModule *lm = loaded_from_ctx (ctx);
  dovekie_loader_log (lm->loader, level, lm->module->name, message);
}

static gint64
api_now (DovekieContext *ctx)
{
  LoadedModule *lm = loaded_from_ctx (ctx);
  return lm->loader->host.now (lm->loader->host.data) + lm->loader->clock_offset;
}

static gssize
api_read (DovekieMessage *msg, guint8 *buf, gsize len, GError **error)
{
  return msg->source->read (msg->data, buf, len, error);
}

static gboolean
api_rewind (DovekieMessage *msg, GError **error)
{
  return msg->source->rewind (msg->data, error);
}

static gint
api_fd (DovekieMessage *msg)
{
  return msg->source->fd != NULL ? msg->source->fd (msg->data) : -1;
}

gboolean
dovekie_kv_key_valid (const gchar *key)
{
  gsize len = strlen (key);

  if (len == 0 || len > DOVEKIE_KV_KEY_MAX)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    {
      if (!g_ascii_isalnum (key[i]) && strchr ("._:/-", key[i]) == NULL)
        return FALSE;
    }
  return TRUE;
}

/* FALSE with `error` when the host keeps no state. */
static gboolean
kv_supported (LoadedModule *lm, gboolean supported, GError **error)
{
  if (!supported)
    g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE,
                 "module %s: this host keeps no state (kv not supported)", lm->module->name);
  return supported;
}

/* FALSE with `error` when the key (and the value, if not NULL) break the
 * contract in loader.h. */
static gboolean
kv_valid (const gchar *key, const gchar *value, GError **error)
{
  if (!dovekie_kv_key_valid (key))
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                   "invalid kv key '%.64s' (1..%d bytes of A-Z a-z 0-9 . _ : / -)",
                   key, DOVEKIE_KV_KEY_MAX);
      return FALSE;
    }
  if (value != NULL && (strlen (value) > DOVEKIE_KV_VALUE_MAX || !g_utf8_validate (value, -1, NULL)))
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                   "kv value of %s is not UTF-8 text of at most %d bytes", key, DOVEKIE_KV_VALUE_MAX);
      return FALSE;
    }
  return TRUE;
}

static gboolean
api_kv_get (DovekieContext *ctx, const gchar *key, gchar **value_r, GError **error)
{
  LoadedModule *lm = loaded_from_ctx (ctx);
  const DovekieHost *host = &lm->loader->host;

  *value_r = NULL;
  if (!kv_valid (key, NULL, error) || !kv_supported (lm, host->kv_get != NULL, error))
    return FALSE;
  return host->kv_get (host->data, lm->module->name, key, value_r, error);
}

static gboolean
api_kv_set (DovekieContext *ctx, const gchar *key, const gchar *value, GError **error)
{
  LoadedModule *lm = loaded_from_ctx (ctx);
  const DovekieHost *host = &lm->loader->host;

  if (!kv_valid (key, value, error) || !kv_supported (lm, host->kv_set != NULL, error))
    return FALSE;
  return host->kv_set (host->data, lm->module->name, key, value, error);
}

static gboolean
api_kv_defer (DovekieContext *ctx, const gchar *key, const gchar *value, GError **error)
{
  LoadedModule *lm = loaded_from_ctx (ctx);
  const DovekieHost *host = &lm->loader->host;

  if (!kv_valid (key, value, error) || !kv_supported (lm, host->kv_set != NULL, error))
    return FALSE;
  if (host->kv_defer == NULL)
    return host->kv_set (host->data, lm->module->name, key, value, error);
  return host->kv_defer (host->data, lm->module->name, key, value, error);
}

static gboolean
api_kv_foreach (DovekieContext *ctx, const gchar *prefix, DovekieKvFunc func, gpointer data,
                GError **error)
{
  LoadedModule *lm = loaded_from_ctx (ctx);
  const DovekieHost *host = &lm->loader->host;

  /* An empty prefix lists everything; anything else must look like a key. */
  if ((*prefix != '\0' && !kv_valid (prefix, NULL, error)) ||
      !kv_supported (lm, host->kv_foreach != NULL, error))
    return FALSE;
  return host->kv_foreach (host->data, lm->module->name, prefix, func, data, error);
}

static gboolean
event_name_valid (const gchar *name)
{
  if (*name == '\0' || strlen (name) > 64)
    return FALSE;
  for (const gchar *p = name; *p != '\0'; p++)
    if (!g_ascii_islower (*p) && !g_ascii_isdigit (*p) && *p != '_')
      return FALSE;
  return TRUE;
}

static void
api_emit (DovekieContext *ctx, const gchar *name, const gchar *const *fields)
{
  LoadedModule *lm = loaded_from_ctx (ctx);
  const DovekieHost *host = &lm->loader->host;
  guint n = 0;

  if (!event_name_valid (name))
    {
      g_critical ("dovekie-%s: invalid event name '%.64s'", lm->module->name, name);
      return;
    }
  while (fields != NULL && fields[n] != NULL)
    {
      if (fields[n + 1] == NULL || !event_name_valid (fields[n]))
        {
          g_critical ("dovekie-%s: event %s has a bad field list", lm->module->name, name);
          return;
        }
      n += 2;
    }
  if (host->emit != NULL)
    host->emit (host->data, lm->module->name, name, fields);
}

const DovekieHostApi dovekie_host_api = {
  .get_string = api_get_string,
  .get_uint = api_get_uint,
  .get_bool = api_get_bool,
  .log = api_log,
  .now = api_now,
  .read = api_read,
  .rewind = api_rewind,
  .fd = api_fd,
  .kv_get = api_kv_get,
  .kv_set = api_kv_set,
  .kv_foreach = api_kv_foreach,
  .kv_defer = api_kv_defer,
  .emit = api_emit,
};

/* ---- loading ---- */
