/* Answering a search from the index. See dovekie-search-index.h. */
#include "dovekie-config.h"

#include <string.h>

#include "dovekie-search-index-private.h"

static gboolean
load_uids (DovekieIndex *index, sqlite3_stmt *stmt, GArray *uids, GError **error)
{
  int rc;

  while ((rc = sqlite3_step (stmt)) == SQLITE_ROW)
    {
      guint32 uid = (guint32) sqlite3_column_int64 (stmt, 0);
      g_array_append_val (uids, uid);
    }
  sqlite3_reset (stmt);
  if (rc != SQLITE_DONE)
    return sql_fail (index, error, sqlite3_sql (stmt));
  return TRUE;
}

static gint
compare_uids (gconstpointer a, gconstpointer b)
{
  guint32 x = *(const guint32 *) a, y = *(const guint32 *) b;

  return x < y ? -1 : x > y;
}

static gboolean
array_has (GArray *sorted, guint32 uid)
{
  guint lo = 0, hi = sorted->len;

  while (lo < hi)
    {
      guint mid = lo + (hi - lo) / 2;
      guint32 v = g_array_index (sorted, guint32, mid);

      if (v == uid)
        return TRUE;
      if (v < uid)
        lo = mid + 1;
      else
        hi = mid;
    }
  return FALSE;
}

/* Counts an answered lookup: event dovekie_search_lookup with the scope
 * and how many UIDs were definite and how many maybe (the host reads those). */
static void
emit_lookup (DovekieIndex *index, DovekieIndexScope scope, guint definite, guint maybe)
{
  static const gchar *const scopes[] = { "text", "body", "header", "subject",
                                          "from", "to", "cc", "bcc" };
  gchar definite_s[16], maybe_s[16];

  if (index->ctx == NULL)
    return;
  g_snprintf (definite_s, sizeof definite_s, "%u", definite);
  g_snprintf (maybe_s, sizeof maybe_s, "%u", maybe);
  dovekie_emit (index->ctx, "dovekie_search_lookup",
                "scope", (guint) scope < G_N_ELEMENTS (scopes) ? scopes[scope] : "other",
                "definite", definite_s, "maybe", maybe_s, NULL);
}

/* Appends the UIDs of the rows that match `expr` to `uids`, ascending and
 * once each, leaving out the sorted `gone`: of body_terms (rowid = uid)
 * when `fields` is 0, else of header_terms' rows in `fields`. */
static gboolean
match_table (DovekieIndex *index, const gchar *expr, guint fields, GArray *gone, GArray *uids,
             GError **error)
{
  sqlite3_stmt *stmt = fields == 0 ? index->match_body : index->match_header;
  guint32 prev = 0;
  gboolean have_prev = FALSE;
  int rc;

  sqlite3_bind_text (stmt, 1, expr, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step (stmt)) == SQLITE_ROW)
    {
      sqlite3_int64 rowid = sqlite3_column_int64 (stmt, 0);
      guint32 uid = (guint32) (fields == 0 ? rowid : rowid >> DOVEKIE_SEARCH_FIELD_BITS);
      guint field = (guint) (rowid & ((1 << DOVEKIE_SEARCH_FIELD_BITS) - 1));

      if ((fields != 0 && (fields & (1u << field)) == 0) || (have_prev && uid == prev))
        continue;
      prev = uid;
      have_prev = TRUE;
      if (!array_has (gone, uid))
        g_array_append_val (uids, uid);
    }
  sqlite3_reset (stmt);
  sqlite3_clear_bindings (stmt);
  if (rc != SQLITE_DONE)
    return sql_fail (index, error, "lookup");
  return TRUE;
}

/* The UID at pos, or past every UID at the end. */
static guint64
head (GArray *uids, guint pos)
{
  return pos < uids->len ? g_array_index (uids, guint32, pos) : G_MAXUINT64;
}

/* match_table over the rows in `fields`: the body's table, the other
 * fields' table, or both (TEXT), their ascending UIDs merged. */
static gboolean
match_uids (DovekieIndex *index, const gchar *expr, guint fields, GArray *gone, GArray *uids,
            GError **error)
{
  const guint body = 1u << DOVEKIE_INDEX_FIELD_BODY;
  g_autoptr (GArray) in_body = NULL, in_headers = NULL;
  guint b = 0, h = 0;

  if (fields == body)
    return match_table (index, expr, 0, gone, uids, error);
  if ((fields & body) == 0)
    return match_table (index, expr, fields, gone, uids, error);
  in_body = g_array_new (FALSE, FALSE, sizeof (guint32));
  in_headers = g_array_new (FALSE, FALSE, sizeof (guint32));
  if (!match_table (index, expr, 0, gone, in_body, error) ||
      !match_table (index, expr, fields & ~body, gone, in_headers, error))
    return FALSE;
  while (b < in_body->len || h < in_headers->len)
    {
      guint32 uid = (guint32) MIN (head (in_body, b), head (in_headers, h));

      if (head (in_body, b) == uid)
        b++;
      if (head (in_headers, h) == uid)
        h++;
      g_array_append_val (uids, uid);
    }
  return TRUE;
}

/* match_uids of each of `exprs`, their UIDs joined: ascending, once each. */
static gboolean
match_any (DovekieIndex *index, GPtrArray *exprs, guint fields, GArray *gone, GArray *uids,
           GError **error)
{
  g_autoptr (GArray) all = NULL;
  guint kept = 0;

  if (exprs->len == 1)
    return match_uids (index, g_ptr_array_index (exprs, 0), fields, gone, uids, error);
  all = g_array_new (FALSE, FALSE, sizeof (guint32));
  for (guint i = 0; i < exprs->len; i++)
    if (!match_uids (index, g_ptr_array_index (exprs, i), fields, gone, all, error))
      return FALSE;
  g_array_sort (all, compare_uids);
  for (guint i = 0; i < all->len; i++)
    if (kept == 0 || g_array_index (all, guint32, i) != g_array_index (all, guint32, kept - 1))
      g_array_index (all, guint32, kept++) = g_array_index (all, guint32, i);
  g_array_append_vals (uids, all->data, kept);
  return TRUE;
}

/* Fills each run's words: those of the vocabulary that contain it, each
 * once (the log may repeat a word). The vocabulary is a few megabytes of
 * words in memory (1.3 MB at corpus x1), which memmem scans in about a
 * millisecond. */
static gboolean
find_words (DovekieIndex *index, DovekieSearchPlan *plan, GError **error)
{
  const gchar *text, *end;

  if (!dovekie_search_vocab_read (index, error))
    return FALSE;
  /* '\n', then words each followed by '\n'; a run has no '\n'. */
  text = index->vocab_text->str;
  end = text + index->vocab_text->len;
  for (guint i = 0; i < plan->runs->len; i++)
    {
      DovekieSearchRun *run = g_ptr_array_index (plan->runs, i);
      g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
      gsize n;
      const gchar *from = text, *hit;

      g_ptr_array_set_size (run->words, 0);
      if (run->prefix == NULL)
        continue;
      n = strlen (run->prefix);
      while ((hit = memmem (from, (gsize) (end - from), run->prefix, n)) != NULL)
        {
          const gchar *start = hit, *stop = memchr (hit + n, '\n', (gsize) (end - hit - n));
          gchar *word;

          while (start[-1] != '\n')
            start--;
          word = g_strndup (start, (gsize) (stop - start));
          /* (g_hash_table_add would put `word` in place of an equal key) */
          if (!g_hash_table_contains (seen, word))
            {
              g_hash_table_add (seen, word);
              g_ptr_array_add (run->words, word);
            }
          else
            g_free (word);
          from = stop + 1;
        }
    }
  return TRUE;
}

/* The fields whose rows hold what the scope's search compares. */
static guint
scope_fields (DovekieIndexScope scope)
{
  G_STATIC_ASSERT (DOVEKIE_INDEX_FIELD_BCC - DOVEKIE_INDEX_FIELD_SUBJECT ==
                   DOVEKIE_INDEX_SCOPE_BCC - DOVEKIE_INDEX_SCOPE_SUBJECT);

  switch (scope)
    {
    case DOVEKIE_INDEX_SCOPE_TEXT:
      return 1u << DOVEKIE_INDEX_FIELD_HEADER | 1u << DOVEKIE_INDEX_FIELD_BODY;
    case DOVEKIE_INDEX_SCOPE_BODY:
      return 1u << DOVEKIE_INDEX_FIELD_BODY;
    case DOVEKIE_INDEX_SCOPE_HEADER:
      return 1u << DOVEKIE_INDEX_FIELD_HEADER;
    default:
      /* SUBJECT to BCC: the keyed field, which holds exactly the text the
       * search key compares, as BODY holds what BODY compares. */
      return 1u << (DOVEKIE_INDEX_FIELD_SUBJECT + (scope - DOVEKIE_INDEX_SCOPE_SUBJECT));
    }
}

gboolean
dovekie_search_lookup_run (DovekieIndex *index, DovekieIndexScope scope,
                           DovekieSearchPlan *plan, DovekieIndexAddFunc add, gpointer data,
                           GError **error)
{
  g_autoptr (GArray) gone = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GArray) unindexed = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GArray) proven = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GArray) candidates = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GPtrArray) proof = NULL;
  guint fields = scope_fields (scope);
  guint p = 0, c = 0, u = 0, definite = 0, maybe = 0;

  if (!load_uids (index, index->load_gone, gone, error) ||
      !load_uids (index, index->load_unindexed, unindexed, error))
    return FALSE;
  if (!find_words (index, plan, error))
    return FALSE;
  proof = dovekie_search_plan_proof_exprs (plan);
  if (proof->len > 0 && !match_any (index, proof, fields, gone, proven, error))
    return FALSE;
  if (!dovekie_search_plan_proof_is_complete (plan))
    {
      g_autoptr (GPtrArray) exprs = dovekie_search_plan_match_exprs (plan);

      if (!match_any (index, exprs, fields, gone, candidates, error))
        return FALSE;
    }

  /* Merge the three ascending lists; a proven UID is definite. */
  while (p < proven->len || c < candidates->len || u < unindexed->len)
    {
      guint64 uid = MIN (head (proven, p), MIN (head (candidates, c), head (unindexed, u)));
      gboolean is_proven = head (proven, p) == uid;
      gboolean listed = is_proven || head (candidates, c) == uid;

      if (is_proven)
        p++;
      if (head (candidates, c) == uid)
        c++;
      if (head (unindexed, u) == uid)
        u++;
      if (!listed && array_has (gone, (guint32) uid))
        continue;
      add (data, (guint32) uid, is_proven);
      if (is_proven)
        definite++;
      else
        maybe++;
    }
  emit_lookup (index, scope, definite, maybe);
  return TRUE;
}
