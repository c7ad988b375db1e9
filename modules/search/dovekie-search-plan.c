/* Query planning: needle -> trigrams. See dovekie-search-plan.h. */
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

static void
add_term (DovekieSearchPlan *plan, GHashTable *seen, const gchar *start, gsize bytes)
{
  gchar *term;

  if (plan->terms->len >= DOVEKIE_SEARCH_PLAN_MAX_TERMS)
    return;
  term = g_strndup (start, bytes);
  if (g_hash_table_contains (seen, term))
    {
      g_free (term);
      return;
    }
  g_hash_table_add (seen, term);
  g_ptr_array_add (plan->terms, g_strdup (term));
}

gboolean
dovekie_search_plan_build (const gchar *needle, gsize len, DovekieIndexScope scope,
                           DovekieSearchPlan *plan)
{
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  /* Byte offsets of the last three searchable code points of the run. */
  gsize starts[3] = { 0, 0, 0 };
  guint run = 0, chars = 0;
  gboolean separator_seen = FALSE;
  gsize pos = 0;

  plan->terms = g_ptr_array_new_with_free_func (g_free);
  plan->definite = FALSE;

  while (pos < len)
    {
      gsize step;
      gunichar c = next_char (needle + pos, len - pos, &step);

      chars++;
      if (c == (gunichar) -1 || dovekie_search_is_separator (c, scope))
        {
          run = 0;
          separator_seen = TRUE;
        }
      else
        {
          starts[0] = starts[1];
          starts[1] = starts[2];
          starts[2] = pos;
          if (++run >= 3)
            add_term (plan, seen, needle + starts[0], pos + step - starts[0]);
        }
      pos += step;
    }
  if (plan->terms->len == 0)
    return FALSE;
  plan->definite = chars == 3 && !separator_seen && scope != DOVEKIE_INDEX_SCOPE_HEADER;
  return TRUE;
}

void
dovekie_search_plan_clear (DovekieSearchPlan *plan)
{
  g_clear_pointer (&plan->terms, g_ptr_array_unref);
  plan->definite = FALSE;
}

gchar *
dovekie_search_plan_match_expr (const DovekieSearchPlan *plan)
{
  GString *expr = g_string_new (NULL);

  for (guint i = 0; i < plan->terms->len; i++)
    {
      const gchar *term = g_ptr_array_index (plan->terms, i);

      if (i > 0)
        g_string_append (expr, " AND ");
      g_string_append_c (expr, '"');
      for (const gchar *p = term; *p != '\0'; p++)
        {
          if (*p == '"')
            g_string_append_c (expr, '"');
          g_string_append_c (expr, *p);
        }
      g_string_append_c (expr, '"');
    }
  return g_string_free (expr, FALSE);
}
