/* Unit tests for setting validation: one table per type. */
#include "dovekie-config.h"

#include <stdlib.h>

#include "dovekie-test.h"

typedef struct {
  const gchar *value;
  gboolean ok;
  guint64 number;      /* when ok */
  const gchar *needle; /* in the error, when not ok */
} Case;

static const gchar *const modes[] = { "off", "unscanned", "always", NULL };

static const DovekieSettingDef def_uint = { "dovekie_t_uint", DOVEKIE_SETTING_UINT, "5", 1, 100, NULL, "" };
static const DovekieSettingDef def_size = { "dovekie_t_size", DOVEKIE_SETTING_SIZE, "1M", 0, G_GUINT64_CONSTANT (1) << 32, NULL, "" };
static const DovekieSettingDef def_bool = { "dovekie_t_bool", DOVEKIE_SETTING_BOOL, "no", 0, 1, NULL, "" };
static const DovekieSettingDef def_enum = { "dovekie_t_enum", DOVEKIE_SETTING_ENUM, "off", 0, 0, modes, "" };
static const DovekieSettingDef def_str = { "dovekie_t_str", DOVEKIE_SETTING_STRING, NULL, 0, 8, NULL, "" };

static const Case uint_cases[] = {
  { "1", TRUE, 1, NULL },
  { "100", TRUE, 100, NULL },
  { "0", FALSE, 0, "out of range (1..100)" },
  { "101", FALSE, 0, "out of range" },
  { "", FALSE, 0, "not a whole number" },
  { " 5", FALSE, 0, "not a whole number" },
  { "5 ", FALSE, 0, "not a whole number" },
  { "+5", FALSE, 0, "not a whole number" },
  { "-1", FALSE, 0, "not a whole number" },
  { "5k", FALSE, 0, "not a whole number" },
  { "0x10", FALSE, 0, "not a whole number" },
  { "18446744073709551616", FALSE, 0, "not a whole number" }, /* 2^64: overflow */
};

static const Case size_cases[] = {
  { "0", TRUE, 0, NULL },
  { "10", TRUE, 10, NULL },
  { "2k", TRUE, 2048, NULL },
  { "3M", TRUE, 3 << 20, NULL },
  { "4G", TRUE, G_GUINT64_CONSTANT (4) << 30, NULL },
  { "5G", FALSE, 0, "out of range" },
  { "1T", FALSE, 0, "optionally with k, M or G" },
  { "1kk", FALSE, 0, "not a whole number" },
  { "k", FALSE, 0, "not a whole number" },
  { "18014398509481984k", FALSE, 0, "not a whole number" }, /* overflows when scaled */
};

static const Case bool_cases[] = {
  { "yes", TRUE, 1, NULL }, { "true", TRUE, 1, NULL }, { "on", TRUE, 1, NULL }, { "1", TRUE, 1, NULL },
  { "no", TRUE, 0, NULL }, { "false", TRUE, 0, NULL }, { "off", TRUE, 0, NULL }, { "0", TRUE, 0, NULL },
  { "YES", FALSE, 0, "expected yes or no" }, { "", FALSE, 0, "expected yes or no" },
  { "2", FALSE, 0, "expected yes or no" },
};

static const Case enum_cases[] = {
  { "off", TRUE, 0, NULL }, { "unscanned", TRUE, 1, NULL }, { "always", TRUE, 2, NULL },
  { "Always", FALSE, 0, "expected one of off | unscanned | always" },
  { "", FALSE, 0, "expected one of" },
};

static const Case str_cases[] = {
  { "", TRUE, 0, NULL },
  { "12345678", TRUE, 0, NULL },
  { "123456789", FALSE, 0, "value longer than 8 bytes" },
  { "\xff\xfe", FALSE, 0, "not valid UTF-8" },
};

static void
run_case (const DovekieSettingDef *def, const Case *c)
{
  g_autoptr (GError) error = NULL;
  guint64 number = 12345;
  gboolean ok = dovekie_setting_validate (def, c->value, &number, &error);

  ck_assert_msg (ok == c->ok, "%s = '%s': expected %s (%s)", def->name, c->value,
                 c->ok ? "ok" : "error", error != NULL ? error->message : "");
  if (ok)
    {
      ck_assert_msg (number == c->number, "%s = '%s': got %" G_GUINT64_FORMAT, def->name,
                     c->value, number);
      return;
    }
  ck_assert (g_error_matches (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING));
  /* Every refusal names the setting, then says what is wrong. */
  ck_assert_msg (g_str_has_prefix (error->message, def->name), "%s", error->message);
  ck_assert_msg (strstr (error->message, c->needle) != NULL, "'%s' lacks '%s'",
                 error->message, c->needle);
}

START_TEST (test_uint) { run_case (&def_uint, &uint_cases[_i]); } END_TEST
START_TEST (test_size) { run_case (&def_size, &size_cases[_i]); } END_TEST
START_TEST (test_bool) { run_case (&def_bool, &bool_cases[_i]); } END_TEST
START_TEST (test_enum) { run_case (&def_enum, &enum_cases[_i]); } END_TEST
START_TEST (test_string) { run_case (&def_str, &str_cases[_i]); } END_TEST

/* Issue "fail closed": string minimums were declared but not enforced, so
 * an empty quarantine mailbox name was accepted. */
static const DovekieSettingDef def_str_min = { "dovekie_t_min", DOVEKIE_SETTING_STRING, "ab", 2, 4, NULL, "" };
static const Case str_min_cases[] = {
  { "", FALSE, 0, "dovekie_t_min = \"\": value shorter than 2 bytes" },
  { "a", FALSE, 0, "value shorter than 2 bytes" },
  { "ab", TRUE, 0, NULL },
  { "abcd", TRUE, 0, NULL },
  { "abcde", FALSE, 0, "value longer than 4 bytes" },
};
START_TEST (test_string_min) { run_case (&def_str_min, &str_min_cases[_i]); } END_TEST

START_TEST (test_null_value)
{
  g_autoptr (GError) error = NULL;

  /* An unset string with no default is allowed; an unset number is not. */
  ck_assert (dovekie_setting_validate (&def_str, NULL, NULL, NULL));
  ck_assert (!dovekie_setting_validate (&def_uint, NULL, NULL, &error));
  ck_assert (strstr (error->message, "dovekie_t_uint: no value and no default") != NULL);
}
END_TEST

static Suite *
settings_suite (void)
{
  Suite *s = suite_create ("dovekie-settings");
  TCase *tc;

  tc = tcase_create ("validate");
  tcase_add_loop_test (tc, test_uint, 0, G_N_ELEMENTS (uint_cases));
  tcase_add_loop_test (tc, test_size, 0, G_N_ELEMENTS (size_cases));
  tcase_add_loop_test (tc, test_bool, 0, G_N_ELEMENTS (bool_cases));
  tcase_add_loop_test (tc, test_enum, 0, G_N_ELEMENTS (enum_cases));
  tcase_add_loop_test (tc, test_string, 0, G_N_ELEMENTS (str_cases));
  tcase_add_loop_test (tc, test_string_min, 0, G_N_ELEMENTS (str_min_cases));
  tcase_add_test (tc, test_null_value);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *runner = srunner_create (settings_suite ());
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
