/* Query planning for the search module: which trigrams a needle needs.
 *
 * The index holds every three-code-point sequence of each message text
 * (SQLite FTS5 trigram tokenizer, detail=none). A message can only contain
 * a needle if it holds every trigram of the needle, so the AND of those
 * trigrams gives a superset of the matches. Trigrams that contain a
 * separator are not used: a separator marks a place where the host's text
 * and the index's may legitimately differ (a MIME part boundary, a folded
 * or compressed header line), so requiring it could lose a match.
 */
#ifndef DOVEKIE_SEARCH_PLAN_H
#define DOVEKIE_SEARCH_PLAN_H

#include <glib.h>

#include "dovekie/index.h"

G_BEGIN_DECLS

/* More trigrams narrow the candidates less and less; any subset keeps the
 * superset property. */
#define DOVEKIE_SEARCH_PLAN_MAX_TERMS 24

typedef struct {
  /* Distinct trigrams (UTF-8, 3 code points each), in needle order;
   * owned by the plan. */
  GPtrArray *terms;
  /* TRUE when a row holding the single trigram proves the match: the
   * needle is exactly three searchable code points and the scope's text
   * is stored verbatim (TEXT, BODY). */
  gboolean definite;
} DovekieSearchPlan;

/* Whether `c` separates runs in `scope`: control characters always;
 * in HEADER scope also the space, because Dovecot compresses white space
 * in some header searches. */
gboolean dovekie_search_is_separator (gunichar c, DovekieIndexScope scope);

/* Plans a lookup of `needle` (`len` bytes; invalid UTF-8 bytes count as
 * separators). Returns FALSE, with an empty plan, when the needle has no
 * run of three searchable code points: the index cannot help then. Clear
 * the plan with dovekie_search_plan_clear in either case. */
gboolean dovekie_search_plan_build (const gchar *needle, gsize len, DovekieIndexScope scope,
                                    DovekieSearchPlan *plan);
void dovekie_search_plan_clear (DovekieSearchPlan *plan);

/* The FTS5 MATCH expression of a non-empty plan: each term as a string
 * literal ("" doubled), joined by AND. Free with g_free. */
gchar *dovekie_search_plan_match_expr (const DovekieSearchPlan *plan);

G_END_DECLS

#endif
