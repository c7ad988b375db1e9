/* libdovekie: module loading, ABI and permission checks, registry, dispatch. */
#include "dovekie-config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmodule.h>

#include "dovekie/loader.h"
#include "dovekie-loader-private.h"

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

void
dovekie_loader_log (DovekieLoader *loader, DovekieLogLevel level, const gchar *module, const gchar *message)
{
  loader->host.log (loader->host.data, level, module, message);
}

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
  lm->pub.api = &dovekie_host_api;
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
          dovekie_loader_log (loader, DOVEKIE_LOG_ERROR, NULL, error->message);
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
        dovekie_loader_log (loader, DOVEKIE_LOG_ERROR, NULL, error->message);
    }

  {
    g_autoptr (GError) error = NULL;
    if (!dovekie_loader_check_unknown (loader, &error))
      dovekie_loader_log (loader, DOVEKIE_LOG_ERROR, NULL, error->message);
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

