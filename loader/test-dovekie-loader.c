/* Unit tests for libdovekie's loader: loading, refusals, order, dispatch. */
#include "dovekie-config.h"

#include <stdlib.h>
#include <unistd.h>

#include "dovekie-test.h"
#include "dovekie-loader-private.h"
#include "fixtures/fixture.h"

static gchar *module_dir;
static TestHost host;

static void
setup (void)
{
  /* Root in CI, so the real rule (root only) is what is tested there. */
  dovekie_loader_trusted_uid = geteuid ();
  dovekie_loader_test_after_open = NULL;
  module_dir = test_make_dir ();
  host.lines = g_ptr_array_new_with_free_func (g_free);
  host.now = 1700000000;
  host.kv = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  static const gchar *const names[] = {
    "good", "second", "badabi", "nosymbol", "initfail", "wrongname", "dupservice",
  };
  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    test_install_module (FIXTURE_DIR, module_dir, names[i]);
}

static void
teardown (void)
{
  test_remove_dir (module_dir);
  g_clear_pointer (&module_dir, g_free);
  g_clear_pointer (&host.lines, g_ptr_array_unref);
  g_clear_pointer (&host.kv, g_hash_table_unref);
}

/* A loader with the given settings (key, value, ..., NULL) and our dir. */
static DovekieLoader *
new_loader (const gchar *first_key, ...)
{
  g_autoptr (GHashTable) view = g_hash_table_new (g_str_hash, g_str_equal);
  DovekieHost h = { test_host_log, test_host_now, &host,
                    test_host_kv_get, test_host_kv_set, test_host_kv_foreach,
                    test_host_emit, NULL };
  va_list args;

  va_start (args, first_key);
  for (const gchar *key = first_key; key != NULL; key = va_arg (args, const gchar *))
    g_hash_table_insert (view, (gpointer) key, va_arg (args, gpointer));
  va_end (args);
  return dovekie_loader_new (view, module_dir, &h);
}

static void
assert_load_fails (const gchar *name, gint code, const gchar *needle)
{
  g_autoptr (DovekieLoader) loader = new_loader (NULL);
  g_autoptr (GError) error = NULL;

  ck_assert (!dovekie_loader_load (loader, name, &error));
  ck_assert_msg (g_error_matches (error, DOVEKIE_LOADER_ERROR, code),
                 "%s: expected code %d, got %s", name, code,
                 error != NULL ? error->message : "no error");
  ck_assert_msg (strstr (error->message, needle) != NULL,
                 "%s: '%s' lacks '%s'", name, error->message, needle);
  ck_assert_uint_eq (dovekie_loader_count (loader), 0);
}

START_TEST (test_load_good_defaults)
{
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "good", NULL);

  ck_assert_uint_eq (dovekie_loader_count (loader), 1);
  ck_assert_str_eq (dovekie_loader_module_name (loader, 0), "good");
  DovekieContext *service_ctx = NULL;
  const gchar *vtable = dovekie_loader_service (loader, "good-service", &service_ctx);
  ck_assert_str_eq (vtable, "good");
  ck_assert_ptr_eq (service_ctx, dovekie_loader_context (loader, "good"));
  ck_assert_ptr_null (dovekie_loader_service (loader, "nothing", &service_ctx));
  ck_assert_ptr_null (service_ctx);
  ck_assert_int_ge (test_host_find (&host, "I good: init good word=hello count=3 mode=fast flag=0"), 0);
  ck_assert_int_eq (test_host_count (&host, "E "), 0);
}
END_TEST

START_TEST (test_settings_view)
{
  g_autoptr (DovekieLoader) loader = new_loader (
    "dovekie_modules", "good", "dovekie_good_word", "bye", "dovekie_good_count", "7",
    "dovekie_good_mode", "slow", "dovekie_good_flag", "yes", "dovekie_good_size", "2k",
    "unrelated_key", "ignored", NULL);
  DovekieContext *ctx = dovekie_loader_context (loader, "good");

  ck_assert_ptr_nonnull (ctx);
  ck_assert_int_ge (test_host_find (&host, "init good word=bye count=7 mode=slow flag=1"), 0);
  ck_assert_str_eq (ctx->api->get_string (ctx, "dovekie_good_word"), "bye");
  ck_assert_uint_eq (ctx->api->get_uint (ctx, "dovekie_good_size"), 2048);
  ck_assert_uint_eq (ctx->api->get_uint (ctx, "dovekie_good_mode"), 1);
  ck_assert (ctx->api->get_bool (ctx, "dovekie_good_flag"));
}
END_TEST

START_TEST (test_bad_setting_value)
{
  g_autoptr (DovekieLoader) loader = new_loader (
    "dovekie_modules", "good", "dovekie_good_count", "11", NULL);

  /* Fail closed (issue: a bad value switched a guard off): the module is
   * failed, not skipped, and the reason names setting and value. */
  const gchar *name = NULL, *reason = NULL;
  DovekieGuard guards = DOVEKIE_GUARD_NONE;
  ck_assert_uint_eq (dovekie_loader_count (loader), 0);
  ck_assert_uint_eq (test_host_count (&host, "E loader: module 'good' cannot start: "
                                      "dovekie_good_count = 11: out of range (1..10)"), 1);
  ck_assert_uint_eq (dovekie_loader_failed_count (loader), 1);
  ck_assert (dovekie_loader_failed_info (loader, 0, &name, &reason, &guards));
  ck_assert_str_eq (name, "good");
  ck_assert_ptr_nonnull (strstr (reason, "dovekie_good_count = 11"));
  /* Not a shipped module: it may guard anything, so it guards all. */
  ck_assert_int_eq (guards, DOVEKIE_GUARD_SAVE | DOVEKIE_GUARD_READ | DOVEKIE_GUARD_POP3);
  ck_assert (!dovekie_loader_failed_info (loader, 1, &name, &reason, &guards));
  ck_assert_uint_eq (dovekie_loader_problem_count (loader), 1);
  /* No second, misleading "unknown setting" line for its own options. */
  ck_assert_uint_eq (test_host_count (&host, "unknown setting"), 0);
}
END_TEST

START_TEST (test_unknown_setting)
{
  g_autoptr (DovekieLoader) loader = new_loader (
    "dovekie_modules", "good", "dovekie_good_wrod", "x", "dovekie_zzz", "1", NULL);
  g_autofree gchar *dump = test_host_dump (&host);

  /* A misspelt option of a listed module stops that module (its intent is
   * unknown); a key no module could declare is reported once, by name. */
  ck_assert_uint_eq (dovekie_loader_count (loader), 0);
  ck_assert_uint_eq (dovekie_loader_failed_count (loader), 1);
  ck_assert_msg (test_host_count (&host, "unknown setting dovekie_good_wrod = x: module good "
                                  "declares no such setting") == 1, "log was:\n%s", dump);
  ck_assert_msg (test_host_count (&host, "unknown setting(s) dovekie_zzz = 1: no dovekie module") == 1,
                 "log was:\n%s", dump);
}
END_TEST

/* Issue "fail closed": a user with dovekie_modules = none got "unknown
 * setting(s) dovekie_av_clamd" on every login, because the global block
 * sets options of modules that user does not load. */
START_TEST (test_options_of_unloaded_modules)
{
  g_autoptr (DovekieLoader) loader = new_loader (
    "dovekie_modules", "none", "dovekie_av_clamd", "unix:/x", "dovekie_retention_days", "3",
    "dovekie_search_x", "1", "dovekie_example_reject", "y", NULL);
  g_autofree gchar *dump = test_host_dump (&host);

  ck_assert_uint_eq (dovekie_loader_count (loader), 0);
  ck_assert_uint_eq (dovekie_loader_failed_count (loader), 0);
  ck_assert_msg (test_host_count (&host, "E ") == 0, "log was:\n%s", dump);
  ck_assert (!dovekie_loader_wants_save (loader));
}
END_TEST

static gssize
empty_read (G_GNUC_UNUSED gpointer data, G_GNUC_UNUSED guint8 *buf, G_GNUC_UNUSED gsize len,
            G_GNUC_UNUSED GError **error)
{
  return 0;
}

static gboolean
empty_rewind (G_GNUC_UNUSED gpointer data, G_GNUC_UNUSED GError **error)
{
  return TRUE;
}

static const DovekieMessageSource empty_source = { empty_read, empty_rewind, NULL };

/* The guards of the shipped modules, when their files are missing. */
START_TEST (test_failed_module_guards)
{
  static const struct {
    const gchar *name;
    gboolean save, read, pop3;
  } cases[] = {
    { "antivirus", TRUE, TRUE, FALSE },
    { "retention", FALSE, FALSE, TRUE },
    { "search", FALSE, FALSE, FALSE },
    { "example", TRUE, FALSE, FALSE },
  };
  DovekieMessageInfo info = { "INBOX", 7, 10 };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", cases[i].name, NULL);
      DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;
      const gchar *name = NULL, *reason = NULL;

      ck_assert_uint_eq (dovekie_loader_failed_count (loader), 1);
      ck_assert_msg (dovekie_loader_wants_save (loader) == cases[i].save, "%s", cases[i].name);
      ck_assert_msg (dovekie_loader_wants_read (loader) == cases[i].read, "%s", cases[i].name);
      ck_assert_msg (dovekie_loader_guarded (loader, DOVEKIE_GUARD_POP3, &name, &reason) ==
                     cases[i].pop3, "%s", cases[i].name);

      dovekie_loader_dispatch_save (loader, DOVEKIE_ORIGIN_DELIVERY, &info, &empty_source, NULL,
                                    &verdict);
      ck_assert_int_eq (verdict.kind, cases[i].save ? DOVEKIE_VERDICT_TEMPFAIL
                                                    : DOVEKIE_VERDICT_ACCEPT);
      if (cases[i].save)
        ck_assert_str_eq (verdict.reason, DOVEKIE_GUARD_REASON);
      dovekie_verdict_clear (&verdict);
      dovekie_loader_dispatch_read (loader, DOVEKIE_READ_FETCH, &info, &empty_source, NULL,
                                    &verdict);
      ck_assert_int_eq (verdict.kind, cases[i].read ? DOVEKIE_VERDICT_TEMPFAIL
                                                    : DOVEKIE_VERDICT_ACCEPT);
      dovekie_verdict_clear (&verdict);
      ck_assert_int_eq (dovekie_loader_dispatch_expunge (loader, &info, TRUE),
                        cases[i].pop3 ? DOVEKIE_EXPUNGE_KEEP : DOVEKIE_EXPUNGE_ALLOW);
      /* An IMAP expunge is the user's own: never kept by a guard. */
      ck_assert_int_eq (dovekie_loader_dispatch_expunge (loader, &info, FALSE),
                        DOVEKIE_EXPUNGE_ALLOW);
    }
  /* Each refusal logged one line naming the module and why. */
  ck_assert_uint_eq (test_host_count (&host, "refusing to store a message (uid 7): module "
                                      "antivirus is configured but not running: module "
                                      "'antivirus' is part of dovekie but"), 1);
  ck_assert_uint_eq (test_host_count (&host, "refusing to read a message (uid 7): module "
                                      "antivirus"), 1);
  ck_assert_uint_eq (test_host_count (&host, "keeping uid 7 against a POP3 deletion: module "
                                      "retention"), 1);
}
END_TEST

/* Issue "fail closed": a failed search module refuses nothing (Dovecot's own
 * search answers), so its failure is logged once per process, not once per
 * user; what guards is logged for every user. */
START_TEST (test_unguarded_failure_logged_once_per_process)
{
  for (guint round = 0; round < 2; round++)
    {
      g_autoptr (DovekieLoader) search = new_loader ("dovekie_modules", "search", NULL);
      g_autoptr (DovekieLoader) av = new_loader ("dovekie_modules", "antivirus", NULL);
      /* Kept for status and check either way. */
      ck_assert_uint_eq (dovekie_loader_problem_count (search), 1);
      ck_assert_uint_eq (dovekie_loader_problem_count (av), 1);
    }
  ck_assert_uint_eq (test_host_count (&host, "module 'search' is part of dovekie but"), 1);
  ck_assert_uint_eq (test_host_count (&host, "module 'antivirus' is part of dovekie but"), 2);
}
END_TEST

/* Issue "fail closed": dovekie_module_dir and the test clock were taken from
 * userdb, so whoever controls a userdb field chose the code that runs. */
START_TEST (test_global_only_from_userdb)
{
  static const gchar *const keys[] = { DOVEKIE_SETTING_MODULE_DIR, DOVEKIE_SETTING_CLOCK_OFFSET };

  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      g_autoptr (GHashTable) view = g_hash_table_new (g_str_hash, g_str_equal);
      const gchar *const user_keys[] = { keys[i], NULL };
      DovekieHost h = { test_host_log, test_host_now, &host, NULL, NULL, NULL, NULL, NULL };
      const gchar *reason = NULL;

      g_hash_table_insert (view, (gpointer) "dovekie_modules", (gpointer) "good second");
      g_hash_table_insert (view, (gpointer) keys[i],
                           (gpointer) (i == 0 ? module_dir : "0"));
      g_autoptr (DovekieLoader) loader = dovekie_loader_new_full (view, user_keys, module_dir, &h);
      ck_assert_uint_eq (dovekie_loader_count (loader), 0);
      ck_assert_uint_eq (dovekie_loader_failed_count (loader), 2);
      ck_assert (dovekie_loader_guarded (loader, DOVEKIE_GUARD_SAVE, NULL, &reason));
      ck_assert_ptr_nonnull (strstr (reason, keys[i]));
      ck_assert_ptr_nonnull (strstr (reason, "(from userdb): may be set only in the global"));
    }
  /* The same keys from the global configuration are fine. */
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "good",
                                                 "dovekie_test_clock_offset", "5", NULL);
  ck_assert_uint_eq (dovekie_loader_count (loader), 1);
}
END_TEST

/* A userdb value that is bad names its origin. */
START_TEST (test_bad_value_from_userdb)
{
  g_autoptr (GHashTable) view = g_hash_table_new (g_str_hash, g_str_equal);
  const gchar *const user_keys[] = { "dovekie_good_count", NULL };
  DovekieHost h = { test_host_log, test_host_now, &host, NULL, NULL, NULL, NULL, NULL };

  g_hash_table_insert (view, (gpointer) "dovekie_modules", (gpointer) "good");
  g_hash_table_insert (view, (gpointer) "dovekie_good_count", (gpointer) "30MB");
  g_autoptr (DovekieLoader) loader = dovekie_loader_new_full (view, user_keys, module_dir, &h);
  ck_assert_uint_eq (dovekie_loader_failed_count (loader), 1);
  ck_assert_uint_eq (test_host_count (&host, "from userdb: dovekie_good_count = 30MB: not a whole "
                                      "number"), 1);
}
END_TEST

START_TEST (test_abi_mismatch)
{
  assert_load_fails ("badabi", DOVEKIE_LOADER_ERROR_ABI, "built for module ABI 42");
}
END_TEST

START_TEST (test_missing_symbol)
{
  assert_load_fails ("nosymbol", DOVEKIE_LOADER_ERROR_MISSING_SYMBOL, "does not export the symbol dovekie_module");
}
END_TEST

START_TEST (test_init_failure)
{
  /* initfail's deinit aborts the test if the loader calls it. */
  assert_load_fails ("initfail", DOVEKIE_LOADER_ERROR_INIT, "failed to start: backend unreachable");
}
END_TEST

START_TEST (test_wrong_name)
{
  assert_load_fails ("wrongname", DOVEKIE_LOADER_ERROR_ABI, "calls itself 'someoneelse'");
}
END_TEST

START_TEST (test_unknown_and_missing)
{
  assert_load_fails ("nosuchmodule", DOVEKIE_LOADER_ERROR_UNKNOWN_MODULE, "unknown module 'nosuchmodule'");
  assert_load_fails ("../good", DOVEKIE_LOADER_ERROR_UNKNOWN_MODULE, "lower-case letters");
  assert_load_fails ("", DOVEKIE_LOADER_ERROR_UNKNOWN_MODULE, "unknown module ''");
  assert_load_fails ("antivirus", DOVEKIE_LOADER_ERROR_MISSING_FILE, "part of dovekie but");
}
END_TEST

START_TEST (test_bad_permissions)
{
  g_autofree gchar *path = g_strdup_printf ("%s/good.so", module_dir);

  ck_assert_int_eq (g_chmod (path, 0666), 0);
  assert_load_fails ("good", DOVEKIE_LOADER_ERROR_PERMISSION, "group- or world-writable (mode 0666)");
  ck_assert_int_eq (g_chmod (path, 0664), 0);
  assert_load_fails ("good", DOVEKIE_LOADER_ERROR_PERMISSION, "mode 0664");
  ck_assert_int_eq (g_chmod (path, 0644), 0);

  ck_assert_int_eq (g_chmod (module_dir, 0777), 0);
  assert_load_fails ("good", DOVEKIE_LOADER_ERROR_PERMISSION, "refusing module directory");
  ck_assert_int_eq (g_chmod (module_dir, 0755), 0);

  if (geteuid () == 0)
    {
      /* Only root can give a file away; CI runs as root. Issue "fail
       * closed": a file owned by the mail uid was accepted. */
      ck_assert_int_eq (chown (path, 12345, 12345), 0);
      assert_load_fails ("good", DOVEKIE_LOADER_ERROR_PERMISSION, "owned by uid 12345, not by root");
      ck_assert_int_eq (chown (path, 0, 0), 0);
    }

  /* Issue "fail closed": only the immediate directory was checked. */
  {
    g_autofree gchar *sub = g_build_filename (module_dir, "sub", NULL);
    g_autofree gchar *sub_so = g_build_filename (sub, "good.so", NULL);
    ck_assert_int_eq (g_mkdir (sub, 0755), 0);
    ck_assert_int_eq (rename (path, sub_so), 0);
    g_free (module_dir);
    module_dir = g_strdup (sub);
    g_autofree gchar *parent = g_path_get_dirname (sub);
    ck_assert_int_eq (g_chmod (parent, 0777), 0);
    assert_load_fails ("good", DOVEKIE_LOADER_ERROR_PERMISSION, "refusing a parent of the module directory");
    /* Sticky, like /tmp: only an entry's owner may rename it. */
    ck_assert_int_eq (g_chmod (parent, 01777), 0);
    g_autoptr (DovekieLoader) sticky = new_loader ("dovekie_modules", "good", NULL);
    ck_assert_uint_eq (dovekie_loader_count (sticky), 1);
    ck_assert_int_eq (g_chmod (parent, 0755), 0);
    ck_assert_int_eq (rename (sub_so, path), 0);
    ck_assert_int_eq (g_rmdir (sub), 0);
    g_free (module_dir);
    module_dir = g_steal_pointer (&parent);
  }

  /* Issue "fail closed": the file was checked with stat and opened by path,
   * following a symlink. */
  {
    g_autofree gchar *moved = g_strdup_printf ("%s/real-good.so", module_dir);
    ck_assert_int_eq (rename (path, moved), 0);
    ck_assert_int_eq (symlink (moved, path), 0);
    assert_load_fails ("good", DOVEKIE_LOADER_ERROR_PERMISSION, "is a symbolic link");
    ck_assert_int_eq (unlink (path), 0);
    ck_assert_int_eq (rename (moved, path), 0);
  }
  /* Back to safe: loads again. */
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "good", NULL);
  ck_assert_uint_eq (dovekie_loader_count (loader), 1);
}
END_TEST

/* Swaps good.so for second.so between the loader's checks and its load. */
static void
swap_after_open (const gchar *path)
{
  g_autofree gchar *other = g_strdup_printf ("%s/second.so", module_dir);
  ck_assert_int_eq (rename (other, path), 0);
}

/* Issue "fail closed": the file was checked, then re-opened by path, so a
 * swap in between loaded unchecked code. It is loaded from the checked
 * descriptor now: the swap changes nothing. */
START_TEST (test_swap_after_check)
{
  dovekie_loader_test_after_open = swap_after_open;
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "good", NULL);
  dovekie_loader_test_after_open = NULL;
  g_autofree gchar *dump = test_host_dump (&host);

  ck_assert_msg (dovekie_loader_count (loader) == 1, "log was:\n%s", dump);
  ck_assert_str_eq (dovekie_loader_module_name (loader, 0), "good");
  ck_assert_int_ge (test_host_find (&host, "init good"), 0);
}
END_TEST

START_TEST (test_order_and_deinit)
{
  DovekieLoader *loader = new_loader ("dovekie_modules", "second good", NULL);
  g_autofree gchar *dump = NULL;

  ck_assert_uint_eq (dovekie_loader_count (loader), 2);
  ck_assert_str_eq (dovekie_loader_module_name (loader, 0), "second");
  ck_assert_str_eq (dovekie_loader_module_name (loader, 1), "good");
  dovekie_loader_free (loader);
  dump = test_host_dump (&host);
  gint init_second = test_host_find (&host, "init second");
  gint init_good = test_host_find (&host, "init good");
  gint deinit_good = test_host_find (&host, "deinit good");
  gint deinit_second = test_host_find (&host, "deinit second");
  ck_assert_msg (init_second >= 0 && init_second < init_good, "%s", dump);
  ck_assert_msg (init_good < deinit_good && deinit_good < deinit_second, "%s", dump);
}
END_TEST

START_TEST (test_duplicates)
{
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "good good dupservice", NULL);

  ck_assert_uint_eq (dovekie_loader_count (loader), 1);
  ck_assert_uint_eq (test_host_count (&host, "module 'good' is listed twice"), 1);
  ck_assert_uint_eq (test_host_count (&host, "provides service 'good-service', already provided by 'good'"), 1);
}
END_TEST

START_TEST (test_errors_logged_once)
{
  g_autoptr (DovekieLoader) loader = new_loader (
    "dovekie_modules", "good nosuchmodule badabi,second", NULL);
  g_autofree gchar *dump = test_host_dump (&host);

  /* The good modules around the bad ones still load, in order. */
  ck_assert_uint_eq (dovekie_loader_count (loader), 2);
  ck_assert_str_eq (dovekie_loader_module_name (loader, 1), "second");
  ck_assert_msg (test_host_count (&host, "E loader: ") == 2, "log was:\n%s", dump);
  ck_assert_uint_eq (test_host_count (&host, "nosuchmodule"), 1);
  ck_assert_uint_eq (test_host_count (&host, "badabi"), 1);
}
END_TEST

START_TEST (test_bad_loader_setting)
{
  g_autoptr (DovekieLoader) loader = new_loader (
    "dovekie_modules", "good", "dovekie_test_clock_offset", "-5", NULL);

  ck_assert_uint_eq (dovekie_loader_count (loader), 0);
  ck_assert_uint_eq (test_host_count (&host, "dovekie_test_clock_offset = -5: not a whole number"), 1);
  /* The listed module guards what it would have guarded. */
  ck_assert_uint_eq (dovekie_loader_failed_count (loader), 1);
  ck_assert (dovekie_loader_wants_save (loader));
}
END_TEST

START_TEST (test_clock)
{
  g_autoptr (DovekieLoader) loader = new_loader (
    "dovekie_modules", "good", "dovekie_test_clock_offset", "86400", NULL);
  DovekieContext *ctx = dovekie_loader_context (loader, "good");

  ck_assert_int_eq (ctx->api->now (ctx), host.now + 86400);
  host.now += 5;
  ck_assert_int_eq (ctx->api->now (ctx), host.now + 86400);
}
END_TEST

static gboolean
count_keys (const gchar *key, const gchar *value, gpointer data)
{
  (void) value;
  ck_assert (g_str_has_prefix (key, "dl/"));
  (*(guint *) data)++;
  return TRUE;
}

START_TEST (test_kv)
{
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "good second", NULL);
  DovekieContext *good = dovekie_loader_context (loader, "good");
  DovekieContext *second = dovekie_loader_context (loader, "second");
  g_autoptr (GError) error = NULL;
  gchar *value = NULL;
  guint count = 0;

  ck_assert (good->api->kv_set (good, "dl/laptop:17", "1700000000", &error));
  ck_assert (good->api->kv_set (good, "dl/phone:17", "1700000100", &error));
  ck_assert (good->api->kv_set (good, "other", "x", &error));
  ck_assert (good->api->kv_get (good, "dl/laptop:17", &value, &error));
  ck_assert_str_eq (value, "1700000000");
  g_clear_pointer (&value, g_free);
  /* Each module has its own namespace. */
  ck_assert (second->api->kv_get (second, "dl/laptop:17", &value, &error));
  ck_assert_ptr_null (value);
  ck_assert (good->api->kv_foreach (good, "dl/", count_keys, &count, &error));
  ck_assert_uint_eq (count, 2);
  /* NULL deletes. */
  ck_assert (good->api->kv_set (good, "dl/phone:17", NULL, &error));
  ck_assert (good->api->kv_get (good, "dl/phone:17", &value, &error));
  ck_assert_ptr_null (value);
}
END_TEST

START_TEST (test_kv_refusals)
{
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "good", NULL);
  DovekieContext *ctx = dovekie_loader_context (loader, "good");
  gchar *value = NULL;
  g_autofree gchar *long_key = g_strnfill (DOVEKIE_KV_KEY_MAX + 1, 'k');
  g_autofree gchar *long_value = g_strnfill (DOVEKIE_KV_VALUE_MAX + 1, 'v');
  static const gchar *const bad_keys[] = { "", "a b", "x*y", "k\n", "\xc3\xa9", NULL };

  for (guint i = 0; bad_keys[i] != NULL; i++)
    {
      g_autoptr (GError) error = NULL;
      ck_assert_msg (!ctx->api->kv_set (ctx, bad_keys[i], "v", &error), "key %u", i);
      ck_assert (strstr (error->message, "invalid kv key") != NULL);
    }
  {
    g_autoptr (GError) error = NULL;
    ck_assert (!ctx->api->kv_get (ctx, long_key, &value, &error));
  }
  {
    g_autoptr (GError) error = NULL;
    ck_assert (!ctx->api->kv_set (ctx, "k", long_value, &error));
    ck_assert (strstr (error->message, "at most 65536 bytes") != NULL);
  }
  {
    /* A host whose store is down: a clean error, no crash. */
    g_autoptr (GError) error = NULL;
    g_clear_pointer (&host.kv, g_hash_table_unref);
    ck_assert (!ctx->api->kv_get (ctx, "k", &value, &error));
    ck_assert_str_eq (error->message, "test kv is down");
  }
}
END_TEST

START_TEST (test_emit)
{
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "good", NULL);
  DovekieContext *ctx = dovekie_loader_context (loader, "good");
  const gchar *fields[] = { "verdict", "clean", "bytes", "123", NULL };
  const gchar *odd[] = { "verdict", NULL };
  const gchar *bad_key[] = { "Bad Key", "x", NULL };

  ctx->api->emit (ctx, "dovekie_good_scanned", fields);
  ck_assert_uint_eq (test_host_count (&host, "V good: dovekie_good_scanned verdict=clean bytes=123"), 1);
  /* Malformed events are dropped, never passed to the host. */
  ctx->api->emit (ctx, "Not-A-Name", fields);
  ctx->api->emit (ctx, "dovekie_good_x", odd);
  ctx->api->emit (ctx, "dovekie_good_y", bad_key);
  ck_assert_uint_eq (test_host_count (&host, "V good:"), 1);
}
END_TEST

static DovekieVerdictKind
save_text (DovekieLoader *loader, const gchar *text, gchar **reason_r)
{
  TestSource src = { (const guint8 *) text, strlen (text), 0, 0, FALSE };
  DovekieMessageInfo info = { "INBOX", 0, (gint64) strlen (text) };
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;

  dovekie_loader_dispatch_save (loader, DOVEKIE_ORIGIN_APPEND, &info, &test_source_vtable,
                                &src, &verdict);
  *reason_r = verdict.reason;
  return verdict.kind;
}

START_TEST (test_dispatch_save)
{
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "second good", NULL);
  g_autofree gchar *reason = NULL;

  ck_assert_int_eq (save_text (loader, "hello", &reason), DOVEKIE_VERDICT_ACCEPT);
  ck_assert_ptr_null (reason);
  /* Both saw it, in order, each from byte 0. */
  ck_assert_int_lt (test_host_find (&host, "save second"), test_host_find (&host, "save good"));

  g_ptr_array_set_size (host.lines, 0);
  ck_assert_int_eq (save_text (loader, FIXTURE_REJECT_MARK " me", &reason), DOVEKIE_VERDICT_REJECT);
  ck_assert_str_eq (reason, "rejected by second");
  /* The first refusal ends the chain. */
  ck_assert_int_eq (test_host_find (&host, "save good"), -1);
  g_clear_pointer (&reason, g_free);

  g_ptr_array_set_size (host.lines, 0);
  ck_assert_int_eq (save_text (loader, FIXTURE_FAIL_MARK " now", &reason), DOVEKIE_VERDICT_TEMPFAIL);
  ck_assert_str_eq (reason, "Temporary failure checking the message, try again later");
  ck_assert_uint_eq (test_host_count (&host, "E second: fixture failure"), 1);
}
END_TEST

/* Runs the save hooks on `text` and hands back the whole verdict. */
static void
save_verdict (DovekieLoader *loader, const gchar *text, DovekieVerdict *verdict)
{
  TestSource src = { (const guint8 *) text, strlen (text), 0, 0, FALSE };
  DovekieMessageInfo info = { "INBOX", 0, (gint64) strlen (text) };

  dovekie_loader_dispatch_save (loader, DOVEKIE_ORIGIN_DELIVERY, &info, &test_source_vtable,
                                &src, verdict);
}

START_TEST (test_dispatch_divert_discard_keyword)
{
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "second good", NULL);
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;

  save_verdict (loader, FIXTURE_DIVERT_MARK " me", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_DIVERT);
  ck_assert_str_eq (verdict.mailbox, "Quarantine");
  ck_assert_str_eq (verdict.reason, "diverted by second");
  /* DIVERT ends the chain like any non-ACCEPT. */
  ck_assert_int_eq (test_host_find (&host, "save good"), -1);
  dovekie_verdict_clear (&verdict);
  ck_assert_ptr_null (verdict.mailbox);

  save_verdict (loader, FIXTURE_DISCARD_MARK " me", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_DISCARD);
  ck_assert_str_eq (verdict.reason, "discarded by second");
  ck_assert_ptr_null (verdict.mailbox);
  dovekie_verdict_clear (&verdict);

  /* ACCEPT with a keyword goes on through the chain; the last one set wins. */
  g_ptr_array_set_size (host.lines, 0);
  save_verdict (loader, FIXTURE_TAG_MARK " me", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_ACCEPT);
  ck_assert_str_eq (verdict.keyword, "$Taggood");
  ck_assert_ptr_null (verdict.reason);
  ck_assert_int_lt (test_host_find (&host, "save second"), test_host_find (&host, "save good"));
  dovekie_verdict_clear (&verdict);
}
END_TEST

START_TEST (test_dispatch_verdict_contract)
{
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "good", NULL);
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;

  /* A module that breaks the contract yields a logged TEMPFAIL. */
  save_verdict (loader, FIXTURE_NOBOX_MARK, &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_TEMPFAIL);
  ck_assert_str_eq (verdict.reason, "Temporary failure checking the message, try again later");
  ck_assert_uint_eq (test_host_count (&host, "E good: DIVERT without a mailbox"), 1);
  dovekie_verdict_clear (&verdict);

  save_verdict (loader, FIXTURE_BADTAG_MARK, &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_TEMPFAIL);
  ck_assert_ptr_null (verdict.keyword);
  ck_assert_uint_eq (test_host_count (&host, "E good: invalid keyword"), 1);
  dovekie_verdict_clear (&verdict);

}
END_TEST

START_TEST (test_dispatch_read_error)
{
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "good", NULL);
  TestSource src = { (const guint8 *) "x", 1, 0, 0, TRUE };
  DovekieMessageInfo info = { "INBOX", 3, 1 };
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;

  dovekie_loader_dispatch_save (loader, DOVEKIE_ORIGIN_COPY, &info, &test_source_vtable, &src, &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_TEMPFAIL);
  ck_assert_uint_eq (test_host_count (&host, "test read failure"), 1);
  g_free (verdict.reason);
}
END_TEST

START_TEST (test_dispatch_expunge)
{
  g_autoptr (DovekieLoader) loader = new_loader ("dovekie_modules", "good second", NULL);
  DovekieMessageInfo odd = { "INBOX", 7, 10 };
  DovekieMessageInfo even = { "INBOX", 8, 10 };

  ck_assert (dovekie_loader_wants_expunge (loader));
  ck_assert (!dovekie_loader_wants_read (loader));
  ck_assert_int_eq (dovekie_loader_dispatch_expunge (loader, &odd, TRUE), DOVEKIE_EXPUNGE_KEEP);
  ck_assert_int_eq (dovekie_loader_dispatch_expunge (loader, &even, FALSE), DOVEKIE_EXPUNGE_ALLOW);
  /* Every module hears every expunge, kept or not. */
  ck_assert_uint_eq (test_host_count (&host, "expunge good uid=7 pop3=1"), 1);
  ck_assert_uint_eq (test_host_count (&host, "expunge second uid=7 pop3=1"), 1);
}
END_TEST

START_TEST (test_no_modules)
{
  g_autoptr (DovekieLoader) loader = new_loader (NULL);
  g_autofree gchar *reason = NULL;

  ck_assert_uint_eq (dovekie_loader_count (loader), 0);
  ck_assert (!dovekie_loader_wants_save (loader));
  ck_assert_int_eq (save_text (loader, "x", &reason), DOVEKIE_VERDICT_ACCEPT);
  ck_assert_uint_eq (host.lines->len, 0);
  dovekie_loader_free (NULL);
}
END_TEST

static Suite *
loader_suite (void)
{
  Suite *s = suite_create ("dovekie-loader");
  struct { const char *name; const TTest *test; } cases[] = {
    { "load", test_load_good_defaults },
    { "settings_view", test_settings_view },
    { "bad_setting_value", test_bad_setting_value },
    { "unknown_setting", test_unknown_setting },
    { "abi_mismatch", test_abi_mismatch },
    { "missing_symbol", test_missing_symbol },
    { "init_failure", test_init_failure },
    { "wrong_name", test_wrong_name },
    { "unknown_and_missing", test_unknown_and_missing },
    { "bad_permissions", test_bad_permissions },
    { "swap_after_check", test_swap_after_check },
    { "options_of_unloaded_modules", test_options_of_unloaded_modules },
    { "failed_module_guards", test_failed_module_guards },
    { "global_only_from_userdb", test_global_only_from_userdb },
    { "unguarded_failure_logged_once", test_unguarded_failure_logged_once_per_process },
    { "bad_value_from_userdb", test_bad_value_from_userdb },
    { "order_and_deinit", test_order_and_deinit },
    { "duplicates", test_duplicates },
    { "errors_logged_once", test_errors_logged_once },
    { "bad_loader_setting", test_bad_loader_setting },
    { "clock", test_clock },
    { "dispatch_save", test_dispatch_save },
    { "dispatch_read_error", test_dispatch_read_error },
    { "dispatch_divert_discard_keyword", test_dispatch_divert_discard_keyword },
    { "dispatch_verdict_contract", test_dispatch_verdict_contract },
    { "dispatch_expunge", test_dispatch_expunge },
    { "no_modules", test_no_modules },
    { "kv", test_kv },
    { "emit", test_emit },
    { "kv_refusals", test_kv_refusals },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      TCase *tc = tcase_create (cases[i].name);
      tcase_add_checked_fixture (tc, setup, teardown);
      tcase_add_test (tc, cases[i].test);
      suite_add_tcase (s, tc);
    }
  return s;
}

int
main (void)
{
  SRunner *runner = srunner_create (loader_suite ());
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
