/* Unit tests for the GLib side of the Dovecot host: the plain-C boundary. */
#include "dovekie-config.h"

#include <stdlib.h>

#include "dovekie-test.h"
#include "dovekie-bridge.h"
#include "dovekie-bridge-private.h"

static gchar *module_dir;
static GPtrArray *lines;
/* What the bridge handed back through the host's half of the string
   convention (Dovecot's data stack in the plugin). */
static GPtrArray *kept;

const char *
dovekie_bridge_keep (const char *text)
{
  g_ptr_array_add (kept, g_strdup (text));
  return g_ptr_array_index (kept, kept->len - 1);
}

static void
bridge_log (void *context, enum dovekie_bridge_level level, const char *module, const char *message)
{
  (void) context;
  g_ptr_array_add (lines, g_strdup_printf ("%d %s: %s", (int) level,
                                           module != NULL ? module : "dovekie", message));
}

static int64_t
bridge_now (void *context)
{
  (void) context;
  return 1000;
}

typedef struct {
  const char *text;
  size_t pos;
  gboolean fail;
} PlainSource;

static ssize_t
plain_read (void *context, unsigned char *buf, size_t len, const char **error_r)
{
  PlainSource *src = context;
  size_t n = MIN (len, strlen (src->text) - src->pos);
  if (src->fail)
    {
      *error_r = "disk on fire";
      return -1;
    }
  memcpy (buf, src->text + src->pos, n);
  src->pos += n;
  return (ssize_t) n;
}

static int
plain_rewind (void *context, const char **error_r)
{
  (void) error_r;
  ((PlainSource *) context)->pos = 0;
  return 0;
}

static struct dovekie_bridge *
new_bridge (const char *modules)
{
  const char *settings[] = { "dovekie_modules", modules, "dovekie_good_word", "w", NULL };
  struct dovekie_bridge_host host = { bridge_log, bridge_now, NULL, NULL, NULL, NULL, NULL, NULL };
  return dovekie_bridge_create (settings, NULL, module_dir, &host);
}

static void
setup (void)
{
  lines = g_ptr_array_new_with_free_func (g_free);
  kept = g_ptr_array_new_with_free_func (g_free);
  module_dir = test_make_dir ();
  test_install_module (FIXTURE_DIR, module_dir, "good");
}

static void
teardown (void)
{
  test_remove_dir (module_dir);
  g_clear_pointer (&module_dir, g_free);
  g_clear_pointer (&lines, g_ptr_array_unref);
  g_clear_pointer (&kept, g_ptr_array_unref);
}

static gboolean
logged (const char *needle)
{
  for (guint i = 0; i < lines->len; i++)
    if (strstr (g_ptr_array_index (lines, i), needle) != NULL)
      return TRUE;
  return FALSE;
}

START_TEST (test_bridge_save)
{
  struct dovekie_bridge *bridge = new_bridge ("good");
  PlainSource src = { "REJECT this", 0, FALSE };
  struct dovekie_bridge_source source = { plain_read, plain_rewind, NULL, &src };
  struct dovekie_bridge_message msg = { "INBOX", 0, 11 };
  char reason[DOVEKIE_BRIDGE_REASON_MAX];

  ck_assert_uint_eq (dovekie_bridge_module_count (bridge), 1);
  ck_assert (dovekie_bridge_wants_save (bridge));
  ck_assert (!dovekie_bridge_wants_read (bridge));
  ck_assert_int_eq (dovekie_bridge_save (bridge, DOVEKIE_BRIDGE_SAVE_APPEND, &msg, &source, reason),
                    DOVEKIE_BRIDGE_REJECT);
  ck_assert_str_eq (reason, "rejected by good");
  ck_assert (logged ("1 good: init good word=w"));

  src.text = "fine";
  src.pos = 0;
  ck_assert_int_eq (dovekie_bridge_save (bridge, DOVEKIE_BRIDGE_SAVE_COPY, &msg, &source, reason),
                    DOVEKIE_BRIDGE_ACCEPT);
  ck_assert_str_eq (reason, "");

  src.fail = TRUE;
  ck_assert_int_eq (dovekie_bridge_save (bridge, DOVEKIE_BRIDGE_SAVE_DELIVERY, &msg, &source, reason),
                    DOVEKIE_BRIDGE_TEMPFAIL);
  ck_assert (logged ("3 good: reading the message failed: disk on fire"));

  ck_assert (dovekie_bridge_expunge (bridge, &msg, TRUE));
  dovekie_bridge_destroy (&bridge);
  ck_assert_ptr_null (bridge);
  ck_assert (logged ("1 good: deinit good"));
  dovekie_bridge_destroy (&bridge);
}
END_TEST

START_TEST (test_bridge_save_result)
{
  struct dovekie_bridge *bridge = new_bridge ("good");
  PlainSource src = { "DIVERT this", 0, FALSE };
  struct dovekie_bridge_source source = { plain_read, plain_rewind, NULL, &src };
  struct dovekie_bridge_message msg = { "INBOX", 0, 11 };
  struct dovekie_bridge_result result;
  char reason[DOVEKIE_BRIDGE_REASON_MAX];

  ck_assert_int_eq (dovekie_bridge_save_result (bridge, DOVEKIE_BRIDGE_SAVE_DELIVERY, &msg,
                                                &source, &result),
                    DOVEKIE_BRIDGE_DIVERT);
  ck_assert_str_eq (result.mailbox, "Quarantine");
  ck_assert_str_eq (result.reason, "diverted by good");
  ck_assert_str_eq (result.keyword, "");
  /* The plain form refuses what it cannot divert. */
  src.pos = 0;
  ck_assert_int_eq (dovekie_bridge_save (bridge, DOVEKIE_BRIDGE_SAVE_APPEND, &msg, &source, reason),
                    DOVEKIE_BRIDGE_REJECT);
  ck_assert_str_eq (reason, "diverted by good");

  src.text = "DISCARD this";
  src.pos = 0;
  ck_assert_int_eq (dovekie_bridge_save_result (bridge, DOVEKIE_BRIDGE_SAVE_DELIVERY, &msg,
                                                &source, &result),
                    DOVEKIE_BRIDGE_DISCARD);
  ck_assert_str_eq (result.reason, "discarded by good");
  ck_assert_str_eq (result.mailbox, "");
  src.pos = 0;
  ck_assert_int_eq (dovekie_bridge_save (bridge, DOVEKIE_BRIDGE_SAVE_COPY, &msg, &source, reason),
                    DOVEKIE_BRIDGE_REJECT);
  ck_assert_str_eq (reason, "discarded by good");

  src.text = "TAG this";
  src.pos = 0;
  ck_assert_int_eq (dovekie_bridge_save_result (bridge, DOVEKIE_BRIDGE_SAVE_DELIVERY, &msg,
                                                &source, &result),
                    DOVEKIE_BRIDGE_ACCEPT);
  ck_assert_str_eq (result.keyword, "$Taggood");
  ck_assert_str_eq (result.reason, "");
  src.pos = 0;
  ck_assert_int_eq (dovekie_bridge_save (bridge, DOVEKIE_BRIDGE_SAVE_APPEND, &msg, &source, reason),
                    DOVEKIE_BRIDGE_ACCEPT);

  src.text = "NOBOX";
  src.pos = 0;
  ck_assert_int_eq (dovekie_bridge_save_result (bridge, DOVEKIE_BRIDGE_SAVE_DELIVERY, &msg,
                                                &source, &result),
                    DOVEKIE_BRIDGE_TEMPFAIL);
  ck_assert_str_eq (result.mailbox, "");
  ck_assert (logged ("3 good: DIVERT without a mailbox"));

  dovekie_bridge_destroy (&bridge);
  /* No bridge: accept, nothing set. */
  ck_assert_int_eq (dovekie_bridge_save_result (NULL, DOVEKIE_BRIDGE_SAVE_DELIVERY, &msg,
                                                &source, &result),
                    DOVEKIE_BRIDGE_ACCEPT);
  ck_assert_str_eq (result.keyword, "");
}
END_TEST

START_TEST (test_bridge_bad_module)
{
  struct dovekie_bridge *bridge = new_bridge ("nosuchmodule");

  /* The session goes on with no module loaded, and the error was logged
   * once; the module is failed, and guards all (it is not a shipped one). */
  const char *name = NULL, *reason = NULL;
  unsigned int guards = 0;
  ck_assert_uint_eq (dovekie_bridge_module_count (bridge), 0);
  ck_assert (logged ("3 dovekie: unknown module 'nosuchmodule'"));
  ck_assert (dovekie_bridge_active (bridge));
  ck_assert_uint_eq (dovekie_bridge_failed_count (bridge), 1);
  ck_assert (dovekie_bridge_failed_info (bridge, 0, &name, &reason, &guards));
  ck_assert_str_eq (name, "nosuchmodule");
  ck_assert_uint_eq (guards, DOVEKIE_BRIDGE_GUARD_SAVE | DOVEKIE_BRIDGE_GUARD_READ |
                     DOVEKIE_BRIDGE_GUARD_POP3);
  ck_assert (dovekie_bridge_guarded (bridge, DOVEKIE_BRIDGE_GUARD_POP3, &name, &reason));
  /* new_bridge also sets dovekie_good_word, which no module declares. */
  ck_assert_uint_eq (dovekie_bridge_problem_count (bridge), 2);
  ck_assert_ptr_nonnull (strstr (dovekie_bridge_problem (bridge, 0), "nosuchmodule"));
  ck_assert_ptr_nonnull (strstr (dovekie_bridge_problem (bridge, 1), "dovekie_good_word"));
  ck_assert_ptr_null (dovekie_bridge_problem (bridge, 2));
  /* The Dovecot side's copy of the refusal text is the loader's. */
  ck_assert_str_eq (DOVEKIE_BRIDGE_GUARD_REASON, DOVEKIE_GUARD_REASON);
  dovekie_bridge_destroy (&bridge);
  ck_assert (!dovekie_bridge_active (bridge));
}
END_TEST

/* Errors come back as const char **error_r: a constant, or a GError's
   message copied to the host's side, never a buffer to fill. */
START_TEST (test_bridge_errors)
{
  struct dovekie_bridge *bridge = new_bridge ("good");
  struct dovekie_bridge_index *index = NULL;
  const char *error = NULL;

  ck_assert_int_eq (dovekie_bridge_index_open (bridge, "/nonexistent/x.db", 1, &index, &error),
                    -1);
  ck_assert_ptr_null (index);
  ck_assert_str_eq (error, "no loaded module provides the index service (dovekie_modules)");
  ck_assert_uint_eq (kept->len, 0);

  ck_assert_int_eq (dovekie_bridge_fail (g_error_new_literal (G_FILE_ERROR, G_FILE_ERROR_IO,
                                                              "disk on fire"),
                                         "unknown", &error),
                    -1);
  ck_assert_uint_eq (kept->len, 1);
  ck_assert_ptr_eq (error, g_ptr_array_index (kept, 0));
  ck_assert_str_eq (error, "disk on fire");
  ck_assert_int_eq (dovekie_bridge_fail (NULL, "unknown", &error), -1);
  ck_assert_str_eq (error, "unknown");
  ck_assert_uint_eq (kept->len, 2);
  dovekie_bridge_destroy (&bridge);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("dovekie-bridge");
  TCase *tc = tcase_create ("bridge");
  SRunner *runner;
  int failed;

  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_bridge_save);
  tcase_add_test (tc, test_bridge_save_result);
  tcase_add_test (tc, test_bridge_bad_module);
  tcase_add_test (tc, test_bridge_errors);
  suite_add_tcase (s, tc);
  runner = srunner_create (s);
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
