/* Fuzz target: query planning and the index's text intake and lookups.
 *
 * Input: byte 0 picks the scope (byte 0 % DOVEKIE_INDEX_SCOPE_COUNT) and
 * where a needle is cut from the text (byte 0 / DOVEKIE_INDEX_SCOPE_COUNT);
 * the rest is both a needle and a message text.
 *
 * Planner (on the raw bytes, any scope): every run and boundary of the plan
 * is made of the needle's own word characters, and every character term of
 * its own code points, within the documented limits; a definite plan is
 * exactly the needle; and, for a valid UTF-8
 * needle, the terms the plan requires are among the terms the tokenizer
 * gives for the needle as a text (the superset property, without SQLite).
 *
 * Index: the text is added as one message (into the field the scope
 * searches: BODY for TEXT), then two needles are looked up: the whole text, and a slice of
 * it. Against every message in the index: each one that contains the
 * needle is returned, and each definite one contains it (the oracle is
 * strstr on the text as the index stores it: invalid UTF-8 replaced).
 *
 * The index is emptied (its reset) every FUZZ_RESET_EVERY inputs. Without
 * that, every input stayed in one index for the whole run: each lookup
 * read ever longer posting lists and memory grew, so the rate fell from
 * ~11,000 to ~2,500 inputs/s within two minutes and a 10M-input run took
 * hours. With it an input costs the same at the 10th and at the
 * 10,000,000th run.
 *
 * Built plainly it replays the files named on the command line, or a
 * fixed pseudo-random stream when there are none (`make check`). Built
 * with clang -fsanitize=fuzzer -DDOVEKIE_LIBFUZZER it is a libFuzzer
 * target.
 */
#include "dovekie-config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "dovekie-search-index.h"
#include "dovekie-search-plan.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Inputs between two resets of the index; small enough that lookups stay
 * cheap, large enough that a reset's cost is spread thin and that several
 * documents share the index (and a batch's open transaction). */
#define FUZZ_RESET_EVERY 64
/* Longest slice looked up: a little past a short word. */
#define FUZZ_SLICE_BYTES (DOVEKIE_SEARCH_WORD_BYTES + 4)

static DovekieIndex *fuzz_index;
static gchar *fuzz_dir;
static guint32 fuzz_uid;
/* The messages since the last reset, by uid % FUZZ_RESET_EVERY: their text
 * as stored (NULL when it holds a NUL or does not fit the arena; the
 * oracle leaves those out) and the field it was added to. The texts live
 * in a static arena: memory kept from one input to the next would make
 * libFuzzer suspect a leak and scan for one after nearly every input. */
static const gchar *fuzz_text[FUZZ_RESET_EVERY];
static DovekieIndexField fuzz_field[FUZZ_RESET_EVERY];
static gchar fuzz_arena[1 << 20];
static gsize fuzz_arena_used;

static void
fail (const gchar *what, const gchar *needle)
{
  g_error ("%s (needle \"%s\")", what, needle);
}

/* ---- planner ---- */

static gboolean
all_word_chars (const gchar *s, gsize len)
{
  for (const gchar *p = s; p < s + len; p = g_utf8_next_char (p))
    if (!dovekie_search_is_word_char (g_utf8_get_char (p)))
      return FALSE;
  return TRUE;
}

/* `s` is valid UTF-8 of `chars` code points (0: any number, at least 3),
 * all word characters, found in the needle. */
static gboolean
is_needle_run (const gchar *s, guint chars, const gchar *needle, gsize len)
{
  gsize n = strlen (s);
  glong count;

  if (!g_utf8_validate (s, (gssize) n, NULL) || !all_word_chars (s, n))
    return FALSE;
  count = g_utf8_strlen (s, (gssize) n);
  if (chars != 0 ? count != (glong) chars : count < 3)
    return FALSE;
  return memmem (needle, len, s, n) != NULL;
}

static gboolean
collect_term (gpointer data, const gchar *term, gsize len)
{
  g_hash_table_add (data, g_strndup (term, len));
  return TRUE;
}

/* Whether some term of `terms` satisfies `test` with `arg`. */
static gboolean
has_term (GHashTable *terms, gboolean (*test) (const gchar *term, const gchar *arg),
          const gchar *arg)
{
  GHashTableIter iter;
  gpointer term;

  g_hash_table_iter_init (&iter, terms);
  while (g_hash_table_iter_next (&iter, &term, NULL))
    if (test (term, arg))
      return TRUE;
  return FALSE;
}

static gboolean
starts_with (const gchar *term, const gchar *prefix)
{
  return g_str_has_prefix (term, prefix);
}

/* Whether `term` is a short word (one of the vocabulary's) containing `run`. */
static gboolean
is_word_containing (const gchar *term, const gchar *run)
{
  return dovekie_search_term_is_word (term, strlen (term)) && strstr (term, run) != NULL;
}

static void
check_run (const DovekieSearchRun *run, const gchar *needle, gsize len)
{
  /* A run of two code points is a whole needle of two ASCII bytes. */
  glong run_chars = run->prefix != NULL ? g_utf8_strlen (run->prefix, -1) : 3;
  guint gram_chars = run->gram_is_prefix ? (run_chars == 2 ? 2 : 3) : DOVEKIE_SEARCH_GRAM_CHARS;

  if (run_chars == 2 && len != 2)
    fail ("run of two code points within a longer needle", needle);
  if (run->grams->len == 0 || run->grams->len > DOVEKIE_SEARCH_PLAN_RUN_GRAMS ||
      (run->gram_is_prefix && run->grams->len != 1))
    fail ("run gram count out of range", needle);
  for (guint j = 0; j < run->grams->len; j++)
    {
      const gchar *gram = g_ptr_array_index (run->grams, j);

      if (gram[0] != DOVEKIE_SEARCH_GRAM_MARK || !is_needle_run (gram + 1, gram_chars, needle, len))
        fail ("bad gram", needle);
      if (run->prefix != NULL && strstr (run->prefix, gram + 1) == NULL)
        fail ("gram outside its run", needle);
    }
  if (run->gram_is_prefix ? run->trigrams->len != 0
                           : run->trigrams->len == 0 ||
                             run->trigrams->len > DOVEKIE_SEARCH_PLAN_RUN_GRAMS)
    fail ("run trigram count out of range", needle);
  for (guint j = 0; j < run->trigrams->len; j++)
    {
      const gchar *tri = g_ptr_array_index (run->trigrams, j);

      if (tri[0] != DOVEKIE_SEARCH_GRAM_MARK || !is_needle_run (tri + 1, 3, needle, len) ||
          (run->prefix != NULL && strstr (run->prefix, tri + 1) == NULL))
        fail ("bad trigram", needle);
    }
  /* A run of three code points is its own gram. */
  if (run->gram_is_prefix && run->prefix != NULL &&
      strcmp (run->prefix, (const gchar *) g_ptr_array_index (run->grams, 0) + 1) != 0)
    fail ("three-code-point run is not its gram", needle);
  if (run->prefix == NULL)
    return;
  if (strlen (run->prefix) > DOVEKIE_SEARCH_WORD_BYTES ||
      !is_needle_run (run->prefix, run_chars == 2 ? 2 : 0, needle, len))
    fail ("bad run", needle);
  /* The first and the last gram of the run are asked. */
  if (!g_str_has_prefix (run->prefix, (const gchar *) g_ptr_array_index (run->grams, 0) + 1) ||
      !g_str_has_suffix (run->prefix,
                         (const gchar *) g_ptr_array_index (run->grams, run->grams->len - 1) + 1))
    fail ("run's ends not asked", needle);
}

static void
check_boundary (const gchar *term, const gchar *needle, gsize len)
{
  gsize n = strlen (term);
  const gchar *space;

  if (!g_utf8_validate (term, (gssize) n, NULL) || g_utf8_strlen (term, (gssize) n) != 3 ||
      memmem (needle, len, term, n) == NULL)
    fail ("bad boundary", needle);
  space = g_utf8_next_char (term);
  if (*space != ' ' || !dovekie_search_is_word_char (g_utf8_get_char (term)) ||
      !dovekie_search_is_word_char (g_utf8_get_char (space + 1)))
    fail ("bad boundary", needle);
}

/* A character term: the mark, then one code point, a pair with one that
 * is not an ASCII word character, or a triple of which none is a word
 * character, none of them white space, found in the needle. */
static void
check_char_term (const gchar *term, const gchar *needle, gsize len)
{
  gsize n = strlen (term);
  glong chars;
  gunichar a, b;

  if (n < 2 || term[0] != DOVEKIE_SEARCH_CHAR_MARK || !g_utf8_validate (term + 1, (gssize) n - 1, NULL) ||
      memmem (needle, len, term + 1, n - 1) == NULL)
    fail ("bad character term", needle);
  chars = g_utf8_strlen (term + 1, (gssize) n - 1);
  a = g_utf8_get_char (term + 1);
  if (chars < 1 || chars > 3 || !dovekie_search_is_char_term (a))
    fail ("bad character term", needle);
  if (chars == 3)
    {
      for (const gchar *p = term + 1; *p != '\0'; p = g_utf8_next_char (p))
        if (!dovekie_search_is_char_term (g_utf8_get_char (p)) ||
            dovekie_search_is_word_char (g_utf8_get_char (p)))
          fail ("bad character triple", needle);
      return;
    }
  if (chars == 2)
    {
      b = g_utf8_get_char (g_utf8_next_char (term + 1));
      if (!dovekie_search_is_char_term (b) ||
          (a < 0x80 && b < 0x80 && dovekie_search_is_word_char (a) && dovekie_search_is_word_char (b)))
        fail ("bad character pair", needle);
    }
}

static void
check_plan (const gchar *needle, gsize len, DovekieIndexScope scope)
{
  DovekieSearchPlan plan;
  gboolean handled = dovekie_search_plan_build (needle, len, scope, &plan);
  gboolean valid = g_utf8_validate (needle, (gssize) len, NULL);
  g_autoptr (GPtrArray) proof = dovekie_search_plan_proof_exprs (&plan);

  if (handled != (plan.runs->len > 0 || plan.boundaries->len > 0 || plan.chars->len > 0))
    fail ("handled without terms, or terms unused", needle);
  if (plan.runs->len > DOVEKIE_SEARCH_PLAN_MAX_RUNS ||
      plan.boundaries->len > DOVEKIE_SEARCH_PLAN_MAX_RUNS ||
      plan.chars->len > DOVEKIE_SEARCH_PLAN_MAX_RUNS)
    fail ("too many runs", needle);
  if (scope == DOVEKIE_INDEX_SCOPE_HEADER && (plan.definite || plan.boundaries->len > 0))
    fail ("header plan uses boundaries or proves", needle);
  for (guint i = 0; i < plan.runs->len; i++)
    check_run (g_ptr_array_index (plan.runs, i), needle, len);
  for (guint i = 0; i < plan.boundaries->len; i++)
    check_boundary (g_ptr_array_index (plan.boundaries, i), needle, len);
  for (guint i = 0; i < plan.chars->len; i++)
    check_char_term (g_ptr_array_index (plan.chars, i), needle, len);

  /* Definite: the needle is exactly its one run, its one boundary or its
   * one character term. */
  if (proof->len > 0 && !plan.definite)
    fail ("proof expression without a definite plan", needle);
  if (plan.definite)
    {
      const gchar *whole = plan.runs->len == 1
                             ? ((const DovekieSearchRun *) g_ptr_array_index (plan.runs, 0))->prefix
                           : plan.boundaries->len == 1 && plan.runs->len == 0
                             ? g_ptr_array_index (plan.boundaries, 0)
                           : plan.chars->len == 1 && plan.runs->len == 0 && plan.boundaries->len == 0
                             ? (const gchar *) g_ptr_array_index (plan.chars, 0) + 1
                             : NULL;
      if (whole == NULL || plan.boundaries->len + plan.runs->len > 1 ||
          strlen (whole) != len || memcmp (whole, needle, len) != 0)
        fail ("definite plan is not the needle", needle);
    }
  /* ...and a short one-word needle is always proven. */
  else if (valid && scope != DOVEKIE_INDEX_SCOPE_HEADER && len <= DOVEKIE_SEARCH_WORD_BYTES &&
           g_utf8_strlen (needle, (gssize) len) >= 3 && all_word_chars (needle, len))
    fail ("one short word not proven", needle);

  /* Superset property on the terms: the needle, indexed, has them all. */
  if (handled && valid)
    {
      g_autoptr (GHashTable) terms = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

      (void) dovekie_search_terms_foreach (needle, len, collect_term, terms);
      for (guint i = 0; i < plan.runs->len; i++)
        {
          const DovekieSearchRun *run = g_ptr_array_index (plan.runs, i);
          gboolean all = TRUE;

          for (guint j = 0; j < run->grams->len && all; j++)
            {
              const gchar *gram = g_ptr_array_index (run->grams, j);
              all = run->gram_is_prefix ? has_term (terms, starts_with, gram)
                                        : g_hash_table_contains (terms, gram);
            }
          if (!all && run->trigrams->len > 0)
            {
              all = TRUE;
              for (guint j = 0; j < run->trigrams->len && all; j++)
                all = g_hash_table_contains (terms, g_ptr_array_index (run->trigrams, j));
            }
          if (!all && (run->prefix == NULL || !has_term (terms, is_word_containing, run->prefix)))
            fail ("run not found in the needle's own terms", needle);
        }
      for (guint i = 0; i < plan.boundaries->len; i++)
        if (!g_hash_table_contains (terms, g_ptr_array_index (plan.boundaries, i)))
          fail ("boundary not found in the needle's own terms", needle);
      for (guint i = 0; i < plan.chars->len; i++)
        if (!g_hash_table_contains (terms, g_ptr_array_index (plan.chars, i)))
          fail ("character term not found in the needle's own terms", needle);
    }
  dovekie_search_plan_clear (&plan);
}

/* ---- index ---- */

/* The text as the index stores it (index.h: invalid sequences replaced),
 * copied into the arena; NULL when it holds a NUL or does not fit. */
static const gchar *
stored_text (const gchar *text, gsize len)
{
  gchar *out = fuzz_arena + fuzz_arena_used;
  gsize room = sizeof fuzz_arena - fuzz_arena_used, n = 0;
  const gchar *end;

  if (room == 0 || memchr (text, '\0', len) != NULL)
    return NULL;
  while (len > 0)
    {
      gboolean valid = g_utf8_validate_len (text, len, &end);
      gsize good = (gsize) (end - text);

      /* the good bytes, a replacement character, the final NUL */
      if (n + good + 3 + 1 > room)
        return NULL;
      memcpy (out + n, text, good);
      n += good;
      if (valid)
        break;
      memcpy (out + n, "\xef\xbf\xbd", 3);
      n += 3;
      len -= good + 1;
      text = end + 1;
    }
  out[n] = '\0';
  fuzz_arena_used += n + 1;
  return out;
}

typedef struct {
  guint32 base;
  /* 0: not returned, 1: maybe, 2: definite */
  guint8 answer[FUZZ_RESET_EVERY];
  gboolean stray;
} FuzzAnswer;

static void
found (gpointer data, guint32 uid, gboolean definite)
{
  FuzzAnswer *answer = data;

  if (uid < answer->base || uid - answer->base >= FUZZ_RESET_EVERY)
    answer->stray = TRUE;
  else
    answer->answer[uid - answer->base] = definite ? 2 : 1;
}

/* The field a message of this input goes into: the one that the scope
 * searches (BODY for TEXT). */
static DovekieIndexField
scope_field (DovekieIndexScope scope)
{
  switch (scope)
    {
    case DOVEKIE_INDEX_SCOPE_TEXT:
    case DOVEKIE_INDEX_SCOPE_BODY:
      return DOVEKIE_INDEX_FIELD_BODY;
    case DOVEKIE_INDEX_SCOPE_HEADER:
      return DOVEKIE_INDEX_FIELD_HEADER;
    default:
      return (DovekieIndexField) (DOVEKIE_INDEX_FIELD_SUBJECT +
                                  (scope - DOVEKIE_INDEX_SCOPE_SUBJECT));
    }
}

static gboolean
in_scope (DovekieIndexField field, DovekieIndexScope scope)
{
  switch (scope)
    {
    case DOVEKIE_INDEX_SCOPE_TEXT:
      return field == DOVEKIE_INDEX_FIELD_HEADER || field == DOVEKIE_INDEX_FIELD_BODY;
    case DOVEKIE_INDEX_SCOPE_BODY:
      return field == DOVEKIE_INDEX_FIELD_BODY;
    case DOVEKIE_INDEX_SCOPE_HEADER:
      return field == DOVEKIE_INDEX_FIELD_HEADER;
    default:
      return field == scope_field (scope);
    }
}

/* Looks `needle` (valid UTF-8, no NUL) up and checks the answer against
 * every message of the index. */
static void
check_lookup (const gchar *needle, DovekieIndexScope scope)
{
  FuzzAnswer answer = { .base = fuzz_uid - fuzz_uid % FUZZ_RESET_EVERY };
  gboolean handled;
  guint32 covered = 0;

  if (!dovekie_search_index_vtable.lookup (fuzz_index, scope, needle, found, &answer, &covered,
                                           &handled, NULL))
    fail ("lookup failed", needle);
  if (handled && covered != fuzz_uid)
    fail ("the answer does not cover the message just added", needle);
  if (answer.stray)
    fail ("a message from before the reset came back", needle);
  if (!handled)
    return;
  for (guint i = 0; i < FUZZ_RESET_EVERY; i++)
    {
      gboolean matches = fuzz_text[i] != NULL && in_scope (fuzz_field[i], scope) &&
                         strstr (fuzz_text[i], needle) != NULL;

      if (matches && answer.answer[i] == 0)
        fail ("a message holding the needle was not returned", needle);
      if (answer.answer[i] == 2 && fuzz_text[i] != NULL && !matches)
        fail ("a definite message does not hold the needle", needle);
    }
}

/* A slice of `text` from about `at`, 1 to FUZZ_SLICE_BYTES bytes, on code
 * point boundaries. */
static gchar *
slice (const gchar *text, guint at)
{
  gsize len = strlen (text), start, end;

  if (len == 0)
    return NULL;
  start = at % len;
  while (start > 0 && ((guchar) text[start] & 0xc0) == 0x80)
    start--;
  end = MIN (len, start + 1 + at % FUZZ_SLICE_BYTES);
  while (end < len && ((guchar) text[end] & 0xc0) == 0x80)
    end++;
  return g_strndup (text + start, end - start);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const gchar *text = (const gchar *) data + 1;
  DovekieIndexScope scope;
  DovekieIndexField field;
  guint slot;

  if (size < 1)
    return 0;
  scope = (DovekieIndexScope) (data[0] % DOVEKIE_INDEX_SCOPE_COUNT);
  check_plan (text, size - 1, scope);

  if (fuzz_index == NULL)
    {
      const DovekieSearchLimits limits = { 50, 1024 * 1024, 1024 * 1024 };
      g_autofree gchar *path = NULL;

      fuzz_dir = g_dir_make_tmp ("dovekie-fuzz-XXXXXX", NULL);
      path = g_build_filename (fuzz_dir, "fuzz.db", NULL);
      fuzz_index = dovekie_search_index_open_with (NULL, path, 1, &limits, NULL);
      if (fuzz_index == NULL)
        g_error ("cannot open the fuzz index");
    }
  fuzz_uid++;
  slot = fuzz_uid % FUZZ_RESET_EVERY;
  if (slot == 0)
    {
      if (!dovekie_search_index_vtable.reset (fuzz_index, NULL))
        g_error ("reset failed");
      memset (fuzz_text, 0, sizeof fuzz_text);
      fuzz_arena_used = 0;
    }
  field = scope_field (scope);
  if (!dovekie_search_index_vtable.doc_begin (fuzz_index, fuzz_uid, NULL) ||
      !dovekie_search_index_vtable.doc_append (fuzz_index, field, text, size - 1, NULL) ||
      !dovekie_search_index_vtable.doc_end (fuzz_index, NULL))
    g_error ("indexing failed");
  fuzz_text[slot] = stored_text (text, size - 1);
  fuzz_field[slot] = field;

  if (fuzz_text[slot] != NULL)
    {
      g_autofree gchar *part = slice (fuzz_text[slot], data[0] / DOVEKIE_INDEX_SCOPE_COUNT);

      check_lookup (fuzz_text[slot], scope);
      if (part != NULL)
        check_lookup (part, scope);
    }
  return 0;
}

#ifndef DOVEKIE_LIBFUZZER
static void
cleanup (void)
{
  g_autofree gchar *path = g_build_filename (fuzz_dir, "fuzz.db", NULL);
  g_autofree gchar *wal = g_strconcat (path, "-wal", NULL);
  g_autofree gchar *shm = g_strconcat (path, "-shm", NULL);

  dovekie_search_index_vtable.close (fuzz_index);
  (void) g_unlink (path);
  (void) g_unlink (wal);
  (void) g_unlink (shm);
  (void) g_rmdir (fuzz_dir);
  g_free (fuzz_dir);
}

int
main (int argc, char **argv)
{
  /* Alphabet biased towards the interesting bytes. */
  static const guint8 alphabet[] = "abcABC \"\r\n\t\x01\x7f\xc3\xa9\xe6\x97\xa5\xff\x80:<>";
  GRand *rand = g_rand_new_with_seed (20240611);

  if (argc > 1)
    {
      for (int i = 1; i < argc; i++)
        {
          g_autofree gchar *contents = NULL;
          gsize len = 0;
          if (!g_file_get_contents (argv[i], &contents, &len, NULL))
            return 2;
          LLVMFuzzerTestOneInput ((const uint8_t *) contents, len);
        }
    }
  else
    {
      for (guint n = 0; n < 3000; n++)
        {
          guint8 buf[64];
          gsize len = (gsize) g_rand_int_range (rand, 1, sizeof buf);
          for (gsize i = 0; i < len; i++)
            buf[i] = alphabet[g_rand_int_range (rand, 0, sizeof alphabet - 1)];
          LLVMFuzzerTestOneInput (buf, len);
        }
    }
  g_rand_free (rand);
  cleanup ();
  printf ("fuzz-search-plan: %u inputs, no failure\n", fuzz_uid);
  return 0;
}
#endif
