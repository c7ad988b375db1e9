/* Unit tests for the query planner (dovekie-search-plan.c). */
#include "dovekie-config.h"

#include <check.h>
#include <string.h>

#include "dovekie-search-plan.h"

typedef struct {
  const gchar *needle;
  DovekieIndexScope scope;
  gboolean handled;
  gboolean definite;
  const gchar *terms; /* terms joined by '|' */
} PlanCase;

static const PlanCase plan_cases[] = {
  /* too short: Dovecot searches by itself */
  { "", DOVEKIE_INDEX_SCOPE_TEXT, FALSE, FALSE, "" },
  { "ab", DOVEKIE_INDEX_SCOPE_TEXT, FALSE, FALSE, "" },
  { "\xc3\xa9t", DOVEKIE_INDEX_SCOPE_BODY, FALSE, FALSE, "" },
  /* exactly three: one term, and the index proves it */
  { "abc", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, TRUE, "abc" },
  { "abc", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "abc" },
  { "abc", DOVEKIE_INDEX_SCOPE_HEADER, TRUE, FALSE, "abc" },
  { "a b", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, TRUE, "a b" },
  { "a b", DOVEKIE_INDEX_SCOPE_HEADER, FALSE, FALSE, "" },
  /* longer: sliding trigrams, candidates only */
  { "ternet", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, FALSE, "ter|ern|rne|net" },
  { "aaaaa", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, FALSE, "aaa" },
  { "hello world", DOVEKIE_INDEX_SCOPE_HEADER, TRUE, FALSE, "hel|ell|llo|wor|orl|rld" },
  /* code points, not bytes */
  { "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE,
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" },
  { "caf\xc3\xa9s", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE, "caf|af\xc3\xa9|f\xc3\xa9s" },
  /* control characters and invalid bytes split runs */
  { "ab\r\ncd", DOVEKIE_INDEX_SCOPE_TEXT, FALSE, FALSE, "" },
  { "abc\ndef", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, FALSE, "abc|def" },
  { "ab\xff" "cd", DOVEKIE_INDEX_SCOPE_TEXT, FALSE, FALSE, "" },
  { "abc\xff", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, FALSE, "abc" },
  /* quotes are kept in the term; the expression escapes them */
  { "a\"b", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, TRUE, "a\"b" },
};

START_TEST (test_plan_build)
{
  const PlanCase *c = &plan_cases[_i];
  DovekieSearchPlan plan;
  g_autofree gchar *joined = NULL;
  gboolean handled = dovekie_search_plan_build (c->needle, strlen (c->needle), c->scope, &plan);

  ck_assert_msg (handled == c->handled, "case %d (%s): handled", _i, c->needle);
  ck_assert_msg (plan.definite == c->definite, "case %d (%s): definite", _i, c->needle);
  g_ptr_array_add (plan.terms, NULL);
  joined = g_strjoinv ("|", (gchar **) plan.terms->pdata);
  ck_assert_str_eq (joined, c->terms);
  dovekie_search_plan_clear (&plan);
}
END_TEST

START_TEST (test_plan_max_terms)
{
  g_autoptr (GString) needle = g_string_new (NULL);
  DovekieSearchPlan plan;

  for (guint i = 0; i < 200; i++)
    g_string_append_c (needle, (gchar) ('a' + (i * 7) % 26));
  ck_assert (dovekie_search_plan_build (needle->str, needle->len, DOVEKIE_INDEX_SCOPE_TEXT,
                                        &plan));
  ck_assert_uint_eq (plan.terms->len, DOVEKIE_SEARCH_PLAN_MAX_TERMS);
  dovekie_search_plan_clear (&plan);
}
END_TEST

START_TEST (test_plan_match_expr)
{
  DovekieSearchPlan plan;
  g_autofree gchar *expr = NULL;

  ck_assert (dovekie_search_plan_build ("x\"yz", 4, DOVEKIE_INDEX_SCOPE_TEXT, &plan));
  expr = dovekie_search_plan_match_expr (&plan);
  ck_assert_str_eq (expr, "\"x\"\"y\" AND \"\"\"yz\"");
  dovekie_search_plan_clear (&plan);
}
END_TEST

START_TEST (test_is_separator)
{
  ck_assert (dovekie_search_is_separator ('\n', DOVEKIE_INDEX_SCOPE_TEXT));
  ck_assert (dovekie_search_is_separator (0x7f, DOVEKIE_INDEX_SCOPE_BODY));
  ck_assert (!dovekie_search_is_separator (' ', DOVEKIE_INDEX_SCOPE_TEXT));
  ck_assert (dovekie_search_is_separator (' ', DOVEKIE_INDEX_SCOPE_HEADER));
  ck_assert (!dovekie_search_is_separator (0x65e5, DOVEKIE_INDEX_SCOPE_HEADER));
}
END_TEST

static Suite *
plan_suite (void)
{
  Suite *s = suite_create ("dovekie-search-plan");
  TCase *tc;

  tc = tcase_create ("dovekie_search_plan_build");
  tcase_add_loop_test (tc, test_plan_build, 0, G_N_ELEMENTS (plan_cases));
  tcase_add_test (tc, test_plan_max_terms);
  suite_add_tcase (s, tc);
  tc = tcase_create ("dovekie_search_plan_match_expr");
  tcase_add_test (tc, test_plan_match_expr);
  suite_add_tcase (s, tc);
  tc = tcase_create ("dovekie_search_is_separator");
  tcase_add_test (tc, test_is_separator);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *runner = srunner_create (plan_suite ());
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? 0 : 1;
}
