/* Unit tests for dovekie_log_quote (log-quote.h). */
#include "dovekie-config.h"

#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "dovekie/log-quote.h"

typedef struct {
  const gchar *text;
  const gchar *quoted;
} QuoteCase;

/* Bug: log fields were printed bare, so a mailbox named
 * "x result=clean" forged a result field and a name with a line feed
 * started a forged log line. */
static const QuoteCase quote_cases[] = {
  { NULL, "\"\"" },
  { "", "\"\"" },
  { "INBOX", "\"INBOX\"" },
  { "x result=clean", "\"x result=clean\"" },
  { "a=b", "\"a=b\"" },
  { "say \"hi\"", "\"say \\\"hi\\\"\"" },
  { "back\\slash", "\"back\\\\slash\"" },
  { "\\\"", "\"\\\\\\\"\"" },
  { "line\nforged=1", "\"line\\nforged=1\"" },
  { "cr\rlf", "\"cr\\rlf\"" },
  { "tab\there", "\"tab\\there\"" },
  { "bell\a", "\"bell\\x07\"" },
  { "esc\x1b[31m", "\"esc\\x1b[31m\"" },
  { "del\x7f", "\"del\\x7f\"" },
  { "c1\xc2\x85nel", "\"c1\\xc2\\x85nel\"" },
  { "caf\xc3\xa9", "\"caf\xc3\xa9\"" },
  { "\xe2\x82\xac 5", "\"\xe2\x82\xac 5\"" },
  { "bad\xff", "\"bad\\xff\"" },
  { "cut\xc3", "\"cut\\xc3\"" },
  { "overlong\xc0\xaf", "\"overlong\\xc0\\xaf\"" },
};

START_TEST (test_quote)
{
  const QuoteCase *c = &quote_cases[_i];
  g_autofree gchar *quoted = dovekie_log_quote (c->text);

  ck_assert_msg (g_strcmp0 (quoted, c->quoted) == 0, "case %d: got %s, want %s", _i, quoted,
                 c->quoted);
}
END_TEST

/* Bug: a long header excerpt made an unbounded log line. */
START_TEST (test_quote_bound)
{
  g_autofree gchar *exact = g_strnfill (DOVEKIE_LOG_QUOTE_MAX, 'a');
  g_autofree gchar *longer = g_strnfill (DOVEKIE_LOG_QUOTE_MAX + 1, 'a');
  g_autofree gchar *quoted_exact = dovekie_log_quote (exact);
  g_autofree gchar *quoted_longer = dovekie_log_quote (longer);
  g_autofree gchar *want_longer = g_strdup_printf ("\"%s...\"", exact);

  ck_assert_uint_eq (strlen (quoted_exact), DOVEKIE_LOG_QUOTE_MAX + 2);
  ck_assert_str_eq (quoted_longer, want_longer);
}
END_TEST

/* A cut never splits a UTF-8 character: 79 ASCII bytes, then two-byte
 * characters, is cut after the first of them. */
START_TEST (test_quote_bound_utf8)
{
  g_autoptr (GString) text = g_string_new (NULL);
  g_autofree gchar *quoted = NULL;
  g_autofree gchar *want = NULL;
  g_autofree gchar *ascii = g_strnfill (DOVEKIE_LOG_QUOTE_MAX - 1, 'a');

  g_string_append (text, ascii);
  for (guint i = 0; i < 4; i++)
    g_string_append (text, "\xc3\xa9");
  quoted = dovekie_log_quote (text->str);
  want = g_strdup_printf ("\"%s\xc3\xa9...\"", ascii);
  ck_assert_str_eq (quoted, want);
  ck_assert (g_utf8_validate (quoted, -1, NULL));
}
END_TEST

/* Escaped characters count once against the bound, so the output stays
 * bounded: at most four bytes out per byte in. */
START_TEST (test_quote_bound_escaped)
{
  g_autofree gchar *controls = g_strnfill (1000, '\x01');
  g_autofree gchar *quoted = dovekie_log_quote (controls);

  ck_assert_uint_eq (strlen (quoted), 1 + 4 * DOVEKIE_LOG_QUOTE_MAX + 3 + 1);
  ck_assert (g_str_has_suffix (quoted, "\\x01...\""));
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("dovekie-log-quote");
  TCase *tc = tcase_create ("log_quote");
  SRunner *runner;
  int failed;

  tcase_add_loop_test (tc, test_quote, 0, G_N_ELEMENTS (quote_cases));
  tcase_add_test (tc, test_quote_bound);
  tcase_add_test (tc, test_quote_bound_utf8);
  tcase_add_test (tc, test_quote_bound_escaped);
  suite_add_tcase (s, tc);
  runner = srunner_create (s);
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
