/* Query planning for the search module: which index terms a needle needs.
 *
 * Words. The index cuts each text into words: maximal runs of word
 * characters (ASCII letters and digits, "-", "_", and every non-ASCII code
 * point). All others (white space, control characters, other ASCII
 * punctuation) separate words.
 *
 * Terms. A word of at most DOVEKIE_SEARCH_WORD_BYTES bytes is indexed by
 * its suffixes of three or more code points; a longer word by its marked
 * trigrams (DOVEKIE_SEARCH_TRIGRAM_MARK and three code points, one per
 * code point with two more after it). Every term is a substring of the
 * text (after its mark). Where exactly one space separates two words, the
 * index also holds a boundary term: the last code point of the first, the
 * space, the first code point of the second. So:
 *   - a run R of word characters (three or more code points) lies in a
 *     short word exactly when some suffix term starts with R (the FTS5
 *     prefix query "R" *), and in a long word only if every trigram of R
 *     is there as a marked trigram;
 *   - a three-code-point R is in the text exactly when the prefix query
 *     or the marked trigram "#R" matches;
 *   - "x y" (two word code points and a space) is in the text exactly when
 *     its boundary term is.
 *
 * A needle is planned as its runs of word characters. A message may
 * contain it only if each run (of three or more code points) is in a short
 * or in a long word, and (in TEXT and BODY) each single space between two
 * runs is a boundary term: the AND over runs of (prefix OR trigrams) and
 * over those boundaries gives a superset of the matches. Other separators
 * are never required: they may be where the host's text and the index's
 * legitimately differ (a MIME part boundary, a folded header line); in a
 * header search Dovecot may also compress white space. A needle that is
 * one run, at most DOVEKIE_SEARCH_WORD_BYTES long, is proven by the prefix
 * query (and by its marked trigram when it is three code points long);
 * only the messages that hold it in long words alone are left to verify.
 * A needle "x y" is proven by its boundary term.
 */
#ifndef DOVEKIE_SEARCH_PLAN_H
#define DOVEKIE_SEARCH_PLAN_H

#include <glib.h>

#include "dovekie/index.h"

G_BEGIN_DECLS

/* More trigrams narrow the candidates less and less; any subset keeps the
 * superset property. */
#define DOVEKIE_SEARCH_PLAN_MAX_TERMS 24
/* Trigrams asked per run, and runs asked per needle (same reasoning). */
#define DOVEKIE_SEARCH_PLAN_RUN_TRIGRAMS 6
#define DOVEKIE_SEARCH_PLAN_MAX_RUNS 8

/* Longest word indexed by its suffixes, in bytes. */
#define DOVEKIE_SEARCH_WORD_BYTES 20
/* First byte of a trigram term; never a word character. */
#define DOVEKIE_SEARCH_TRIGRAM_MARK '#'

typedef struct {
  /* The run (UTF-8, word characters only, three or more code points)
   * when it is short enough to lie in a short word, else NULL. */
  gchar *prefix;
  /* Marked trigrams of the run (DOVEKIE_SEARCH_TRIGRAM_MARK and 3 code
   * points), at most DOVEKIE_SEARCH_PLAN_RUN_TRIGRAMS, never empty. */
  GPtrArray *trigrams;
} DovekieSearchRun;

typedef struct {
  /* Distinct trigrams of the needle's runs of searchable code points
   * (UTF-8, 3 code points each, see dovekie_search_is_separator), in
   * needle order; owned by the plan. Informational: the index looks up
   * `runs`. */
  GPtrArray *terms;
  /* The needle's runs of word characters with three or more code points
   * (DovekieSearchRun *), in needle order, at most
   * DOVEKIE_SEARCH_PLAN_MAX_RUNS; owned by the plan. */
  GPtrArray *runs;
  /* Boundary terms (UTF-8 "x y") of the runs of any length that one
   * space separates, TEXT and BODY scope only, at most
   * DOVEKIE_SEARCH_PLAN_MAX_RUNS; owned by the plan. */
  GPtrArray *boundaries;
  /* TRUE when the scope's text is stored verbatim (TEXT, BODY) and the
   * needle is one run of at most DOVEKIE_SEARCH_WORD_BYTES bytes, or is
   * one boundary term: then dovekie_search_plan_proof_expr proves
   * matches. */
  gboolean definite;
} DovekieSearchPlan;

/* Whether `c` separates runs of trigrams in `scope`: control characters
 * always; in HEADER scope also the space, because Dovecot compresses white
 * space in some header searches. */
gboolean dovekie_search_is_separator (gunichar c, DovekieIndexScope scope);

/* Whether code point `c` belongs to a word (see above). */
static inline gboolean
dovekie_search_is_word_char (gunichar c)
{
  return c >= 0x80 || g_ascii_isalnum (c) || c == '-' || c == '_';
}

/* Called once per term of a text: `term` (`len` bytes, not terminated)
 * is valid only during the call. Returns FALSE to stop. */
typedef gboolean (*DovekieSearchTermFunc) (gpointer data, const gchar *term, gsize len);

/* Calls `func` for every term of `text` (`len` bytes of valid UTF-8), in
 * text order, repeats included. Returns FALSE when `func` stopped the
 * walk. */
gboolean dovekie_search_terms_foreach (const gchar *text, gsize len, DovekieSearchTermFunc func,
                                       gpointer data);

/* Plans a lookup of `needle` (`len` bytes; invalid UTF-8 bytes count as
 * separators). Returns FALSE, with no runs, when the needle has no run of
 * three word code points and no boundary: the index cannot help then. Clear the plan with
 * dovekie_search_plan_clear in either case. */
gboolean dovekie_search_plan_build (const gchar *needle, gsize len, DovekieIndexScope scope,
                                    DovekieSearchPlan *plan);
void dovekie_search_plan_clear (DovekieSearchPlan *plan);

/* The FTS5 MATCH expression of the candidates of a handled plan: for each
 * run ("prefix" * OR ("#tri" AND ...)), and each boundary term, joined by
 * AND; string literals have "" doubled. For a definite plan only the
 * candidates that the proof expression does not cover: the run's
 * trigrams. Free with g_free. */
gchar *dovekie_search_plan_match_expr (const DovekieSearchPlan *plan);

/* For a definite plan, the FTS5 MATCH expression whose rows certainly
 * contain the needle: "prefix" *, OR "#prefix" when it is a trigram; or
 * the boundary term. NULL when the plan is not definite. Free with
 * g_free. */
gchar *dovekie_search_plan_proof_expr (const DovekieSearchPlan *plan);

/* Whether a definite plan's candidates are all proven (the needle is
 * three code points: the proof expression finds every match). */
gboolean dovekie_search_plan_proof_is_complete (const DovekieSearchPlan *plan);

G_END_DECLS

#endif
