/* Unit tests for the example module, with a fake host API. */
#include "dovekie-config.h"

#include <stdlib.h>

#include "dovekie-test.h"
#include "dovekie-example.h"

extern const DovekieModule dovekie_module;

static const gchar *fake_reject;
static TestHost host;

static gssize
fake_read (DovekieMessage *msg, guint8 *buf, gsize len, GError **error)
{
  return test_source_read (msg, buf, len, error);
}

static const gchar *
fake_get_string (DovekieContext *ctx, const gchar *key)
{
  (void) ctx;
  if (g_str_equal (key, "dovekie_example_reject"))
    return fake_reject;
  if (g_str_equal (key, "dovekie_example_reason"))
    return "refused for the test";
  ck_abort_msg ("unexpected setting %s", key);
  return NULL;
}

static void
fake_log (DovekieContext *ctx, DovekieLogLevel level, const gchar *message)
{
  (void) ctx;
  test_host_log (&host, level, "example", message);
}

static gboolean
fake_get_bool (DovekieContext *ctx, const gchar *key)
{
  (void) ctx;
  ck_assert_str_eq (key, "dovekie_example_count_saves");
  return FALSE;
}

static void
fake_emit (DovekieContext *ctx, const gchar *name, const gchar *const *fields)
{
  (void) ctx;
  test_host_emit (&host, "example", name, fields);
}

static const DovekieHostApi fake_api = {
  .emit = fake_emit,
  .get_string = fake_get_string,
  .get_bool = fake_get_bool,
  .log = fake_log,
  .read = fake_read,
};

typedef struct {
  const gchar *text;
  const gchar *needle;
  gsize max_chunk;
  gboolean found;
} FindCase;

static gchar *big_with_needle_at_boundary;

static const FindCase find_cases[] = {
  { "VIRUS at start", "VIRUS", 0, TRUE },
  { "ends with VIRUS", "VIRUS", 0, TRUE },
  { "no match here", "VIRUS", 0, FALSE },
  { "VIR US split by space", "VIRUS", 0, FALSE },
  { "straddles short reads: xxVIRUSxx", "VIRUS", 2, TRUE },
  { "one byte at a time VIRUS", "VIRUS", 1, TRUE },
  { "case matters: virus", "VIRUS", 0, FALSE },
  { "", "VIRUS", 0, FALSE },
  { "anything", "", 0, FALSE },
  { "VIRU", "VIRUS", 0, FALSE },
  { NULL, "BOUNDARY", 0, TRUE }, /* big text, match across the 64 KiB window */
};

START_TEST (test_find)
{
  const FindCase *c = &find_cases[_i];
  const gchar *text = c->text != NULL ? c->text : big_with_needle_at_boundary;
  TestSource src = { (const guint8 *) text, strlen (text), 0, c->max_chunk, FALSE };
  DovekieContext ctx = { &fake_api, NULL };
  g_autoptr (GError) error = NULL;
  gboolean found = !c->found;

  ck_assert (dovekie_example_find (&ctx, (DovekieMessage *) &src, c->needle, &found, &error));
  ck_assert_msg (found == c->found, "case %d: '%.40s' / '%s'", _i, text, c->needle);
}
END_TEST

START_TEST (test_find_read_error)
{
  TestSource src = { (const guint8 *) "x", 1, 0, 0, TRUE };
  DovekieContext ctx = { &fake_api, NULL };
  g_autoptr (GError) error = NULL;
  gboolean found;

  ck_assert (!dovekie_example_find (&ctx, (DovekieMessage *) &src, "x", &found, &error));
  ck_assert_str_eq (error->message, "test read failure");
}
END_TEST

START_TEST (test_save_hook)
{
  const gchar *text = "Subject: hi\r\n\r\nthis carries EVIL-TOKEN inside\r\n";
  TestSource src = { (const guint8 *) text, strlen (text), 0, 0, FALSE };
  DovekieContext ctx = { &fake_api, NULL };
  DovekieMessageInfo info = { "INBOX", 0, (gint64) strlen (text) };
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;
  g_autoptr (GError) error = NULL;

  fake_reject = "EVIL-TOKEN";
  ck_assert (dovekie_module.save (&ctx, DOVEKIE_ORIGIN_DELIVERY, &info, (DovekieMessage *) &src,
                                  &verdict, &error));
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_REJECT);
  ck_assert_str_eq (verdict.reason, "refused for the test");
  ck_assert_int_ge (test_host_find (&host, "hook=save origin=delivery mailbox=\"INBOX\" verdict=reject"), 0);
  ck_assert_int_ge (test_host_find (&host, "V example: dovekie_example_saved origin=delivery verdict=reject"), 0);
  g_clear_pointer (&verdict.reason, g_free);

  /* Unset: nothing is refused. */
  fake_reject = NULL;
  src.pos = 0;
  verdict.kind = DOVEKIE_VERDICT_ACCEPT;
  ck_assert (dovekie_module.save (&ctx, DOVEKIE_ORIGIN_APPEND, &info, (DovekieMessage *) &src,
                                  &verdict, &error));
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_ge (test_host_find (&host, "hook=save origin=append mailbox=\"INBOX\" verdict=accept"), 0);
}
END_TEST

START_TEST (test_module_contract)
{
  ck_assert_uint_eq (dovekie_module.abi, DOVEKIE_MODULE_ABI);
  ck_assert_str_eq (dovekie_module.name, "example");
  /* Every declared setting's default passes its own validation. */
  for (guint i = 0; dovekie_module.settings[i].name != NULL; i++)
    {
      const DovekieSettingDef *def = &dovekie_module.settings[i];
      ck_assert (g_str_has_prefix (def->name, "dovekie_example_"));
      ck_assert (dovekie_setting_validate (def, def->default_value, NULL, NULL));
    }
}
END_TEST

static void
setup (void)
{
  host.lines = g_ptr_array_new_with_free_func (g_free);
}

static void
teardown (void)
{
  g_clear_pointer (&host.lines, g_ptr_array_unref);
}

int
main (void)
{
  Suite *s = suite_create ("dovekie-example");
  TCase *tc = tcase_create ("example");
  SRunner *runner;
  GString *big = g_string_new (NULL);
  int failed;

  /* "BOUNDARY" starts 3 bytes before the end of the first 64 KiB read. */
  while (big->len < 65536 - 3)
    g_string_append_c (big, 'a');
  g_string_append (big, "BOUNDARY and more");
  big_with_needle_at_boundary = g_string_free (big, FALSE);

  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_find, 0, G_N_ELEMENTS (find_cases));
  tcase_add_test (tc, test_find_read_error);
  tcase_add_test (tc, test_save_hook);
  tcase_add_test (tc, test_module_contract);
  suite_add_tcase (s, tc);
  runner = srunner_create (s);
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  g_free (big_with_needle_at_boundary);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
