/* libdovekie: module loading, ABI and permission checks, registry, dispatch. */
#include "dovekie-config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmodule.h>

#include "dovekie/loader.h"
#include "dovekie-loader-private.h"

G_DEFINE_QUARK (dovekie-loader-error-quark, dovekie_loader_error)

/* The modules dovekie ships (telling "unknown module" from "module not
 * installed"), what their settings start with, and what each guards when
 * it cannot start. Taken from here, not from the module file, because a
 * module that failed may never have been read. The search module guards
 * nothing: without it Dovecot's own search answers, which is exact. */
typedef struct {
  const gchar *name;
  const gchar *prefix;
  DovekieGuard guards;
} KnownModule;

static const KnownModule known_modules[] = {
  { "example", "dovekie_example_", DOVEKIE_GUARD_SAVE },
  { "antivirus", "dovekie_av_", DOVEKIE_GUARD_SAVE | DOVEKIE_GUARD_READ },
  { "search", "dovekie_search_", DOVEKIE_GUARD_NONE },
  { "retention", "dovekie_retention_", DOVEKIE_GUARD_POP3 },
};

uid_t dovekie_loader_trusted_uid = 0;
void (*dovekie_loader_test_after_open) (const gchar *path) = NULL;

static const KnownModule *
known_module (const gchar *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (known_modules); i++)
    if (g_str_equal (known_modules[i].name, name))
      return &known_modules[i];
  return NULL;
}

/* The prefix of a module's settings: dovekie_<name>_ unless it is a shipped
 * module with a shorter one. */
static gchar *
module_prefix (const gchar *name)
{
  const KnownModule *known = known_module (name);
  return known != NULL ? g_strdup (known->prefix) : g_strdup_printf ("dovekie_%s_", name);
}

gboolean
dovekie_setting_is_global_only (const gchar *key)
{
  return g_str_equal (key, DOVEKIE_SETTING_MODULE_DIR) ||
         g_str_equal (key, DOVEKIE_SETTING_CLOCK_OFFSET);
}

#define MODULE_NAME_MAX 64

const DovekieSettingDef dovekie_loader_settings[] = {
  { DOVEKIE_SETTING_MODULES, DOVEKIE_SETTING_STRING, "", 0, 1024, NULL,
    "space-separated module names, loaded and called in this order; none loads nothing" },
  { DOVEKIE_SETTING_MODULE_DIR, DOVEKIE_SETTING_STRING, NULL, 0, 4096, NULL,
    "directory holding the modules' .so files (it, its parents and the files owned by root, "
    "not group- or world-writable); global only; unset: the packaged module directory" },
  { DOVEKIE_SETTING_CLOCK_OFFSET, DOVEKIE_SETTING_UINT, "0", 0, 100 * 366 * 86400ULL, NULL,
    "seconds added to the clock the modules see; for tests only; global only" },
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
 * whoever can write the file, or rename entries in any directory above it,
 * owns every mailbox. Each of those must be owned by root and not writable
 * by group or others; a sticky directory (like /tmp) is fine, since only
 * an entry's owner may rename it there. */
static gboolean
check_owner_mode (const struct stat *st, gboolean is_dir, const gchar *what, const gchar *path,
                  GError **error)
{
  if (st->st_uid != 0 && st->st_uid != dovekie_loader_trusted_uid)
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_PERMISSION,
                   "refusing %s %s: owned by uid %u, not by root", what, path,
                   (guint) st->st_uid);
      return FALSE;
    }
  if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0 && !(is_dir && (st->st_mode & S_ISVTX) != 0))
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_PERMISSION,
                   "refusing %s %s: group- or world-writable (mode %04o)",
                   what, path, (guint) (st->st_mode & 07777));
      return FALSE;
    }
  return TRUE;
}

/* Checks the real path of `dir` and every directory above it. */
static gboolean
check_dir_chain (const gchar *dir, GError **error)
{
  char real[PATH_MAX];

  if (realpath (dir, real) == NULL)
    {
      int saved = errno;
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_OPEN,
                   "cannot resolve module directory %s: %s", dir, g_strerror (saved));
      return FALSE;
    }
  g_autofree gchar *path = g_strdup (real);
  for (;;)
    {
      struct stat st;
      if (stat (path, &st) < 0)
        {
          int saved = errno;
          g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_OPEN,
                       "cannot stat module directory %s: %s", path, g_strerror (saved));
          return FALSE;
        }
      if (!check_owner_mode (&st, TRUE, g_str_equal (path, real) ? "module directory"
                             : "a parent of the module directory", path, error))
        return FALSE;
      if (g_str_equal (path, "/"))
        return TRUE;
      gchar *parent = g_path_get_dirname (path);
      g_free (path);
      path = parent;
    }
}

/* The module files this process has opened, by device and inode, each
 * with its descriptor kept open for the life of the process. A module is
 * loaded through /proc/self/fd/N, the descriptor that was checked, so a
 * swap of the path after the check changes nothing. The descriptors stay
 * open because the dynamic linker knows a loaded object by that name: a
 * reused number could otherwise name a module still mapped. */
typedef struct {
  dev_t dev;
  ino_t ino;
  int fd;
} OpenedFile;

static GArray *opened_files; /* OpenedFile; never freed */
G_LOCK_DEFINE_STATIC (opened_files);

static int
remember_fd (int fd, const struct stat *st)
{
  int kept = fd;

  G_LOCK (opened_files);
  if (opened_files == NULL)
    opened_files = g_array_new (FALSE, FALSE, sizeof (OpenedFile));
  for (guint i = 0; i < opened_files->len; i++)
    {
      const OpenedFile *of = &g_array_index (opened_files, OpenedFile, i);
      if (of->dev == st->st_dev && of->ino == st->st_ino)
        kept = of->fd;
    }
  if (kept == fd)
    {
      OpenedFile of = { st->st_dev, st->st_ino, fd };
      g_array_append_val (opened_files, of);
    }
  G_UNLOCK (opened_files);
  if (kept != fd)
    close (fd);
  return kept;
}

/* Opens `path` without following a symlink and checks the descriptor.
 * Returns the descriptor to load from (kept open by the loader), or -1. */
static int
open_module_file (const gchar *path, GError **error)
{
  struct stat st;
  int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);

  if (fd < 0)
    {
      int saved = errno;
      if (saved == ELOOP)
        g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_PERMISSION,
                     "refusing module file %s: it is a symbolic link", path);
      else
        g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_OPEN,
                     "cannot open module file %s: %s", path, g_strerror (saved));
      return -1;
    }
  if (fstat (fd, &st) < 0)
    {
      int saved = errno;
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_OPEN,
                   "cannot stat module file %s: %s", path, g_strerror (saved));
      close (fd);
      return -1;
    }
  if (!S_ISREG (st.st_mode))
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_PERMISSION,
                   "refusing module file %s: not a regular file", path);
      close (fd);
      return -1;
    }
  if (!check_owner_mode (&st, FALSE, "module file", path, error))
    {
      close (fd);
      return -1;
    }
  return remember_fd (fd, &st);
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

static gboolean
declared_by (const DovekieSettingDef *defs, const gchar *key)
{
  for (guint i = 0; defs != NULL && defs[i].name != NULL; i++)
    if (g_str_equal (defs[i].name, key))
      return TRUE;
  return FALSE;
}

/* Where a value came from, for error texts: admins fix a userdb field in
 * another place than a dovecot.conf line. */
static const gchar *
origin_note (DovekieLoader *loader, const gchar *key)
{
  return g_hash_table_contains (loader->user_keys, key) ? " (from userdb)" : "";
}

static const gchar *
origin_note_prefix (DovekieLoader *loader, const gchar *key)
{
  return g_hash_table_contains (loader->user_keys, key) ? "from userdb: " : "";
}

/* Validates the module's declared settings against the user's view and
 * stores the effective values in lm. */
static gboolean
bind_settings (DovekieLoader *loader, LoadedModule *lm, GError **error)
{
  const DovekieSettingDef *defs = lm->module->settings;
  g_autofree gchar *prefix = module_prefix (lm->module->name);
  GHashTableIter iter;
  gpointer key;

  /* A misspelt option of this module means the admin's intent is not
   * known: the module does not start (and so guards what it guards). */
  g_hash_table_iter_init (&iter, loader->settings);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      if (g_str_has_prefix (key, prefix) && !declared_by (defs, key))
        {
          g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
                       "unknown setting %s = %s%s: module %s declares no such setting "
                       "(misspelt?)", (const gchar *) key,
                       (const gchar *) g_hash_table_lookup (loader->settings, key),
                       origin_note (loader, key), lm->module->name);
          return FALSE;
        }
    }

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
        {
          g_prefix_error (error, "%s", origin_note_prefix (loader, def->name));
          return FALSE;
        }
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
  g_autofree gchar *fd_path = NULL;
  gpointer symbol = NULL;
  int fd;

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
      if (known_module (name) != NULL)
        g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_MISSING_FILE,
                     "module '%s' is part of dovekie but %s is not installed", name, path);
      else
        g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_UNKNOWN_MODULE,
                     "unknown module '%s': not a dovekie module and no %s exists", name, path);
      return FALSE;
    }
  if (!check_dir_chain (loader->module_dir, error))
    return FALSE;
  fd = open_module_file (path, error);
  if (fd < 0)
    return FALSE;
  if (dovekie_loader_test_after_open != NULL)
    dovekie_loader_test_after_open (path);

  lm = g_new0 (LoadedModule, 1);
  lm->pub.api = &dovekie_host_api;
  lm->loader = loader;
  lm->values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  lm->numbers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  /* Local binding: two modules may use the same helper names. */
  fd_path = g_strdup_printf ("/proc/self/fd/%d", fd);
  lm->gmodule = g_module_open (fd_path, G_MODULE_BIND_LOCAL);
  if (lm->gmodule == NULL)
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_OPEN,
                   "cannot open module '%s' (%s): %s", name, path, g_module_error ());
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
    {
      g_prefix_error (error, "module '%s' cannot start: ", name);
      return FALSE;
    }
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


static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(const gchar *const *) a, *(const gchar *const *) b);
}

/* Whether `key` could belong to a module: a shipped one (whether the user
 * loads it or not: a global block sets options for every user, and a user
 * may opt out of a module) or one listed for this user. */
static gboolean
has_module_prefix (DovekieLoader *loader, const gchar *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS (known_modules); i++)
    if (g_str_has_prefix (key, known_modules[i].prefix))
      return TRUE;
  for (guint i = 0; i < loader->failed->len; i++)
    {
      const FailedModule *fm = g_ptr_array_index (loader->failed, i);
      g_autofree gchar *prefix = module_prefix (fm->name);
      if (g_str_has_prefix (key, prefix))
        return TRUE;
    }
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      g_autofree gchar *prefix = module_prefix (lm->module->name);
      if (g_str_has_prefix (key, prefix))
        return TRUE;
    }
  return FALSE;
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
      /* A loaded module's own misspellings stopped it in bind_settings. */
      if (!declared_by (dovekie_loader_settings, key) && !has_module_prefix (loader, key))
        g_ptr_array_add (unknown, key);
    }
  if (unknown->len == 0)
    return TRUE;
  /* Sorted so the message is stable across runs. */
  g_ptr_array_sort (unknown, compare_strings);
  g_autoptr (GString) list = g_string_new (NULL);
  for (guint i = 0; i < unknown->len; i++)
    {
      const gchar *name = g_ptr_array_index (unknown, i);
      g_string_append_printf (list, "%s%s = %s%s", i > 0 ? ", " : "", name,
                              (const gchar *) g_hash_table_lookup (loader->settings, name),
                              origin_note (loader, name));
    }
  g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
               "unknown setting(s) %s: no dovekie module declares them (misspelt?)", list->str);
  return FALSE;
}

/* Texts of failures that guard nothing, already logged by this process. */
static GHashTable *logged_unguarded;
G_LOCK_DEFINE_STATIC (logged_unguarded);

/* Whether this process has not logged `message` yet (and now has). */
static gboolean
first_in_process (const gchar *message)
{
  gboolean first;

  G_LOCK (logged_unguarded);
  if (logged_unguarded == NULL)
    logged_unguarded = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  first = g_hash_table_add (logged_unguarded, g_strdup (message));
  G_UNLOCK (logged_unguarded);
  return first;
}

/* Keeps `message` for status and check, once, and logs it as an error.
 * A failure that guards nothing (a search module that fell back to
 * Dovecot's own search) is logged once per process instead of once per
 * user: processes such as the indexer serve many users, and nothing was
 * refused. */
static void
add_problem_full (DovekieLoader *loader, const gchar *message, gboolean once_per_process)
{
  for (guint i = 0; i < loader->problems->len; i++)
    if (g_str_equal (g_ptr_array_index (loader->problems, i), message))
      return;
  g_ptr_array_add (loader->problems, g_strdup (message));
  if (!once_per_process || first_in_process (message))
    dovekie_loader_log (loader, DOVEKIE_LOG_ERROR, NULL, message);
}

static void
add_problem (DovekieLoader *loader, const gchar *message)
{
  add_problem_full (loader, message, FALSE);
}

static void
failed_module_free (FailedModule *fm)
{
  g_free (fm->name);
  g_free (fm->reason);
  g_free (fm);
}

/* Records that listed module `name` is not running, and why. */
static const FailedModule *
add_failed (DovekieLoader *loader, const gchar *name, const gchar *reason)
{
  const KnownModule *known = known_module (name);
  FailedModule *fm = g_new0 (FailedModule, 1);

  fm->name = g_strdup (name);
  fm->reason = g_strdup (reason);
  /* A module we do not know may guard anything: assume it guards all. */
  fm->guards = known != NULL ? known->guards
    : (DOVEKIE_GUARD_SAVE | DOVEKIE_GUARD_READ | DOVEKIE_GUARD_POP3);
  g_ptr_array_add (loader->failed, fm);
  return fm;
}

DovekieLoader *
dovekie_loader_new (GHashTable *settings, const gchar *default_module_dir, const DovekieHost *host)
{
  return dovekie_loader_new_full (settings, NULL, default_module_dir, host);
}

DovekieLoader *
dovekie_loader_new_full (GHashTable *settings, const gchar *const *user_keys,
                         const gchar *default_module_dir, const DovekieHost *host)
{
  DovekieLoader *loader;
  GHashTableIter iter;
  gpointer key, value;
  guint64 number = 0;
  const gchar *text;
  g_auto (GStrv) names = NULL;
  g_autofree gchar *loader_problem = NULL;

  g_return_val_if_fail (host != NULL && host->log != NULL && host->now != NULL, NULL);

  loader = g_new0 (DovekieLoader, 1);
  loader->host = *host;
  loader->settings = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  loader->user_keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  loader->modules = g_ptr_array_new_with_free_func (NULL);
  loader->failed = g_ptr_array_new_with_free_func ((GDestroyNotify) failed_module_free);
  loader->problems = g_ptr_array_new_with_free_func (g_free);
  loader->services = g_hash_table_new (g_str_hash, g_str_equal);

  if (settings != NULL)
    {
      g_hash_table_iter_init (&iter, settings);
      while (g_hash_table_iter_next (&iter, &key, &value))
        if (g_str_has_prefix (key, "dovekie_"))
          g_hash_table_insert (loader->settings, g_strdup (key), g_strdup (value));
    }
  for (guint i = 0; user_keys != NULL && user_keys[i] != NULL; i++)
    {
      if (g_str_has_prefix (user_keys[i], "dovekie_"))
        g_hash_table_add (loader->user_keys, g_strdup (user_keys[i]));
      /* Whoever controls a userdb field (an LDAP attribute, say) must not
       * choose the code the mail processes load, nor the modules' clock. */
      if (loader_problem == NULL && dovekie_setting_is_global_only (user_keys[i]))
        loader_problem = g_strdup_printf (
          "%s = %s (from userdb): may be set only in the global configuration, "
          "never from userdb", user_keys[i],
          (const gchar *) g_hash_table_lookup (loader->settings, user_keys[i]));
    }

  for (guint i = 0; loader_problem == NULL && dovekie_loader_settings[i].name != NULL; i++)
    {
      g_autoptr (GError) error = NULL;
      const DovekieSettingDef *def = &dovekie_loader_settings[i];
      text = g_hash_table_lookup (loader->settings, def->name);
      if (!dovekie_setting_validate (def, text != NULL ? text : def->default_value,
                                     &number, &error))
        loader_problem = g_strdup_printf ("%s%s", origin_note_prefix (loader, def->name),
                                          error->message);
      else if (g_str_equal (def->name, DOVEKIE_SETTING_CLOCK_OFFSET))
        loader->clock_offset = (gint64) number;
    }

  text = g_hash_table_lookup (loader->settings, DOVEKIE_SETTING_MODULE_DIR);
  loader->module_dir = g_strdup (text != NULL && *text != '\0' ? text : default_module_dir);

  text = g_hash_table_lookup (loader->settings, DOVEKIE_SETTING_MODULES);
  names = g_strsplit_set (text != NULL ? text : "", " \t,", -1);
  if (loader_problem != NULL)
    add_problem (loader, loader_problem);
  for (guint i = 0; names[i] != NULL; i++)
    {
      g_autoptr (GError) error = NULL;
      /* "none" spells "no module" where an empty value cannot be written:
       * Dovecot reads an empty userdb field as "yes". */
      if (names[i][0] == '\0' || g_str_equal (names[i], "none"))
        continue;
      /* A bad loader setting means we cannot know what the admin wanted:
       * every listed module is failed, and guards what it guards. */
      if (loader_problem != NULL)
        {
          add_failed (loader, names[i], loader_problem);
          continue;
        }
      if (!dovekie_loader_load (loader, names[i], &error))
        {
          const FailedModule *fm = add_failed (loader, names[i], error->message);
          add_problem_full (loader, error->message, fm->guards == DOVEKIE_GUARD_NONE);
        }
    }

  {
    g_autoptr (GError) error = NULL;
    if (!dovekie_loader_check_unknown (loader, &error))
      add_problem (loader, error->message);
  }
  return loader;
}

guint
dovekie_loader_failed_count (DovekieLoader *loader)
{
  return loader->failed->len;
}

gboolean
dovekie_loader_failed_info (DovekieLoader *loader, guint index, const gchar **name_r,
                            const gchar **reason_r, DovekieGuard *guards_r)
{
  if (index >= loader->failed->len)
    return FALSE;
  const FailedModule *fm = g_ptr_array_index (loader->failed, index);
  if (name_r != NULL)
    *name_r = fm->name;
  if (reason_r != NULL)
    *reason_r = fm->reason;
  if (guards_r != NULL)
    *guards_r = fm->guards;
  return TRUE;
}

gboolean
dovekie_loader_guarded (DovekieLoader *loader, DovekieGuard guard, const gchar **name_r,
                        const gchar **reason_r)
{
  for (guint i = 0; i < loader->failed->len; i++)
    {
      const FailedModule *fm = g_ptr_array_index (loader->failed, i);
      if ((fm->guards & guard) != 0)
        {
          if (name_r != NULL)
            *name_r = fm->name;
          if (reason_r != NULL)
            *reason_r = fm->reason;
          return TRUE;
        }
    }
  return FALSE;
}

guint
dovekie_loader_problem_count (DovekieLoader *loader)
{
  return loader->problems->len;
}

const gchar *
dovekie_loader_problem (DovekieLoader *loader, guint index)
{
  g_return_val_if_fail (index < loader->problems->len, NULL);
  return g_ptr_array_index (loader->problems, index);
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
  g_hash_table_unref (loader->user_keys);
  g_ptr_array_unref (loader->failed);
  g_ptr_array_unref (loader->problems);
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

