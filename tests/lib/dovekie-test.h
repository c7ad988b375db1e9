/* Helpers shared by the Check unit tests: a recording host, an in-memory
 * message source and a private module directory. Header-only, so each test
 * binary stays one file. */
#ifndef DOVEKIE_TEST_H
#define DOVEKIE_TEST_H

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "dovekie/loader.h"

typedef struct {
  GPtrArray *lines; /* "E example: text" */
  gint64 now;
  GHashTable *kv;   /* "module/key" -> value; NULL: kv calls fail */
} TestHost;

static inline gboolean
test_host_kv_get (gpointer data, const gchar *module, const gchar *key, gchar **value_r,
                  GError **error)
{
  TestHost *host = data;
  g_autofree gchar *full = g_strconcat (module, "/", key, NULL);
  if (host->kv == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "test kv is down");
      return FALSE;
    }
  *value_r = g_strdup (g_hash_table_lookup (host->kv, full));
  return TRUE;
}

static inline gboolean
test_host_kv_set (gpointer data, const gchar *module, const gchar *key, const gchar *value,
                  GError **error)
{
  TestHost *host = data;
  if (host->kv == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "test kv is down");
      return FALSE;
    }
  if (value == NULL)
    {
      g_autofree gchar *full = g_strconcat (module, "/", key, NULL);
      g_hash_table_remove (host->kv, full);
    }
  else
    g_hash_table_insert (host->kv, g_strconcat (module, "/", key, NULL), g_strdup (value));
  return TRUE;
}

static inline gboolean
test_host_kv_foreach (gpointer data, const gchar *module, const gchar *prefix,
                      DovekieKvFunc func, gpointer func_data, GError **error)
{
  TestHost *host = data;
  g_autofree gchar *full = g_strconcat (module, "/", prefix, NULL);
  GHashTableIter iter;
  gpointer key, value;
  if (host->kv == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "test kv is down");
      return FALSE;
    }
  g_hash_table_iter_init (&iter, host->kv);
  while (g_hash_table_iter_next (&iter, &key, &value))
    if (g_str_has_prefix (key, full) && !func ((const gchar *) key + strlen (module) + 1, value, func_data))
      break;
  return TRUE;
}

static inline void
test_host_log (gpointer data, DovekieLogLevel level, const gchar *module, const gchar *message)
{
  static const char letters[] = "DIWE";
  TestHost *host = data;
  g_ptr_array_add (host->lines, g_strdup_printf ("%c %s: %s", letters[level],
                                                 module != NULL ? module : "loader", message));
}

static inline gint64
test_host_now (gpointer data)
{
  return ((TestHost *) data)->now;
}

/* Events are recorded as log lines "V module: name k=v ...". */
static inline void
test_host_emit (gpointer data, const gchar *module, const gchar *name, const gchar *const *fields)
{
  TestHost *host = data;
  GString *line = g_string_new (NULL);
  g_string_printf (line, "V %s: %s", module, name);
  for (guint i = 0; fields != NULL && fields[i] != NULL; i += 2)
    g_string_append_printf (line, " %s=%s", fields[i], fields[i + 1]);
  g_ptr_array_add (host->lines, g_string_free (line, FALSE));
}

/* Number of recorded lines containing `needle`. */
static inline guint
test_host_count (TestHost *host, const gchar *needle)
{
  guint count = 0;
  for (guint i = 0; i < host->lines->len; i++)
    if (strstr (g_ptr_array_index (host->lines, i), needle) != NULL)
      count++;
  return count;
}

/* Index of the first line containing `needle`, or -1. */
static inline gint
test_host_find (TestHost *host, const gchar *needle)
{
  for (guint i = 0; i < host->lines->len; i++)
    if (strstr (g_ptr_array_index (host->lines, i), needle) != NULL)
      return (gint) i;
  return -1;
}

static inline gchar *
test_host_dump (TestHost *host)
{
  GString *out = g_string_new (NULL);
  for (guint i = 0; i < host->lines->len; i++)
    g_string_append_printf (out, "%s\n", (const gchar *) g_ptr_array_index (host->lines, i));
  return g_string_free (out, FALSE);
}

/* A module's settings as the loader would give them in its unit tests:
 * `overrides` (key -> value, may be NULL) over the declared defaults,
 * validated with the loader's own parser. An undeclared key fails the test. */
static inline const DovekieSettingDef *
test_setting_def (const DovekieModule *module, const gchar *key)
{
  for (const DovekieSettingDef *d = module->settings; d != NULL && d->name != NULL; d++)
    if (g_str_equal (d->name, key))
      return d;
  ck_abort_msg ("%s: undeclared setting %s", module->name, key);
  return NULL;
}

static inline const gchar *
test_setting_string (const DovekieModule *module, GHashTable *overrides, const gchar *key)
{
  const DovekieSettingDef *def = test_setting_def (module, key);
  if (overrides != NULL && g_hash_table_contains (overrides, key))
    return g_hash_table_lookup (overrides, key);
  return def->default_value;
}

static inline guint64
test_setting_uint (const DovekieModule *module, GHashTable *overrides, const gchar *key)
{
  g_autoptr (GError) error = NULL;
  guint64 number = 0;
  ck_assert_msg (dovekie_setting_validate (test_setting_def (module, key),
                                           test_setting_string (module, overrides, key),
                                           &number, &error),
                 "%s", error != NULL ? error->message : "");
  return number;
}

/* Defines the host API's settings, log and clock callbacks of a module's
 * test (fake_get_string, fake_get_uint, fake_get_bool, fake_log, fake_now)
 * over the TestHost `host` and the GHashTable * `overrides` of settings.
 * A macro: the callbacks take no data pointer, so each test binary gets
 * its own, bound to its own statics. */
#define TEST_FAKE_HOST_BASICS(module, module_name, host, overrides)                      \
  static const gchar *fake_get_string (DovekieContext *ctx, const gchar *key)            \
  {                                                                                      \
    (void) ctx;                                                                          \
    return test_setting_string (&(module), (overrides), key);                            \
  }                                                                                      \
  static guint64 fake_get_uint (DovekieContext *ctx, const gchar *key)                   \
  {                                                                                      \
    (void) ctx;                                                                          \
    return test_setting_uint (&(module), (overrides), key);                              \
  }                                                                                      \
  static gboolean fake_get_bool (DovekieContext *ctx, const gchar *key)                  \
  {                                                                                      \
    return fake_get_uint (ctx, key) != 0;                                                \
  }                                                                                      \
  static void fake_log (DovekieContext *ctx, DovekieLogLevel level, const gchar *message) \
  {                                                                                      \
    (void) ctx;                                                                          \
    test_host_log (&(host), level, (module_name), message);                              \
  }                                                                                      \
  static gint64 fake_now (DovekieContext *ctx)                                           \
  {                                                                                      \
    (void) ctx;                                                                          \
    return (host).now;                                                                   \
  }

/* An in-memory message. */
typedef struct {
  const guint8 *data;
  gsize len, pos;
  gsize max_chunk; /* 0: no limit; else short reads, to test boundaries */
  gboolean fail;   /* reads fail */
} TestSource;

static inline gssize
test_source_read (gpointer data, guint8 *buf, gsize len, GError **error)
{
  TestSource *src = data;
  if (src->fail)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_IO, "test read failure");
      return -1;
    }
  gsize n = MIN (len, src->len - src->pos);
  if (src->max_chunk > 0)
    n = MIN (n, src->max_chunk);
  memcpy (buf, src->data + src->pos, n);
  src->pos += n;
  return (gssize) n;
}

static inline gboolean
test_source_rewind (gpointer data, GError **error)
{
  (void) error;
  ((TestSource *) data)->pos = 0;
  return TRUE;
}

static const DovekieMessageSource test_source_vtable = {
  test_source_read, test_source_rewind, NULL,
};

/* Copies FIXTURE_DIR/<name>.so into dir with mode 0644. */
static inline void
test_install_module (const gchar *from_dir, const gchar *dir, const gchar *name)
{
  g_autofree gchar *from = g_strdup_printf ("%s/%s.so", from_dir, name);
  g_autofree gchar *to = g_strdup_printf ("%s/%s.so", dir, name);
  g_autofree gchar *contents = NULL;
  gsize len = 0;
  g_autoptr (GError) error = NULL;

  if (!g_file_get_contents (from, &contents, &len, &error) ||
      !g_file_set_contents_full (to, contents, (gssize) len, G_FILE_SET_CONTENTS_NONE, 0644, &error))
    ck_abort_msg ("installing %s: %s", name, error->message);
  ck_assert_int_eq (g_chmod (to, 0644), 0);
}

static inline gchar *
test_make_dir (void)
{
  g_autoptr (GError) error = NULL;
  gchar *dir = g_dir_make_tmp ("dovekie-test-XXXXXX", &error);
  ck_assert_msg (dir != NULL, "mkdtemp: %s", error != NULL ? error->message : "?");
  ck_assert_int_eq (g_chmod (dir, 0755), 0);
  return dir;
}

static inline void
test_remove_dir (const gchar *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const gchar *name;
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree gchar *path = g_build_filename (dir, name, NULL);
      g_remove (path);
    }
  g_rmdir (dir);
}

#endif
