/* Query planning for the search module: which index terms a needle needs.
 *
 * Words. The index cuts each text into words: maximal runs of word
 * characters (ASCII letters and digits, "-", "_", and every non-ASCII code
 * point). All others (white space, control characters, other ASCII
 * punctuation) separate words.
 *
 * Terms. A word of at most DOVEKIE_SEARCH_WORD_BYTES bytes (a short
 * word) is indexed as itself; a longer word by its marked grams:
 * DOVEKIE_SEARCH_GRAM_MARK and the DOVEKIE_SEARCH_GRAM_CHARS code points
 * that start at each of its code points, and its last three code points;
 * a word longer than DOVEKIE_SEARCH_GRAM_WORD_BYTES by its marked trigrams
 * (the three code points at each position); either also by its last two
 * code points, marked (schema 8). Every term is a substring of
 * the text (after its mark). Where exactly one space separates two words,
 * the index also holds a boundary term: the last code point of the first,
 * the space, the first code point of the second.
 *
 * Characters. Every code point of the text but white space (space, tab,
 * CR, LF) and U+FFFD is also a term, DOVEKIE_SEARCH_CHAR_MARK and the
 * code point (schema 8); and so is each pair of adjacent such code points of which at least one
 * is not an ASCII word character ("$$", "p:", "//", "@y", "e.", "中文",
 * and "e" with a combining accent, which is how the case folding writes
 * "é"), the mark and the pair. A needle of one such code point, or of
 * such a pair, is in the text exactly when its term is in the row: these
 * prove searches for one character (punctuation, non-ASCII, a letter) and
 * for two with punctuation or non-ASCII. So does each run of three
 * adjacent code points none of which is a word character (schema 9:
 * "...", "://", "$$$"; ASCII, so three bytes): a needle that is such a
 * triple is proven by its term. In longer needles the pairs and triples
 * narrow the candidates. Pairs of two ASCII word characters are not
 * terms: they are most of a text's pairs (four in five at corpus x1), and
 * the words narrow those needles; nor are triples with a word character
 * (about 160 distinct ones per corpus message, against 4 without).
 *
 * Vocabulary. Every short word of two code points or more (three before
 * schema 8) that a row holds is also in the index's vocabulary
 * (dovekie-search-index.h). So:
 *   - a run R of word characters (two or more code points) lies in a
 *     short word exactly when that word is among the vocabulary words that
 *     contain R (the words of R: the lookup scans the vocabulary, a few
 *     megabytes, in memory), and in a long word only if every 4-gram of R
 *     or every trigram of R is there as a marked term;
 *   - an R of two or three code points is in the text exactly when one of
 *     those words or "#R" * matches; one of four is when "#R" is there;
 *   - "x y" (two word code points and a space) is in the text exactly when
 *     its boundary term is.
 * A row then holds each of its distinct short words once, where a suffix
 * index held every suffix of each: 3.5 times fewer terms for FTS5 to take
 * at corpus x1, which is what indexing spends most of its time on.
 *
 * A needle is planned as its runs of word characters (of three code
 * points or more; a needle of just two ASCII word characters, "zx", is
 * one run of two, proven as above). A message may
 * contain it only if each run is in a short
 * or in a long word, and (in every scope but HEADER) each single space between two
 * runs is a boundary term: the AND over runs of (its words OR 4-grams OR
 * trigrams) and over those boundaries gives a superset of the matches.
 * White space is never required: it may be where the host's text and
 * the index's legitimately differ (a MIME part boundary, a folded header
 * line); in a header search Dovecot may also compress white space. Other
 * code points are required as character terms (U+FFFD excepted).
 * A needle that is one run, at most DOVEKIE_SEARCH_WORD_BYTES long, is
 * proven by the words that contain it (and by its marked gram when it is
 * three or four code points); for three code points that finds every
 * match, else only the messages that hold it in long words alone are left
 * to verify. A needle "x y" is proven by its boundary term. A needle that
 * is one character term (see Characters) is proven by it; the character
 * terms of any needle join the AND of its candidates.
 */
#ifndef DOVEKIE_SEARCH_PLAN_H
#define DOVEKIE_SEARCH_PLAN_H

#include <glib.h>
#include <string.h>

#include "dovekie/index.h"

G_BEGIN_DECLS

/* Grams asked per run, and runs asked per needle: more narrow the
 * candidates less and less, and any subset keeps the superset property. */
#define DOVEKIE_SEARCH_PLAN_RUN_GRAMS 6
#define DOVEKIE_SEARCH_PLAN_MAX_RUNS 8
/* Words ORed in one MATCH expression: FTS5 steps an OR through every one
 * of its terms for each row, so a run found in thousands of words ("ing")
 * is asked in parts whose answers are joined. */
#define DOVEKIE_SEARCH_PLAN_EXPR_WORDS 256

/* Longest word indexed as itself (and kept in the vocabulary), in bytes. */
#define DOVEKIE_SEARCH_WORD_BYTES 20
/* First byte of a gram term; never a word character. */
#define DOVEKIE_SEARCH_GRAM_MARK '#'
/* First byte of a character or character pair term; never a word
 * character, never white space. */
#define DOVEKIE_SEARCH_CHAR_MARK '!'
/* Code points of a gram. Four, not three: the trigrams of a long run of
 * random letters (base64 that a broken MIME part left as text) cover
 * nearly every trigram, so that message was a candidate of nearly every
 * search; its 4-grams cover a small part of all 4-grams. */
#define DOVEKIE_SEARCH_GRAM_CHARS 4
/* Longest word indexed by 4-grams, in bytes; longer ones (a megabyte of
 * base64 on one line) get trigrams: their 4-grams would nearly all be
 * distinct terms, slow to index (a 10 MB word took seconds more). */
#define DOVEKIE_SEARCH_GRAM_WORD_BYTES 256

typedef struct {
  /* The run (UTF-8, word characters only, three or more code points)
   * when it is short enough to lie in a short word, else NULL. */
  gchar *prefix;
  /* The vocabulary words that contain the run (UTF-8), empty until the
   * lookup fills it (dovekie-search-lookup.c), and always when prefix is
   * NULL; owned by the run. */
  GPtrArray *words;
  /* Marked grams of the run (DOVEKIE_SEARCH_GRAM_MARK and
   * DOVEKIE_SEARCH_GRAM_CHARS code points, or the whole run when it has
   * three), at most DOVEKIE_SEARCH_PLAN_RUN_GRAMS, never empty. */
  GPtrArray *grams;
  /* Marked trigrams of the run when it has four code points or more (it
   * may lie in a word longer than DOVEKIE_SEARCH_GRAM_WORD_BYTES), at
   * most DOVEKIE_SEARCH_PLAN_RUN_GRAMS; else empty. */
  GPtrArray *trigrams;
  /* TRUE when the run has three code points: its one gram is asked as an
   * FTS5 prefix ("#abc" *), which matches 4-grams and trigrams. */
  gboolean gram_is_prefix;
} DovekieSearchRun;

typedef struct {
  /* The needle's runs of word characters with three or more code points
   * (DovekieSearchRun *), in needle order, at most
   * DOVEKIE_SEARCH_PLAN_MAX_RUNS; owned by the plan. */
  GPtrArray *runs;
  /* Boundary terms (UTF-8 "x y") of the runs of any length that one
   * space separates, every scope but HEADER, at most
   * DOVEKIE_SEARCH_PLAN_MAX_RUNS; owned by the plan. */
  GPtrArray *boundaries;
  /* Character terms (DOVEKIE_SEARCH_CHAR_MARK and one code point, a
   * pair with a code point that is not an ASCII word character, or a
   * triple of code points none of which is a word character) that the
   * needle holds, at most
   * DOVEKIE_SEARCH_PLAN_MAX_RUNS; owned by the plan. */
  GPtrArray *chars;
  /* TRUE when the scope's text is stored verbatim (every scope but
   * HEADER, whose search may compress white space) and the
   * needle is one run of at most DOVEKIE_SEARCH_WORD_BYTES bytes, or is
   * one boundary term, or one character term: then
   * dovekie_search_plan_proof_exprs proves matches. */
  gboolean definite;
} DovekieSearchPlan;

/* Whether code point `c` belongs to a word (see above). */
static inline gboolean
dovekie_search_is_word_char (gunichar c)
{
  return c >= 0x80 || g_ascii_isalnum (c) || c == '-' || c == '_';
}

/* Whether code point `c` is white space, which no character term holds. */
static inline gboolean
dovekie_search_is_space (gunichar c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Whether code point `c` may be in a character term: not white space,
 * not U+0000 (terms are NUL-terminated strings; the fuzz target found a
 * needle whose term was cut at it), and not U+FFFD, which the index
 * writes in place of invalid UTF-8 where Dovecot's own search sees other
 * bytes (test_search_robust.py found a message that Dovecot does not
 * match with "\ufffd"). */
static inline gboolean
dovekie_search_is_char_term (gunichar c)
{
  return c != (gunichar) -1 && c != 0 && c != 0xfffd && !dovekie_search_is_space (c);
}

/* Called once per term of a text: `term` (`len` bytes, not terminated)
 * is valid only during the call. Returns FALSE to stop. */
typedef gboolean (*DovekieSearchTermFunc) (gpointer data, const gchar *term, gsize len);

/* Calls `func` for every term of `text` (`len` bytes of valid UTF-8): the
 * word, gram and boundary terms in text order, then the character terms
 * in text order, repeats included. Returns FALSE when `func` stopped the
 * walk. */
gboolean dovekie_search_terms_foreach (const gchar *text, gsize len, DovekieSearchTermFunc func,
                                       gpointer data);

/* Whether a term of dovekie_search_terms_foreach is a short word (not a
 * marked gram, not a boundary term): the vocabulary's words. */
static inline gboolean
dovekie_search_term_is_word (const gchar *term, gsize len)
{
  return len > 0 && term[0] != DOVEKIE_SEARCH_GRAM_MARK && term[0] != DOVEKIE_SEARCH_CHAR_MARK &&
         memchr (term, ' ', len) == NULL;
}

/* Like dovekie_search_terms_foreach, but the terms of a word that occurred
 * before in `text` may be left out: every distinct term is still given at
 * least once, which is all a detail=none index records of one row. */
gboolean dovekie_search_terms_foreach_unique (const gchar *text, gsize len,
                                              DovekieSearchTermFunc func, gpointer data);

/* Plans a lookup of `needle` (`len` bytes; invalid UTF-8 bytes count as
 * separators). Returns FALSE, with no terms, when the needle has no run of
 * three word code points, no boundary and no character term: the index
 * cannot help then. Clear the plan with dovekie_search_plan_clear in
 * either case. */
gboolean dovekie_search_plan_build (const gchar *needle, gsize len, DovekieIndexScope scope,
                                    DovekieSearchPlan *plan);
void dovekie_search_plan_clear (DovekieSearchPlan *plan);

/* The FTS5 MATCH expressions of the candidates of a handled plan whose
 * runs have their words: the rows that match any of them. Usually one:
 * for each run (("word" OR ...) OR ("#4-gram" AND ...) OR ("#trigram" AND
 * ...)) (("#abc" *) for a run of three code points), each boundary term
 * and each character term, joined by AND; string literals have "" doubled. For a definite
 * plan without the words, which the proof covers. A run in more than
 * DOVEKIE_SEARCH_PLAN_EXPR_WORDS words is left out of the AND; when
 * nothing else is left, its words in parts of that many, and its grams.
 * Free with g_ptr_array_unref. */
GPtrArray *dovekie_search_plan_match_exprs (const DovekieSearchPlan *plan);

/* For a definite plan, the FTS5 MATCH expressions whose rows certainly
 * contain the needle: the run's words (in parts of at most
 * DOVEKIE_SEARCH_PLAN_EXPR_WORDS), and its marked gram when the needle is
 * at most DOVEKIE_SEARCH_GRAM_CHARS code points; or the boundary term; or
 * the character term.
 * Empty when the plan is not definite. Free with g_ptr_array_unref. */
GPtrArray *dovekie_search_plan_proof_exprs (const DovekieSearchPlan *plan);

/* Whether a definite plan's candidates are all proven (the needle is a
 * boundary term, a character term, or three code points: the proof
 * expression finds every match). */
gboolean dovekie_search_plan_proof_is_complete (const DovekieSearchPlan *plan);

G_END_DECLS

#endif
