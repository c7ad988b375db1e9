/* Unit tests for the query planner (dovekie-search-plan.c). */
#include "dovekie-config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dovekie-search-plan.h"

typedef struct {
  const gchar *needle;
  DovekieIndexScope scope;
  gboolean handled;
  gboolean definite;
  /* runs joined by '|', each as prefix (or "~") "/" grams joined by ','
   * ("*" after a gram asked as a prefix), "+" trigrams joined by ',', then
   * "|[boundary]" for each boundary term, then "|{term}" for each
   * character term */
  const gchar *runs;
} PlanCase;

static const PlanCase plan_cases[] = {
  /* too short, ASCII letters and digits: Dovecot searches by itself */
  { "", DOVEKIE_INDEX_SCOPE_TEXT, FALSE, FALSE, "" },

  { " ", DOVEKIE_INDEX_SCOPE_BODY, FALSE, FALSE, "" },
  { "\t\n", DOVEKIE_INDEX_SCOPE_BODY, FALSE, FALSE, "" },
  { "\xff", DOVEKIE_INDEX_SCOPE_BODY, FALSE, FALSE, "" },
  /* U+FFFD: the index's stand-in for invalid UTF-8 (test_search_robust.py
   * found a message Dovecot does not match with it), no character term */
  { "\xef\xbf\xbd", DOVEKIE_INDEX_SCOPE_BODY, FALSE, FALSE, "" },
  { "a\xef\xbf\xbd", DOVEKIE_INDEX_SCOPE_BODY, FALSE, FALSE, "" },
  /* no run of three word code points, no boundary, no character term */
  { "a b", DOVEKIE_INDEX_SCOPE_HEADER, FALSE, FALSE, "" },
  { "a  b", DOVEKIE_INDEX_SCOPE_TEXT, FALSE, FALSE, "" },
  { "ab\r\ncd", DOVEKIE_INDEX_SCOPE_TEXT, FALSE, FALSE, "" },
  { "ab\xff" "cd", DOVEKIE_INDEX_SCOPE_TEXT, FALSE, FALSE, "" },
  /* two ASCII word characters: a run of two (schema 8) */
  { "ab", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, TRUE, "ab/#ab*" },
  { "zx", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "zx/#zx*" },
  { "zx", DOVEKIE_INDEX_SCOPE_HEADER, TRUE, FALSE, "zx/#zx*" },
  { "z-", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "z-/#z-*" },
  /* one character, or a pair with a non-word character: proven by its
   * character term (issue 20), except in a header */
  { "%", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "{!%}" },
  { "z", DOVEKIE_INDEX_SCOPE_SUBJECT, TRUE, TRUE, "{!z}" },
  { "\xc3\xa9", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, TRUE, "{!\xc3\xa9}" },
  { "\"", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "{!\"}" },
  { "!", DOVEKIE_INDEX_SCOPE_HEADER, TRUE, FALSE, "{!!}" },
  { "$$", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "{!$$}" },
  { "$1", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "{!$1}" },
  { "\xc3\xa9.", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "{!\xc3\xa9.}" },
  /* a pair with a non-ASCII code point is a term too; two ASCII word
   * characters are not */
  { "\xc3\xa9t", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "{!\xc3\xa9t}" },
  { "e\xcc\x81", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "{!e\xcc\x81}" },
  { "\xe4\xb8\xad\xe6\x96\x87", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE,
    "{!\xe4\xb8\xad\xe6\x96\x87}" },
  /* non-ASCII code points narrow a needle without runs */
  { "\xe4\xb8\xad\xe6\x96\x87\n\xe6\x96\x87\xe4\xb8\xad", DOVEKIE_INDEX_SCOPE_BODY, TRUE,
    FALSE, "{!\xe4\xb8\xad}|{!\xe4\xb8\xad\xe6\x96\x87}|{!\xe6\x96\x87}|"
    "{!\xe6\x96\x87\xe4\xb8\xad}" },
  /* three code points none of which is a word character: proven by
   * their triple term (schema 9), except in a header */
  { "$$$", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "{!$$$}" },
  { "://", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "{!://}" },
  { "...", DOVEKIE_INDEX_SCOPE_SUBJECT, TRUE, TRUE, "{!...}" },
  { "...", DOVEKIE_INDEX_SCOPE_HEADER, TRUE, FALSE, "{!...}" },
  { ". .", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE, "{!.}" },
  { "=20", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE, "{!=}|{!=2}" },
  { ".\xc3\xa9.", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE,
    "{!.}|{!.\xc3\xa9}|{!\xc3\xa9}|{!\xc3\xa9.}" },
  /* longer: the triples, the pairs and the non-word characters narrow */
  { "$$$$", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE, "{!$}|{!$$}|{!$$$}" },
  { "a\"b", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, FALSE, "{!a\"}|{!\"}|{!\"b}" },
  { "$ 5", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE, "{!$}" },
  { "http://www.", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE,
    "http/#http+#htt,#ttp|www/#www*|{!p:}|{!:}|{!:/}|{!/}|{!://}|{!//}|{!/w}|{!w.}" },
  /* one boundary term: proven */
  { "a b", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, TRUE, "[a b]" },
  { "\xc3\xa9 \xe6\x97\xa5", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "[\xc3\xa9 \xe6\x97\xa5]|{!\xc3\xa9}|{!\xe6\x97\xa5}" },
  { "ab c", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE, "[b c]" },
  /* fuzz-search-plan: a stray continuation byte after the right word was
   * taken into the boundary term (invalid UTF-8) */
  { "ab c\x80", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE, "[b c]" },
  { "ab c.", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE, "[b c]|{!c.}|{!.}" },
  /* one run of at most DOVEKIE_SEARCH_WORD_BYTES: proven */
  { "abc", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, TRUE, "abc/#abc*" },
  { "abc", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "abc/#abc*" },
  { "mone", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE, "mone/#mone+#mon,#one" },
  { "ternet", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, TRUE,
    "ternet/#tern,#erne,#rnet+#ter,#ern,#rne,#net" },
  { "e-mail", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE,
    "e-mail/#e-ma,#-mai,#mail+#e-m,#-ma,#mai,#ail" },
  { "abcdefghijklmnopqrst", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE,
    "abcdefghijklmnopqrst/#abcd,#defg,#ghij,#jklm,#mnop,#qrst+#abc,#def,#ghi,#klm,#nop,#rst" },
  /* code points, not bytes */
  { "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE,
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e/#\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e*|"
    "{!\xe6\x97\xa5\xe6\x9c\xac}|{!\xe6\x9c\xac\xe8\xaa\x9e}" },
  { "caf\xc3\xa9s", DOVEKIE_INDEX_SCOPE_BODY, TRUE, TRUE,
    "caf\xc3\xa9s/#caf\xc3\xa9,#af\xc3\xa9s+#caf,#af\xc3\xa9,#f\xc3\xa9s|{!f\xc3\xa9}|{!\xc3\xa9s}" },
  /* never proven in a header, whose text is not stored verbatim */
  { "abc", DOVEKIE_INDEX_SCOPE_HEADER, TRUE, FALSE, "abc/#abc*" },
  /* the keyed fields are (what SUBJECT, FROM... compare, as stored) */
  { "abc", DOVEKIE_INDEX_SCOPE_SUBJECT, TRUE, TRUE, "abc/#abc*" },
  { "a b", DOVEKIE_INDEX_SCOPE_FROM, TRUE, TRUE, "[a b]" },
  { "ternet", DOVEKIE_INDEX_SCOPE_BCC, TRUE, TRUE,
    "ternet/#tern,#erne,#rnet+#ter,#ern,#rne,#net" },
  /* longer than a short word: grams only */
  { "abcdefghijklmnopqrstuvwxy", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE,
    "~/#abcd,#efgh,#ijkl,#mnop,#qrst,#vwxy+#abc,#efg,#ijk,#nop,#rst,#wxy" },
  /* separators: several runs (too short ones dropped), candidates only */
  { "click here", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE,
    "click/#clic,#lick+#cli,#lic,#ick|here/#here+#her,#ere|[k h]" },
  { "click here", DOVEKIE_INDEX_SCOPE_HEADER, TRUE, FALSE,
    "click/#clic,#lick+#cli,#lic,#ick|here/#here+#her,#ere" },
  { "click here", DOVEKIE_INDEX_SCOPE_SUBJECT, TRUE, FALSE,
    "click/#clic,#lick+#cli,#lic,#ick|here/#here+#her,#ere|[k h]" },
  { "of the", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE, "the/#the*|[f t]" },
  { "a, the", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE, "the/#the*|{!a,}|{!,}" },
  { "x.yz@abc", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, FALSE,
    "abc/#abc*|{!x.}|{!.}|{!.y}|{!z@}|{!@}|{!@a}" },
  { "abc\ndef", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, FALSE, "abc/#abc*|def/#def*" },
  { "abc\xff", DOVEKIE_INDEX_SCOPE_TEXT, TRUE, FALSE, "abc/#abc*" },
  /* at most DOVEKIE_SEARCH_PLAN_MAX_RUNS character terms */
  { "..........", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE, "{!.}|{!..}|{!...}" },
  { "!#$%&()*+,", DOVEKIE_INDEX_SCOPE_BODY, TRUE, FALSE,
    "{!!}|{!!#}|{!#}|{!!#$}|{!#$}|{!$}|{!#$%}|{!$%}" },
};

static gchar *
runs_string (const DovekieSearchPlan *plan)
{
  GString *out = g_string_new (NULL);

  for (guint i = 0; i < plan->runs->len; i++)
    {
      const DovekieSearchRun *run = g_ptr_array_index (plan->runs, i);

      if (i > 0)
        g_string_append_c (out, '|');
      g_string_append (out, run->prefix != NULL ? run->prefix : "~");
      g_string_append_c (out, '/');
      for (guint j = 0; j < run->grams->len; j++)
        {
          if (j > 0)
            g_string_append_c (out, ',');
          g_string_append (out, g_ptr_array_index (run->grams, j));
        }
      if (run->gram_is_prefix)
        g_string_append_c (out, '*');
      for (guint j = 0; j < run->trigrams->len; j++)
        {
          g_string_append_c (out, j == 0 ? '+' : ',');
          g_string_append (out, g_ptr_array_index (run->trigrams, j));
        }
    }
  for (guint i = 0; i < plan->boundaries->len; i++)
    g_string_append_printf (out, "%s[%s]", out->len > 0 ? "|" : "",
                            (const gchar *) g_ptr_array_index (plan->boundaries, i));
  for (guint i = 0; i < plan->chars->len; i++)
    g_string_append_printf (out, "%s{%s}", out->len > 0 ? "|" : "",
                            (const gchar *) g_ptr_array_index (plan->chars, i));
  return g_string_free (out, FALSE);
}

START_TEST (test_plan_build)
{
  const PlanCase *c = &plan_cases[_i];
  DovekieSearchPlan plan;
  g_autofree gchar *runs = NULL;
  gboolean handled = dovekie_search_plan_build (c->needle, strlen (c->needle), c->scope, &plan);

  ck_assert_msg (handled == c->handled, "case %d (%s): handled", _i, c->needle);
  ck_assert_msg (plan.definite == c->definite, "case %d (%s): definite", _i, c->needle);
  runs = runs_string (&plan);
  ck_assert_str_eq (runs, c->runs);
  dovekie_search_plan_clear (&plan);
}
END_TEST

START_TEST (test_plan_max_runs)
{
  g_autoptr (GString) needle = g_string_new (NULL);
  DovekieSearchPlan plan;

  for (guint i = 0; i < 50; i++)
    g_string_append_printf (needle, "w%03u ", i);
  ck_assert (dovekie_search_plan_build (needle->str, needle->len, DOVEKIE_INDEX_SCOPE_TEXT,
                                        &plan));
  ck_assert_uint_eq (plan.runs->len, DOVEKIE_SEARCH_PLAN_MAX_RUNS);
  ck_assert_uint_eq (plan.boundaries->len, DOVEKIE_SEARCH_PLAN_MAX_RUNS);
  ck_assert (!plan.definite);
  dovekie_search_plan_clear (&plan);
}
END_TEST

/* Gives run `i` of `plan` the words of `words` ('|'-joined), or `count`
 * generated ones when `words` is NULL. */
static void
set_words (DovekieSearchPlan *plan, guint i, const gchar *words, guint count)
{
  DovekieSearchRun *run = g_ptr_array_index (plan->runs, i);

  g_ptr_array_set_size (run->words, 0);
  if (words != NULL)
    {
      g_auto (GStrv) split = g_strsplit (words, "|", -1);

      for (guint j = 0; split[j] != NULL; j++)
        g_ptr_array_add (run->words, g_strdup (split[j]));
      return;
    }
  for (guint j = 0; j < count; j++)
    g_ptr_array_add (run->words, g_strdup_printf ("%sx%u", run->prefix, j));
}

/* The expressions of `exprs`, joined by " || ". */
static gchar *
join_exprs (GPtrArray *exprs)
{
  GString *out = g_string_new (NULL);

  for (guint i = 0; i < exprs->len; i++)
    g_string_append_printf (out, "%s%s", i > 0 ? " || " : "",
                            (const gchar *) g_ptr_array_index (exprs, i));
  g_ptr_array_unref (exprs);
  return g_string_free (out, FALSE);
}

START_TEST (test_plan_match_exprs)
{
  DovekieSearchPlan plan;
  g_autofree gchar *expr = NULL;
  g_autofree gchar *unfound = NULL;
  g_autofree gchar *rest = NULL;
  g_autofree gchar *wide = NULL;
  g_autofree gchar *only_wide = NULL;
  g_autoptr (GPtrArray) parts = NULL;

  ck_assert (dovekie_search_plan_build ("click here", 10, DOVEKIE_INDEX_SCOPE_BODY, &plan));
  set_words (&plan, 0, "click|doubleclick", 0);
  set_words (&plan, 1, "here|where", 0);
  expr = join_exprs (dovekie_search_plan_match_exprs (&plan));
  ck_assert_str_eq (expr, "((\"click\" OR \"doubleclick\") OR (\"#clic\" AND \"#lick\") OR "
                          "(\"#cli\" AND \"#lic\" AND \"#ick\")) AND "
                          "((\"here\" OR \"where\") OR (\"#here\") OR (\"#her\" AND \"#ere\")) "
                          "AND \"k h\"");
  /* no word holds the run: only long words may */
  set_words (&plan, 1, NULL, 0);
  unfound = join_exprs (dovekie_search_plan_match_exprs (&plan));
  ck_assert_str_eq (unfound, "((\"click\" OR \"doubleclick\") OR (\"#clic\" AND \"#lick\") OR "
                             "(\"#cli\" AND \"#lic\" AND \"#ick\")) AND "
                             "((\"#here\") OR (\"#her\" AND \"#ere\")) AND \"k h\"");
  /* a run in too many words is left out of the AND */
  set_words (&plan, 0, NULL, DOVEKIE_SEARCH_PLAN_EXPR_WORDS + 1);
  set_words (&plan, 1, "here", 0);
  wide = join_exprs (dovekie_search_plan_match_exprs (&plan));
  ck_assert_str_eq (wide, "((\"here\") OR (\"#here\") OR (\"#her\" AND \"#ere\")) AND \"k h\"");
  dovekie_search_plan_clear (&plan);

  /* definite: what the proof leaves */
  ck_assert (dovekie_search_plan_build ("money", 5, DOVEKIE_INDEX_SCOPE_BODY, &plan));
  set_words (&plan, 0, "money", 0);
  rest = join_exprs (dovekie_search_plan_match_exprs (&plan));
  ck_assert_str_eq (rest, "((\"#mone\" AND \"#oney\") OR (\"#mon\" AND \"#one\" AND \"#ney\"))");
  dovekie_search_plan_clear (&plan);

  /* nothing but a run in too many words: its words in parts, its grams */
  ck_assert (dovekie_search_plan_build ("money", 5, DOVEKIE_INDEX_SCOPE_HEADER, &plan));
  set_words (&plan, 0, NULL, DOVEKIE_SEARCH_PLAN_EXPR_WORDS + 3);
  parts = dovekie_search_plan_match_exprs (&plan);
  ck_assert_uint_eq (parts->len, 3);
  ck_assert_str_eq (g_ptr_array_index (parts, 1), "(\"moneyx256\" OR \"moneyx257\" OR \"moneyx258\")");
  ck_assert_str_eq (g_ptr_array_index (parts, 2),
                    "(\"#mone\" AND \"#oney\") OR (\"#mon\" AND \"#one\" AND \"#ney\")");
  only_wide = g_strdup (g_ptr_array_index (parts, 0));
  ck_assert (g_str_has_prefix (only_wide, "(\"moneyx0\" OR \"moneyx1\" OR "));
  ck_assert (g_str_has_suffix (only_wide, " OR \"moneyx255\")"));
  dovekie_search_plan_clear (&plan);
}
END_TEST

typedef struct {
  const gchar *needle;
  const gchar *words; /* of the first run, '|'-joined; NULL: none */
  const gchar *proof; /* expressions joined by " || "; "" for none */
  gboolean complete;
} ProofCase;

static const ProofCase proof_cases[] = {
  { "abc", "abc|xabcx", "(\"abc\" OR \"xabcx\") || (\"#abc\" *)", TRUE },
  { "abc", NULL, "(\"#abc\" *)", TRUE },
  { "mone", "money", "(\"money\") || (\"#mone\")", FALSE },
  { "money", "money|moneys", "(\"money\" OR \"moneys\")", FALSE },
  { "money", NULL, "", FALSE },
  { "click here", "click", "", FALSE },
  { "abcdefghijklmnopqrstu", NULL, "", FALSE },
  { "a b", NULL, "\"a b\"", TRUE },
  { "%", NULL, "\"!%\"", TRUE },
  { "$$", NULL, "\"!$$\"", TRUE },
  { "://", NULL, "\"!://\"", TRUE },
  { "\"", NULL, "\"!\"\"\"", TRUE },
};

START_TEST (test_plan_proof_exprs)
{
  const ProofCase *c = &proof_cases[_i];
  DovekieSearchPlan plan;
  g_autofree gchar *proof = NULL;

  ck_assert (dovekie_search_plan_build (c->needle, strlen (c->needle), DOVEKIE_INDEX_SCOPE_BODY,
                                        &plan));
  if (c->words != NULL)
    set_words (&plan, 0, c->words, 0);
  proof = join_exprs (dovekie_search_plan_proof_exprs (&plan));
  ck_assert_str_eq (proof, c->proof);
  ck_assert (dovekie_search_plan_proof_is_complete (&plan) == c->complete);
  dovekie_search_plan_clear (&plan);
}
END_TEST

/* A run in more words than one expression takes is proven in parts. */
START_TEST (test_plan_proof_parts)
{
  DovekieSearchPlan plan;
  g_autoptr (GPtrArray) parts = NULL;

  ck_assert (dovekie_search_plan_build ("money", 5, DOVEKIE_INDEX_SCOPE_BODY, &plan));
  set_words (&plan, 0, NULL, 2 * DOVEKIE_SEARCH_PLAN_EXPR_WORDS + 1);
  parts = dovekie_search_plan_proof_exprs (&plan);
  ck_assert_uint_eq (parts->len, 3);
  ck_assert_str_eq (g_ptr_array_index (parts, 2), "(\"moneyx512\")");
  dovekie_search_plan_clear (&plan);
}
END_TEST

typedef struct {
  const gchar *text;
  const gchar *terms; /* joined by '|' */
} TermsCase;

static const TermsCase terms_cases[] = {
  { "", "" },
  /* two code points: a short word too (schema 8) */
  { "ab, c. de", "ab|de" },
  { "abc", "abc" },
  /* one space between words: a boundary term */
  { "cde-f x", "cde-f|f x" },
  { "ab  cd", "ab|cd" },
  { "ab\tcd", "ab|cd" },
  { "\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", "\xc3\xa9 \xe6\x97\xa5|\xe6\x97\xa5\xe6\x9c\xac" },
  { "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9ex", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9ex" },
  /* every occurrence, in text order */
  { "abc x abc", "abc|c x|x a|abc" },
  { "a@bcd.efg", "bcd|efg" },
  /* DOVEKIE_SEARCH_WORD_BYTES: the word itself */
  { "abcdefghijklmnopqrst", "abcdefghijklmnopqrst" },
  /* one byte longer: marked 4-grams, and the last three and two code
   * points */
  { "abcdefghijklmnopqrstu",
    "#abcd|#bcde|#cdef|#defg|#efgh|#fghi|#ghij|#hijk|#ijkl|#jklm|#klmn|#lmno|#mnop|#nopq|"
    "#opqr|#pqrs|#qrst|#rstu|#stu|#tu" },
  { "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
    "#\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9|#\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9|"
    "#\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9|#\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9|"
    "#\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9|#\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9|"
    "#\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9|#\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9|"
    "#\xc3\xa9\xc3\xa9\xc3\xa9|#\xc3\xa9\xc3\xa9" },
};

/* Collects the terms but the character terms (those of chars_cases). */
static gboolean
collect_term (gpointer data, const gchar *term, gsize len)
{
  GString *out = data;

  if (term[0] == DOVEKIE_SEARCH_CHAR_MARK)
    return TRUE;
  if (out->len > 0)
    g_string_append_c (out, '|');
  g_string_append_len (out, term, (gssize) len);
  return TRUE;
}

static const TermsCase chars_cases[] = {
  { "", "" },
  { " \t\r\n", "" },
  { "ab", "!a|!b" },
  /* pairs with a non-word character; never across white space */
  { "a.b c", "!a|!.|!a.|!b|!.b|!c" },
  { "$$ $", "!$|!$|!$$|!$" },
  /* and triples of non-word characters (schema 9) */
  { "a...b", "!a|!.|!a.|!.|!..|!.|!..|!...|!b|!.b" },
  { "$$$$ ://", "!$|!$|!$$|!$|!$$|!$$$|!$|!$$|!$$$|!:|!/|!:/|!/|!//|!://" },
  { "\xc3\xa9!", "!\xc3\xa9|!!|!\xc3\xa9!" },
  /* and pairs with a non-ASCII code point */
  { "ab\xc3\xa9" "c", "!a|!b|!\xc3\xa9|!b\xc3\xa9|!c|!\xc3\xa9" "c" },
  /* an invalid byte is no code point and breaks a pair */
  { ".\xff.", "!.|!." },
  { ".\xef\xbf\xbd.", "!.|!." },
  /* a long word too: every code point */
  { "abcdefghijklmnopqrstu.",
    "!a|!b|!c|!d|!e|!f|!g|!h|!i|!j|!k|!l|!m|!n|!o|!p|!q|!r|!s|!t|!u|!.|!u." },
};

/* Collects the character terms only. */
static gboolean
collect_char_term (gpointer data, const gchar *term, gsize len)
{
  GString *out = data;

  if (term[0] != DOVEKIE_SEARCH_CHAR_MARK)
    return TRUE;
  if (out->len > 0)
    g_string_append_c (out, '|');
  g_string_append_len (out, term, (gssize) len);
  return TRUE;
}

START_TEST (test_terms_foreach_chars)
{
  const TermsCase *c = &chars_cases[_i];
  g_autoptr (GString) out = g_string_new (NULL);

  ck_assert (dovekie_search_terms_foreach (c->text, strlen (c->text), collect_char_term, out));
  ck_assert_str_eq (out->str, c->terms);
}
END_TEST

static gboolean
stop_after_one (gpointer data, const gchar *term, gsize len)
{
  (void) term;
  (void) len;
  (*(guint *) data)++;
  return FALSE;
}

START_TEST (test_terms_foreach)
{
  const TermsCase *c = &terms_cases[_i];
  g_autoptr (GString) out = g_string_new (NULL);

  ck_assert (dovekie_search_terms_foreach (c->text, strlen (c->text), collect_term, out));
  ck_assert_str_eq (out->str, c->terms);
}
END_TEST

static gboolean
collect_distinct (gpointer data, const gchar *term, gsize len)
{
  g_hash_table_add (data, g_strndup (term, len));
  return TRUE;
}

static gint
compare_terms (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const gchar *const *) a, *(const gchar *const *) b);
}

/* The distinct terms of `text`, sorted, joined by '|'. */
static gchar *
distinct_terms (const gchar *text, gboolean unique)
{
  g_autoptr (GHashTable) set = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autofree gchar **keys = NULL;
  guint n = 0;

  if (unique)
    ck_assert (dovekie_search_terms_foreach_unique (text, strlen (text), collect_distinct, set));
  else
    ck_assert (dovekie_search_terms_foreach (text, strlen (text), collect_distinct, set));
  keys = (gchar **) g_hash_table_get_keys_as_array (set, &n);
  qsort (keys, n, sizeof (gchar *), compare_terms);
  return g_strjoinv ("|", keys);
}

static const gchar *const unique_texts[] = {
  "abcd x abcd",
  "a b a b \xc3\xa9 \xe6\x97\xa5 \xc3\xa9 \xe6\x97\xa5 b a",
  "the cat and the hat and the bat",
  "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e x",
  "abcdefghijklmnopqrstuvwxyz, abcdefghijklmnopqrstuvwxyz abc",
  "abc abcd bcd abc",
  "$$$ $$ a.b. a.b. \xc3\xa9! \xc3\xa9!",
};

START_TEST (test_terms_foreach_unique)
{
  const gchar *text = unique_texts[_i];
  g_autofree gchar *all = distinct_terms (text, FALSE);
  g_autofree gchar *unique = distinct_terms (text, TRUE);

  ck_assert_str_eq (unique, all);
}
END_TEST

START_TEST (test_terms_foreach_unique_repeats)
{
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (GString) big = g_string_new (NULL);
  g_autofree gchar *all = NULL;
  g_autofree gchar *unique = NULL;

  /* a repeated word or boundary gives its term once */
  ck_assert (dovekie_search_terms_foreach_unique ("abcd x abcd x abcd", 18, collect_term, out));
  ck_assert_str_eq (out->str, "abcd|d x|x a");
  /* more distinct words than the set holds: still every term */
  for (guint i = 0; i < 40000; i++)
    g_string_append_printf (big, "w%05u ", i % 30000);
  all = distinct_terms (big->str, FALSE);
  unique = distinct_terms (big->str, TRUE);
  ck_assert_str_eq (unique, all);
  /* more distinct boundaries than their set holds (2,000 CJK code points
   * each ending a word and starting the next), twice over */
  g_string_truncate (big, 0);
  for (guint i = 0; i < 4000; i++)
    {
      g_string_append_unichar (big, 0x4e00 + i % 2000);
      g_string_append (big, "x");
      g_string_append_unichar (big, 0x4e00 + (i + 1) % 2000);
      g_string_append_c (big, ' ');
    }
  g_free (all);
  g_free (unique);
  all = distinct_terms (big->str, FALSE);
  unique = distinct_terms (big->str, TRUE);
  ck_assert_str_eq (unique, all);
}
END_TEST

/* Counts the terms but the character terms. */
static gboolean
count_term (gpointer data, const gchar *term, gsize len)
{
  (void) len;
  if (term[0] != DOVEKIE_SEARCH_CHAR_MARK)
    (*(guint *) data)++;
  return TRUE;
}

/* The grams of long words are given once per text: a 3000-byte word of
 * "abcdefg" repeated has 7 distinct trigrams and the pair of its end, a
 * 100-byte one 7 4-grams and the trigram and the pair of its end; the distinct terms are those of the plain walk,
 * also with multibyte code points and more grams than the set holds. */
START_TEST (test_terms_foreach_unique_grams)
{
  g_autoptr (GString) word = g_string_new (NULL);
  g_autoptr (GString) mixed = g_string_new (NULL);
  g_autoptr (GString) random = g_string_new (NULL);
  GRand *rand = g_rand_new_with_seed (7);
  guint calls = 0;

  while (word->len < 3000)
    g_string_append (word, "abcdefg");
  ck_assert (dovekie_search_terms_foreach_unique (word->str, word->len, count_term, &calls));
  ck_assert_uint_eq (calls, 8);
  calls = 0;
  ck_assert (dovekie_search_terms_foreach_unique (word->str, 100, count_term, &calls));
  ck_assert_uint_eq (calls, 9);
  for (guint i = 0; i < 400; i++)
    g_string_append (mixed, i % 3 == 0 ? "\xc3\xa9" : i % 3 == 1 ? "\xe6\x97\xa5" : "q");
  g_string_append (mixed, " ");
  g_string_append_len (mixed, word->str, 90);
  /* words of 200 random letters and digits: 300k 4-grams, nearly all
   * distinct, more than the largest set keeps */
  for (guint i = 1; i <= 300000; i++)
    g_string_append_c (random, i % 201 == 0 ? ' ' : "abcdefghijklmnopqrstuvwxyz0123456789"
                                                    [g_rand_int_range (rand, 0, 36)]);
  g_rand_free (rand);
  for (guint i = 0; i < 3; i++)
    {
      const gchar *text = i == 0 ? word->str : i == 1 ? mixed->str : random->str;
      g_autofree gchar *all = distinct_terms (text, FALSE);
      g_autofree gchar *unique = distinct_terms (text, TRUE);

      ck_assert_str_eq (unique, all);
    }
}
END_TEST

START_TEST (test_terms_foreach_stops)
{
  guint calls = 0;

  ck_assert (!dovekie_search_terms_foreach ("abcd efgh", 9, stop_after_one, &calls));
  ck_assert_uint_eq (calls, 1);
}
END_TEST

START_TEST (test_is_word_char)
{
  ck_assert (dovekie_search_is_word_char ('a'));
  ck_assert (dovekie_search_is_word_char ('Z'));
  ck_assert (dovekie_search_is_word_char ('7'));
  ck_assert (dovekie_search_is_word_char ('-'));
  ck_assert (dovekie_search_is_word_char ('_'));
  ck_assert (dovekie_search_is_word_char (0xe9));
  ck_assert (dovekie_search_is_word_char (0x65e5));
  ck_assert (dovekie_search_is_word_char (0x10ffff));
  ck_assert (!dovekie_search_is_word_char (' '));
  ck_assert (!dovekie_search_is_word_char ('.'));
  ck_assert (!dovekie_search_is_word_char ('@'));
  ck_assert (!dovekie_search_is_word_char ('"'));
  ck_assert (!dovekie_search_is_word_char (DOVEKIE_SEARCH_GRAM_MARK));
  ck_assert (!dovekie_search_is_word_char ('\0'));
}
END_TEST

static Suite *
plan_suite (void)
{
  Suite *s = suite_create ("dovekie-search-plan");
  TCase *tc;

  tc = tcase_create ("dovekie_search_plan_build");
  tcase_add_loop_test (tc, test_plan_build, 0, G_N_ELEMENTS (plan_cases));
  tcase_add_test (tc, test_plan_max_runs);
  suite_add_tcase (s, tc);
  tc = tcase_create ("dovekie_search_plan_match_exprs");
  tcase_add_test (tc, test_plan_match_exprs);
  suite_add_tcase (s, tc);
  tc = tcase_create ("dovekie_search_plan_proof_exprs");
  tcase_add_loop_test (tc, test_plan_proof_exprs, 0, G_N_ELEMENTS (proof_cases));
  tcase_add_test (tc, test_plan_proof_parts);
  suite_add_tcase (s, tc);
  tc = tcase_create ("dovekie_search_terms_foreach");
  tcase_add_loop_test (tc, test_terms_foreach, 0, G_N_ELEMENTS (terms_cases));
  tcase_add_loop_test (tc, test_terms_foreach_chars, 0, G_N_ELEMENTS (chars_cases));
  tcase_add_test (tc, test_terms_foreach_stops);
  tcase_add_loop_test (tc, test_terms_foreach_unique, 0, G_N_ELEMENTS (unique_texts));
  tcase_add_test (tc, test_terms_foreach_unique_repeats);
  tcase_add_test (tc, test_terms_foreach_unique_grams);
  suite_add_tcase (s, tc);
  tc = tcase_create ("dovekie_search_is_word_char");
  tcase_add_test (tc, test_is_word_char);
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
