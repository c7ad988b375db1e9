/* libdovekie: module loading, ABI and permission checks, registry, dispatch. */
#include "dovekie-config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmodule.h>

#include "dovekie/loader.h"

G_DEFINE_QUARK (dovekie-loader-error-quark, dovekie_loader_error)

const gchar *const dovekie_known_modules[] = {
  "example", "antivirus", "search", "retention", NULL,
};

#define MODULE_NAME_MAX 64

const DovekieSettingDef dovekie_loader_settings[] = {
  { DOVEKIE_SETTING_MODULES, DOVEKIE_SETTING_STRING, "", 0, 1024, NULL,
    "space-separated module names, loaded and called in this order; none loads nothing" },
  { DOVEKIE_SETTING_MODULE_DIR, DOVEKIE_SETTING_STRING, NULL, 0, 4096, NULL,
    "directory holding the modules' .so files (owner root or the mail user, "
    "not group- or world-writable); unset: the packaged module directory" },
  { DOVEKIE_SETTING_CLOCK_OFFSET, DOVEKIE_SETTING_UINT, "0", 0, 100 * 366 * 86400ULL, NULL,
    "seconds added to the clock the modules see; for tests only" },
  { NULL, 0, NULL, 0, 0, NULL, NULL },
};

typedef struct {
  DovekieContext pub; /* first: modules get &pub and we cast back */
  DovekieLoader *loader;
  GModule *gmodule;
  const DovekieModule *module;
  GHashTable *values;  /* key -> effective value (owned copies) */
  GHashTable *numbers; /* key -> guint64* (owned) */
  gboolean initialized;
} LoadedModule;

struct _DovekieLoader {
  GHashTable *settings; /* the user's view: key -> value, owned copies */
  gchar *module_dir;
  DovekieHost host;
  gint64 clock_offset;
  GPtrArray *modules;   /* LoadedModule*, load order */
  GHashTable *services; /* service name -> LoadedModule* (borrowed) */
};

struct _DovekieMessage {
  const DovekieMessageSource *source;
  gpointer data;
};

static void
loader_log (DovekieLoader *loader, DovekieLogLevel level, const gchar *module, const gchar *message)
{
  loader->host.log (loader->host.data, level, module, message);
}

/* ---- the host API handed to modules ---- */

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
  loader_log (lm->loader, level, lm->module->name, message);
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

static gboolean
kv_check (LoadedModule *lm, const gchar *key, const gchar *value, gboolean need_host, GError **error)
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
  if (need_host)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE,
                   "module %s: this host keeps no state (kv not supported)", lm->module->name);
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
  if (!kv_check (lm, key, NULL, host->kv_get == NULL, error))
    return FALSE;
  return host->kv_get (host->data, lm->module->name, key, value_r, error);
}

static gboolean
api_kv_set (DovekieContext *ctx, const gchar *key, const gchar *value, GError **error)
{
  LoadedModule *lm = loaded_from_ctx (ctx);
  const DovekieHost *host = &lm->loader->host;

  if (!kv_check (lm, key, value, host->kv_set == NULL, error))
    return FALSE;
  return host->kv_set (host->data, lm->module->name, key, value, error);
}

static gboolean
api_kv_foreach (DovekieContext *ctx, const gchar *prefix, DovekieKvFunc func, gpointer data,
                GError **error)
{
  LoadedModule *lm = loaded_from_ctx (ctx);
  const DovekieHost *host = &lm->loader->host;

  /* An empty prefix lists everything; anything else must look like a key. */
  if (*prefix != '\0' && !kv_check (lm, prefix, NULL, FALSE, error))
    return FALSE;
  if (host->kv_foreach == NULL)
    return kv_check (lm, "x", NULL, TRUE, error);
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

static const DovekieHostApi host_api = {
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
  .emit = api_emit,
};

/* ---- loading ---- */

static gboolean
module_name_valid (const gchar *name)
{
  gsize len = strlen (name);
  if (len == 0 || len > MODULE_NAME_MAX || !g_ascii_islower (name[0]))
    return FALSE;
  for (gsize i = 0; i < len; i++)
    {
      if (!g_ascii_islower (name[i]) && !g_ascii_isdigit (name[i]) && name[i] != '_')
        return FALSE;
    }
  return TRUE;
}

/* A module runs with the mail user's rights inside the mail process, so
 * whoever can write the file (or swap it in its directory) owns every
 * mailbox. Accept only root or the running user as owner, and no group or
 * world write bit. */
static gboolean
check_safe_path (const gchar *path, const gchar *what, GError **error)
{
  struct stat st;

  if (stat (path, &st) < 0)
    {
      int saved = errno;
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_OPEN,
                   "cannot stat %s %s: %s", what, path, g_strerror (saved));
      return FALSE;
    }
  if (st.st_uid != 0 && st.st_uid != geteuid ())
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_PERMISSION,
                   "refusing %s %s: owned by uid %u, not by root or the running user (uid %u)",
                   what, path, (guint) st.st_uid, (guint) geteuid ());
      return FALSE;
    }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_PERMISSION,
                   "refusing %s %s: group- or world-writable (mode %04o)",
                   what, path, (guint) (st.st_mode & 07777));
      return FALSE;
    }
  return TRUE;
}

static void
loaded_module_free (LoadedModule *lm)
{
  if (lm == NULL)
    return;
  if (lm->initialized && lm->module->deinit != NULL)
    lm->module->deinit (&lm->pub);
  g_clear_pointer (&lm->values, g_hash_table_unref);
  g_clear_pointer (&lm->numbers, g_hash_table_unref);
  if (lm->gmodule != NULL)
    g_module_close (lm->gmodule);
  g_free (lm);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LoadedModule, loaded_module_free)

/* Validates the module's declared settings against the user's view and
 * stores the effective values in lm. */
static gboolean
bind_settings (DovekieLoader *loader, LoadedModule *lm, GError **error)
{
  const DovekieSettingDef *defs = lm->module->settings;
  g_autofree gchar *prefix = g_strdup_printf ("dovekie_%s_", lm->module->name);

  for (guint i = 0; defs != NULL && defs[i].name != NULL; i++)
    {
      const DovekieSettingDef *def = &defs[i];
      const gchar *value = g_hash_table_lookup (loader->settings, def->name);
      guint64 number = 0;

      if (!g_str_has_prefix (def->name, "dovekie_"))
        {
          g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
                       "module %s declares setting %s outside the dovekie_ namespace",
                       lm->module->name, def->name);
          return FALSE;
        }
      if (value == NULL)
        value = def->default_value;
      if (!dovekie_setting_validate (def, value, &number, error))
        return FALSE;
      g_hash_table_insert (lm->values, g_strdup (def->name), g_strdup (value));
      if (def->type != DOVEKIE_SETTING_STRING)
        g_hash_table_insert (lm->numbers, g_strdup (def->name), g_memdup2 (&number, sizeof number));
    }
  return TRUE;
}

gboolean
dovekie_loader_load (DovekieLoader *loader, const gchar *name, GError **error)
{
  g_autoptr (LoadedModule) lm = NULL;
  g_autofree gchar *path = NULL;
  gpointer symbol = NULL;

  g_return_val_if_fail (loader != NULL && name != NULL, FALSE);

  if (!module_name_valid (name))
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_UNKNOWN_MODULE,
                   "unknown module '%s': a module name is lower-case letters, digits and _",
                   name);
      return FALSE;
    }
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *other = g_ptr_array_index (loader->modules, i);
      if (g_str_equal (other->module->name, name))
        {
          g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_DUPLICATE,
                       "module '%s' is listed twice in %s", name, DOVEKIE_SETTING_MODULES);
          return FALSE;
        }
    }
  if (loader->module_dir == NULL)
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
                   "cannot load module '%s': %s is not set", name, DOVEKIE_SETTING_MODULE_DIR);
      return FALSE;
    }

  path = g_strdup_printf ("%s/%s.so", loader->module_dir, name);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    {
      if (g_strv_contains (dovekie_known_modules, name))
        g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_MISSING_FILE,
                     "module '%s' is part of dovekie but %s is not installed", name, path);
      else
        g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_UNKNOWN_MODULE,
                     "unknown module '%s': not a dovekie module and no %s exists", name, path);
      return FALSE;
    }
  if (!check_safe_path (loader->module_dir, "module directory", error) ||
      !check_safe_path (path, "module file", error))
    return FALSE;

  lm = g_new0 (LoadedModule, 1);
  lm->pub.api = &host_api;
  lm->loader = loader;
  lm->values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  lm->numbers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  /* Local binding: two modules may use the same helper names. */
  lm->gmodule = g_module_open (path, G_MODULE_BIND_LOCAL);
  if (lm->gmodule == NULL)
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_OPEN,
                   "cannot open module '%s': %s", name, g_module_error ());
      return FALSE;
    }
  if (!g_module_symbol (lm->gmodule, DOVEKIE_MODULE_SYMBOL, &symbol) || symbol == NULL)
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_MISSING_SYMBOL,
                   "module '%s' (%s) does not export the symbol %s", name, path,
                   DOVEKIE_MODULE_SYMBOL);
      return FALSE;
    }
  lm->module = symbol;
  /* The ABI number is the only field we may trust before it matches. */
  if (lm->module->abi != DOVEKIE_MODULE_ABI)
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_ABI,
                   "module '%s' was built for module ABI %u, this loader speaks ABI %u; "
                   "rebuild the module", name, (guint) lm->module->abi, DOVEKIE_MODULE_ABI);
      return FALSE;
    }
  if (lm->module->name == NULL || !g_str_equal (lm->module->name, name))
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_ABI,
                   "module file %s calls itself '%s', expected '%s'", path,
                   lm->module->name != NULL ? lm->module->name : "(null)", name);
      return FALSE;
    }
  for (guint i = 0; lm->module->services != NULL && lm->module->services[i].name != NULL; i++)
    {
      const gchar *service = lm->module->services[i].name;
      LoadedModule *owner = g_hash_table_lookup (loader->services, service);
      if (owner != NULL)
        {
          g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_DUPLICATE,
                       "module '%s' provides service '%s', already provided by '%s'",
                       name, service, owner->module->name);
          return FALSE;
        }
    }
  if (!bind_settings (loader, lm, error))
    return FALSE;
  if (lm->module->init != NULL)
    {
      g_autoptr (GError) init_error = NULL;
      if (!lm->module->init (&lm->pub, &init_error))
        {
          g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_INIT,
                       "module '%s' failed to start: %s", name,
                       init_error != NULL ? init_error->message : "no reason given");
          return FALSE;
        }
    }
  lm->initialized = TRUE;

  for (guint i = 0; lm->module->services != NULL && lm->module->services[i].name != NULL; i++)
    g_hash_table_insert (loader->services, (gpointer) lm->module->services[i].name, lm);
  g_ptr_array_add (loader->modules, g_steal_pointer (&lm));
  return TRUE;
}

static gboolean
declared_by (const DovekieSettingDef *defs, const gchar *key)
{
  for (guint i = 0; defs != NULL && defs[i].name != NULL; i++)
    if (g_str_equal (defs[i].name, key))
      return TRUE;
  return FALSE;
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(const gchar *const *) a, *(const gchar *const *) b);
}

gboolean
dovekie_loader_check_unknown (DovekieLoader *loader, GError **error)
{
  GHashTableIter iter;
  gpointer key;
  g_autoptr (GPtrArray) unknown = g_ptr_array_new ();

  g_hash_table_iter_init (&iter, loader->settings);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      gboolean known = declared_by (dovekie_loader_settings, key);
      for (guint i = 0; !known && i < loader->modules->len; i++)
        {
          LoadedModule *lm = g_ptr_array_index (loader->modules, i);
          known = declared_by (lm->module->settings, key);
        }
      if (!known)
        g_ptr_array_add (unknown, key);
    }
  if (unknown->len == 0)
    return TRUE;
  /* Sorted so the message is stable across runs. */
  g_ptr_array_sort (unknown, compare_strings);
  g_ptr_array_add (unknown, NULL);
  g_autofree gchar *list = g_strjoinv (", ", (gchar **) unknown->pdata);
  g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
               "unknown setting(s) %s: no loaded module declares them "
               "(misspelt, or their module is not in %s)", list, DOVEKIE_SETTING_MODULES);
  return FALSE;
}

DovekieLoader *
dovekie_loader_new (GHashTable *settings, const gchar *default_module_dir, const DovekieHost *host)
{
  DovekieLoader *loader;
  GHashTableIter iter;
  gpointer key, value;
  guint64 number = 0;
  const gchar *text;
  g_auto (GStrv) names = NULL;

  g_return_val_if_fail (host != NULL && host->log != NULL && host->now != NULL, NULL);

  loader = g_new0 (DovekieLoader, 1);
  loader->host = *host;
  loader->settings = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  loader->modules = g_ptr_array_new_with_free_func (NULL);
  loader->services = g_hash_table_new (g_str_hash, g_str_equal);

  if (settings != NULL)
    {
      g_hash_table_iter_init (&iter, settings);
      while (g_hash_table_iter_next (&iter, &key, &value))
        if (g_str_has_prefix (key, "dovekie_"))
          g_hash_table_insert (loader->settings, g_strdup (key), g_strdup (value));
    }

  for (guint i = 0; dovekie_loader_settings[i].name != NULL; i++)
    {
      g_autoptr (GError) error = NULL;
      const DovekieSettingDef *def = &dovekie_loader_settings[i];
      text = g_hash_table_lookup (loader->settings, def->name);
      if (!dovekie_setting_validate (def, text != NULL ? text : def->default_value,
                                     &number, &error))
        {
          loader_log (loader, DOVEKIE_LOG_ERROR, NULL, error->message);
          /* A bad loader setting means we cannot know what the admin
           * wanted: load nothing rather than guess. */
          return loader;
        }
      if (g_str_equal (def->name, DOVEKIE_SETTING_CLOCK_OFFSET))
        loader->clock_offset = (gint64) number;
    }

  text = g_hash_table_lookup (loader->settings, DOVEKIE_SETTING_MODULE_DIR);
  loader->module_dir = g_strdup (text != NULL && *text != '\0' ? text : default_module_dir);

  text = g_hash_table_lookup (loader->settings, DOVEKIE_SETTING_MODULES);
  names = g_strsplit_set (text != NULL ? text : "", " \t,", -1);
  for (guint i = 0; names[i] != NULL; i++)
    {
      g_autoptr (GError) error = NULL;
      /* "none" spells "no module" where an empty value cannot be written:
       * Dovecot reads an empty userdb field as "yes". */
      if (names[i][0] == '\0' || g_str_equal (names[i], "none"))
        continue;
      if (!dovekie_loader_load (loader, names[i], &error))
        loader_log (loader, DOVEKIE_LOG_ERROR, NULL, error->message);
    }

  {
    g_autoptr (GError) error = NULL;
    if (!dovekie_loader_check_unknown (loader, &error))
      loader_log (loader, DOVEKIE_LOG_ERROR, NULL, error->message);
  }
  return loader;
}

void
dovekie_loader_free (DovekieLoader *loader)
{
  if (loader == NULL)
    return;
  /* Reverse order: a later module may rely on an earlier one's service. */
  for (guint i = loader->modules->len; i > 0; i--)
    loaded_module_free (g_ptr_array_index (loader->modules, i - 1));
  g_ptr_array_unref (loader->modules);
  g_hash_table_unref (loader->services);
  g_hash_table_unref (loader->settings);
  g_free (loader->module_dir);
  g_free (loader);
}

guint
dovekie_loader_count (DovekieLoader *loader)
{
  return loader->modules->len;
}

const gchar *
dovekie_loader_module_name (DovekieLoader *loader, guint index)
{
  g_return_val_if_fail (index < loader->modules->len, NULL);
  return ((LoadedModule *) g_ptr_array_index (loader->modules, index))->module->name;
}

const DovekieModule *
dovekie_loader_module (DovekieLoader *loader, guint index)
{
  g_return_val_if_fail (index < loader->modules->len, NULL);
  return ((LoadedModule *) g_ptr_array_index (loader->modules, index))->module;
}

gconstpointer
dovekie_loader_service (DovekieLoader *loader, const gchar *service, DovekieContext **ctx_r)
{
  LoadedModule *lm = g_hash_table_lookup (loader->services, service);

  *ctx_r = NULL;
  if (lm == NULL)
    return NULL;
  for (guint i = 0; lm->module->services[i].name != NULL; i++)
    {
      if (g_str_equal (lm->module->services[i].name, service))
        {
          *ctx_r = &lm->pub;
          return lm->module->services[i].vtable;
        }
    }
  return NULL;
}

DovekieContext *
dovekie_loader_context (DovekieLoader *loader, const gchar *name)
{
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      if (g_str_equal (lm->module->name, name))
        return &lm->pub;
    }
  return NULL;
}

/* ---- dispatch ---- */

typedef gboolean (*VerdictHook) (const DovekieModule *module, LoadedModule *lm, gint origin,
                                 const DovekieMessageInfo *info, DovekieMessage *msg,
                                 DovekieVerdict *verdict, GError **error);

static gboolean
call_save (const DovekieModule *module, LoadedModule *lm, gint origin,
           const DovekieMessageInfo *info, DovekieMessage *msg,
           DovekieVerdict *verdict, GError **error)
{
  if (module->save == NULL)
    return TRUE;
  return module->save (&lm->pub, (DovekieSaveOrigin) origin, info, msg, verdict, error);
}

static gboolean
call_read (const DovekieModule *module, LoadedModule *lm, gint origin,
           const DovekieMessageInfo *info, DovekieMessage *msg,
           DovekieVerdict *verdict, GError **error)
{
  if (module->read == NULL)
    return TRUE;
  return module->read (&lm->pub, (DovekieReadOrigin) origin, info, msg, verdict, error);
}

/* An IMAP keyword is an atom: printable ASCII without atom-specials. */
static gboolean
keyword_is_valid (const gchar *keyword)
{
  if (keyword[0] == '\0' || strlen (keyword) > 200)
    return FALSE;
  for (const gchar *p = keyword; *p != '\0'; p++)
    {
      if (*p <= 0x20 || *p >= 0x7f || strchr ("(){]%*\"\\", *p) != NULL)
        return FALSE;
    }
  return TRUE;
}

/* Checks the parts of a verdict the host acts on; a module that broke the
 * contract gets a TEMPFAIL (nothing is lost) and a logged error. */
static gboolean
verdict_is_valid (DovekieLoader *loader, const LoadedModule *lm, DovekieVerdict *verdict)
{
  const gchar *problem = NULL;

  if ((gint) verdict->kind < (gint) DOVEKIE_VERDICT_ACCEPT ||
      (gint) verdict->kind > (gint) DOVEKIE_VERDICT_DISCARD)
    problem = "unknown verdict kind";
  else if (verdict->kind == DOVEKIE_VERDICT_DIVERT &&
           (verdict->mailbox == NULL || verdict->mailbox[0] == '\0'))
    problem = "DIVERT without a mailbox";
  else if (verdict->keyword != NULL && !keyword_is_valid (verdict->keyword))
    problem = "invalid keyword";
  if (problem == NULL)
    return TRUE;
  loader_log (loader, DOVEKIE_LOG_ERROR, lm->module->name, problem);
  dovekie_verdict_clear (verdict);
  dovekie_verdict_set (verdict, DOVEKIE_VERDICT_TEMPFAIL,
                       "Temporary failure checking the message, try again later");
  return FALSE;
}

static void
dispatch_verdict (DovekieLoader *loader, VerdictHook hook, gint origin,
                  const DovekieMessageInfo *info, const DovekieMessageSource *source,
                  gpointer source_data, DovekieVerdict *verdict)
{
  DovekieMessage msg = { source, source_data };

  verdict->kind = DOVEKIE_VERDICT_ACCEPT;
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      g_autoptr (GError) error = NULL;

      /* Each module reads from the start, whatever the previous one did. */
      if (i > 0 && !source->rewind (source_data, &error))
        {
          loader_log (loader, DOVEKIE_LOG_ERROR, NULL, error->message);
          dovekie_verdict_clear (verdict);
          dovekie_verdict_set (verdict, DOVEKIE_VERDICT_TEMPFAIL,
                               "Temporary failure reading the message, try again later");
          return;
        }
      if (!hook (lm->module, lm, origin, info, &msg, verdict, &error))
        {
          loader_log (loader, DOVEKIE_LOG_ERROR, lm->module->name,
                      error != NULL ? error->message : "hook failed without a reason");
          dovekie_verdict_clear (verdict);
          dovekie_verdict_set (verdict, DOVEKIE_VERDICT_TEMPFAIL,
                               "Temporary failure checking the message, try again later");
          return;
        }
      if (!verdict_is_valid (loader, lm, verdict))
        return;
      if (verdict->kind != DOVEKIE_VERDICT_ACCEPT)
        {
          if (verdict->reason == NULL)
            verdict->reason = g_strdup ("Message refused");
          return;
        }
    }
}

void
dovekie_loader_dispatch_save (DovekieLoader *loader, DovekieSaveOrigin origin,
                              const DovekieMessageInfo *info,
                              const DovekieMessageSource *source, gpointer source_data,
                              DovekieVerdict *verdict)
{
  dispatch_verdict (loader, call_save, (gint) origin, info, source, source_data, verdict);
}

void
dovekie_loader_dispatch_read (DovekieLoader *loader, DovekieReadOrigin origin,
                              const DovekieMessageInfo *info,
                              const DovekieMessageSource *source, gpointer source_data,
                              DovekieVerdict *verdict)
{
  dispatch_verdict (loader, call_read, (gint) origin, info, source, source_data, verdict);
}

DovekieExpungeAction
dovekie_loader_dispatch_expunge (DovekieLoader *loader, const DovekieMessageInfo *info,
                                 gboolean pop3)
{
  DovekieExpungeAction action = DOVEKIE_EXPUNGE_ALLOW;

  /* Every module hears about the expunge, even after one kept it, so that
   * each can keep its own state consistent. */
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      if (lm->module->expunge != NULL &&
          lm->module->expunge (&lm->pub, info, pop3) == DOVEKIE_EXPUNGE_KEEP)
        action = DOVEKIE_EXPUNGE_KEEP;
    }
  return action;
}

void
dovekie_loader_dispatch_pop3_start (DovekieLoader *loader, const DovekiePop3Info *info)
{
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      if (lm->module->pop3_start != NULL)
        lm->module->pop3_start (&lm->pub, info);
    }
}

void
dovekie_loader_dispatch_pop3_end (DovekieLoader *loader, const DovekiePop3Info *info)
{
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      if (lm->module->pop3_end != NULL)
        lm->module->pop3_end (&lm->pub, info);
    }
}

static gboolean
any_module_has (DovekieLoader *loader, gsize offset)
{
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      if (G_STRUCT_MEMBER (gpointer, lm->module, offset) != NULL)
        return TRUE;
    }
  return FALSE;
}

gboolean
dovekie_loader_wants_save (DovekieLoader *loader)
{
  return any_module_has (loader, G_STRUCT_OFFSET (DovekieModule, save));
}

gboolean
dovekie_loader_wants_read (DovekieLoader *loader)
{
  return any_module_has (loader, G_STRUCT_OFFSET (DovekieModule, read));
}

gboolean
dovekie_loader_wants_expunge (DovekieLoader *loader)
{
  return any_module_has (loader, G_STRUCT_OFFSET (DovekieModule, expunge));
}
