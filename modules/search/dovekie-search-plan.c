/* Query planning: needle -> index terms. See dovekie-search-plan.h. */
#include "dovekie-config.h"

#include <string.h>

#include "dovekie-search-plan.h"

gboolean
dovekie_search_is_separator (gunichar c, DovekieIndexScope scope)
{
  if (c < 0x20 || c == 0x7f)
    return TRUE;
  return scope == DOVEKIE_INDEX_SCOPE_HEADER && c == ' ';
}

/* The next code point of s[0..len), or (gunichar) -1 for an invalid byte;
 * *step_r is at least 1, so the walk always moves on. */
static gunichar
next_char (const gchar *s, gsize len, gsize *step_r)
{
  gunichar c = g_utf8_get_char_validated (s, (gssize) MIN (len, 6));

  if (c == (gunichar) -1 || c == (gunichar) -2)
    {
      *step_r = 1;
      return (gunichar) -1;
    }
  *step_r = (gsize) g_utf8_skip[*(const guchar *) s];
  return c;
}

static gboolean
is_continuation (guchar b)
{
  return (b & 0xc0) == 0x80;
}

/* ---- terms of a text ---- */

/* The bytes of the (at most) three code points that start s[0..avail). */
static gsize
trigram_len (const gchar *s, gsize avail)
{
  gsize n = 0;

  for (guint i = 0; i < 3 && n < avail; i++)
    {
      n++;
      while (n < avail && is_continuation ((guchar) s[n]))
        n++;
    }
  return n;
}

/* Calls `func` for the terms of one word of `len` bytes and `chars` code
 * points: its suffixes, or its marked trigrams when it is long. */
static gboolean
word_terms (const gchar *word, gsize len, guint chars, DovekieSearchTermFunc func,
            gpointer data)
{
  gchar trigram[1 + 3 * 4];

  for (gsize i = 0; i < len && chars >= 3; i++)
    {
      if (is_continuation ((guchar) word[i]))
        continue;
      if (len <= DOVEKIE_SEARCH_WORD_BYTES)
        {
          if (!func (data, word + i, len - i))
            return FALSE;
        }
      else
        {
          /* Valid UTF-8: three code points take at most 12 bytes. */
          gsize n = trigram_len (word + i, len - i);

          trigram[0] = DOVEKIE_SEARCH_TRIGRAM_MARK;
          memcpy (trigram + 1, word + i, MIN (n, sizeof trigram - 1));
          if (!func (data, trigram, 1 + MIN (n, sizeof trigram - 1)))
            return FALSE;
        }
      chars--;
    }
  return TRUE;
}

/* The bytes of the code point that starts s[0..avail). */
static gsize
char_len (const gchar *s, gsize avail)
{
  gsize n = 1;

  while (n < avail && is_continuation ((guchar) s[n]))
    n++;
  return n;
}

/* Writes the boundary term of a word ending with left[0..left_len) and a
 * word starting at right[0..right_avail) into out (9 bytes at least). */
static gsize
boundary_term (const gchar *left, gsize left_len, const gchar *right, gsize right_avail,
               gchar *out)
{
  gsize right_len = char_len (right, right_avail);

  left_len = MIN (left_len, 4);
  right_len = MIN (right_len, 4);
  memcpy (out, left, left_len);
  out[left_len] = ' ';
  memcpy (out + left_len + 1, right, right_len);
  return left_len + 1 + right_len;
}

gboolean
dovekie_search_terms_foreach (const gchar *text, gsize len, DovekieSearchTermFunc func,
                              gpointer data)
{
  gsize pos = 0, prev_end = 0, prev_last = 0;
  gboolean have_prev = FALSE;
  gchar boundary[9];

  while (pos < len)
    {
      gsize start, last = 0, step;
      guint chars = 0;

      while (pos < len && !dovekie_search_is_word_char (next_char (text + pos, len - pos, &step)))
        pos += step;
      if (pos == len)
        break;
      start = pos;
      while (pos < len && dovekie_search_is_word_char (next_char (text + pos, len - pos, &step)))
        {
          chars++;
          last = pos;
          pos += step;
        }
      if (have_prev && start == prev_end + 1 && text[prev_end] == ' ' &&
          !func (data, boundary, boundary_term (text + prev_last, prev_end - prev_last,
                                                text + start, pos - start, boundary)))
        return FALSE;
      if (!word_terms (text + start, pos - start, chars, func, data))
        return FALSE;
      have_prev = TRUE;
      prev_end = pos;
      prev_last = last;
    }
  return TRUE;
}

/* ---- planning ---- */

static void
add_term (GPtrArray *terms, GHashTable *seen, const gchar *start, gsize bytes)
{
  gchar *term;

  if (terms->len >= DOVEKIE_SEARCH_PLAN_MAX_TERMS)
    return;
  term = g_strndup (start, bytes);
  if (g_hash_table_contains (seen, term))
    {
      g_free (term);
      return;
    }
  g_hash_table_add (seen, term);
  g_ptr_array_add (terms, g_strdup (term));
}

/* The needle's trigrams (see DovekieSearchPlan.terms). */
static void
plan_trigrams (const gchar *needle, gsize len, DovekieIndexScope scope,
               DovekieSearchPlan *plan)
{
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  /* Byte offsets of the last three searchable code points of the run. */
  gsize starts[3] = { 0, 0, 0 };
  guint run = 0;
  gsize pos = 0;

  while (pos < len)
    {
      gsize step;
      gunichar c = next_char (needle + pos, len - pos, &step);

      if (c == (gunichar) -1 || dovekie_search_is_separator (c, scope))
        run = 0;
      else
        {
          starts[0] = starts[1];
          starts[1] = starts[2];
          starts[2] = pos;
          if (++run >= 3)
            add_term (plan->terms, seen, needle + starts[0], pos + step - starts[0]);
        }
      pos += step;
    }
}

static void
run_free (gpointer data)
{
  DovekieSearchRun *run = data;

  g_free (run->prefix);
  g_ptr_array_unref (run->trigrams);
  g_free (run);
}

/* Adds the run needle[start..end) (word characters, valid UTF-8) of
 * `chars` code points, three or more. */
static void
plan_run (const gchar *needle, gsize start, gsize end, guint chars, DovekieSearchPlan *plan)
{
  DovekieSearchRun *run;
  guint count = chars - 2, wanted = MIN (count, DOVEKIE_SEARCH_PLAN_RUN_TRIGRAMS);
  guint index = 0, next = 0, taken = 0;

  if (plan->runs->len >= DOVEKIE_SEARCH_PLAN_MAX_RUNS)
    return;
  run = g_new0 (DovekieSearchRun, 1);
  if (end - start <= DOVEKIE_SEARCH_WORD_BYTES)
    run->prefix = g_strndup (needle + start, end - start);
  run->trigrams = g_ptr_array_new_with_free_func (g_free);
  /* `wanted` trigrams spread over the run, the first and the last among
   * them. */
  for (gsize i = start; i < end && taken < wanted; i++)
    {
      if (is_continuation ((guchar) needle[i]))
        continue;
      if (index == next)
        {
          gsize n = trigram_len (needle + i, end - i);
          gchar *term = g_malloc (n + 2);

          term[0] = DOVEKIE_SEARCH_TRIGRAM_MARK;
          memcpy (term + 1, needle + i, n);
          term[n + 1] = '\0';
          g_ptr_array_add (run->trigrams, term);
          taken++;
          next = wanted > 1 ? (guint) ((guint64) taken * (count - 1) / (wanted - 1)) : count;
        }
      index++;
    }
  g_ptr_array_add (plan->runs, run);
}

gboolean
dovekie_search_plan_build (const gchar *needle, gsize len, DovekieIndexScope scope,
                           DovekieSearchPlan *plan)
{
  gsize pos = 0, run_start = 0, run_last = 0, prev_end = 0, prev_last = 0;
  guint run_chars = 0;
  gboolean one_run = TRUE, have_prev = FALSE;

  plan->terms = g_ptr_array_new_with_free_func (g_free);
  plan->runs = g_ptr_array_new_with_free_func (run_free);
  plan->boundaries = g_ptr_array_new_with_free_func (g_free);
  plan->definite = FALSE;
  plan_trigrams (needle, len, scope, plan);

  while (pos <= len)
    {
      gsize step = 1;
      gunichar c = pos < len ? next_char (needle + pos, len - pos, &step) : (gunichar) -1;

      if (c != (gunichar) -1 && dovekie_search_is_word_char (c))
        {
          if (run_chars++ == 0)
            {
              run_start = pos;
              /* Words that one space separates: their boundary term. A
               * header search may compress white space, so not there. */
              if (have_prev && pos == prev_end + 1 && needle[prev_end] == ' ' &&
                  scope != DOVEKIE_INDEX_SCOPE_HEADER &&
                  plan->boundaries->len < DOVEKIE_SEARCH_PLAN_MAX_RUNS)
                {
                  gchar term[9];
                  gsize n = boundary_term (needle + prev_last, prev_end - prev_last,
                                           needle + pos, len - pos, term);
                  g_ptr_array_add (plan->boundaries, g_strndup (term, n));
                }
            }
          run_last = pos;
        }
      else
        {
          if (pos < len)
            one_run = FALSE;
          if (run_chars >= 3)
            plan_run (needle, run_start, pos, run_chars, plan);
          if (run_chars > 0)
            {
              have_prev = TRUE;
              prev_end = pos;
              prev_last = run_last;
            }
          run_chars = 0;
        }
      pos += step;
    }
  if (plan->runs->len == 0 && plan->boundaries->len == 0)
    {
      g_ptr_array_set_size (plan->terms, 0);
      return FALSE;
    }
  if (plan->runs->len > 0)
    plan->definite = one_run && len <= DOVEKIE_SEARCH_WORD_BYTES &&
                     scope != DOVEKIE_INDEX_SCOPE_HEADER;
  else
    plan->definite = plan->boundaries->len == 1 &&
                     strlen (g_ptr_array_index (plan->boundaries, 0)) == len;
  return TRUE;
}

void
dovekie_search_plan_clear (DovekieSearchPlan *plan)
{
  g_clear_pointer (&plan->terms, g_ptr_array_unref);
  g_clear_pointer (&plan->runs, g_ptr_array_unref);
  g_clear_pointer (&plan->boundaries, g_ptr_array_unref);
  plan->definite = FALSE;
}

/* ---- expressions ---- */

static void
append_literal (GString *expr, const gchar *term)
{
  g_string_append_c (expr, '"');
  for (const gchar *p = term; *p != '\0'; p++)
    {
      if (*p == '"')
        g_string_append_c (expr, '"');
      g_string_append_c (expr, *p);
    }
  g_string_append_c (expr, '"');
}

gchar *
dovekie_search_plan_match_expr (const DovekieSearchPlan *plan)
{
  GString *expr = g_string_new (NULL);

  for (guint i = 0; i < plan->runs->len; i++)
    {
      const DovekieSearchRun *run = g_ptr_array_index (plan->runs, i);

      if (i > 0)
        g_string_append (expr, " AND ");
      g_string_append_c (expr, '(');
      if (run->prefix != NULL && !plan->definite)
        {
          append_literal (expr, run->prefix);
          g_string_append (expr, " * OR ");
        }
      g_string_append_c (expr, '(');
      for (guint j = 0; j < run->trigrams->len; j++)
        {
          if (j > 0)
            g_string_append (expr, " AND ");
          append_literal (expr, g_ptr_array_index (run->trigrams, j));
        }
      g_string_append (expr, "))");
    }
  for (guint i = 0; i < plan->boundaries->len; i++)
    {
      if (expr->len > 0)
        g_string_append (expr, " AND ");
      append_literal (expr, g_ptr_array_index (plan->boundaries, i));
    }
  return g_string_free (expr, FALSE);
}

gboolean
dovekie_search_plan_proof_is_complete (const DovekieSearchPlan *plan)
{
  const DovekieSearchRun *run;

  if (!plan->definite)
    return FALSE;
  if (plan->runs->len == 0)
    return TRUE;
  run = g_ptr_array_index (plan->runs, 0);
  return g_utf8_strlen (run->prefix, -1) == 3;
}

gchar *
dovekie_search_plan_proof_expr (const DovekieSearchPlan *plan)
{
  const DovekieSearchRun *run;
  GString *expr;

  if (!plan->definite)
    return NULL;
  expr = g_string_new (NULL);
  if (plan->runs->len == 0)
    {
      append_literal (expr, g_ptr_array_index (plan->boundaries, 0));
      return g_string_free (expr, FALSE);
    }
  run = g_ptr_array_index (plan->runs, 0);
  append_literal (expr, run->prefix);
  g_string_append (expr, " *");
  if (dovekie_search_plan_proof_is_complete (plan))
    {
      g_string_append (expr, " OR ");
      append_literal (expr, g_ptr_array_index (run->trigrams, 0));
    }
  return g_string_free (expr, FALSE);
}
