/* Query planning: needle -> index terms. See dovekie-search-plan.h. */
#include "dovekie-config.h"

#include <string.h>

#include "dovekie-search-plan.h"

/* The next code point of s[0..len), or (gunichar) -1 for an invalid byte;
 * *step_r is at least 1, so the walk always moves on. */
static gunichar
next_char (const gchar *s, gsize len, gsize *step_r)
{
  gunichar c;

  /* Most mail text is ASCII. */
  if ((guchar) *s < 0x80)
    {
      *step_r = 1;
      return (guchar) *s;
    }
  c = g_utf8_get_char_validated (s, (gssize) MIN (len, 6));

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

/* The bytes of the (at most) `chars` code points that start s[0..avail). */
static gsize
chars_len (const gchar *s, gsize avail, guint chars)
{
  gsize n = 0;

  for (guint i = 0; i < chars && n < avail; i++)
    {
      n++;
      while (n < avail && is_continuation ((guchar) s[n]))
        n++;
    }
  return n;
}

/* The words of one text already given, as an open-addressing set of
 * (offset, length) into the text. When it is half full, further words are
 * not remembered: they are given again, which is only slower. */
typedef struct {
  guint32 offset, len;
} WordSlot;

typedef struct {
  const gchar *text;
  WordSlot *slots;
  guint mask, used;
} WordSet;

/* Slots of the largest set (16k words, 128 KiB), and of one on the stack. */
#define WORD_SET_MAX_SLOTS 16384
#define WORD_SET_STACK_SLOTS 512

/* Slots of the largest set of grams (1 MiB): the distinct grams of a row
 * of random letters and digits (47k) leave it a third full. */
#define GRAM_SET_MAX_SLOTS (1u << 17)

/* The gram set of a row, its slots allocated when the row's first long
 * word comes (most rows have none): enough that the grams of the row keep
 * it at most half full, up to GRAM_SET_MAX_SLOTS. NULL stays NULL. */
static WordSet *
word_set_ready (WordSet *grams, gsize text_len)
{
  guint slots = 64;

  if (grams == NULL || grams->slots != NULL)
    return grams;
  while (slots < text_len * 2 && slots < GRAM_SET_MAX_SLOTS)
    slots *= 2;
  grams->slots = g_new0 (WordSlot, slots);
  grams->mask = slots - 1;
  return grams;
}

/* Whether text[start..start+len) was seen before; remembers it if not. */
static gboolean
word_set_seen (WordSet *set, gsize start, gsize len)
{
  const gchar *word = set->text + start;
  guint32 hash = 2166136261u;
  guint i;

  if (set->slots == NULL)
    return FALSE;
  for (gsize j = 0; j < len; j++)
    hash = (hash ^ (guchar) word[j]) * 16777619u;
  for (i = hash & set->mask; set->slots[i].len != 0; i = (i + 1) & set->mask)
    if (set->slots[i].len == len && memcmp (set->text + set->slots[i].offset, word, len) == 0)
      return TRUE;
  if (set->used * 2 < set->mask + 1)
    {
      set->slots[i].offset = (guint32) start;
      set->slots[i].len = (guint32) len;
      set->used++;
    }
  return FALSE;
}

/* Calls `func` for the terms of one word of `len` bytes and `chars` code
 * points: the word itself when it is short, else its marked grams
 * (4-grams, or trigrams past DOVEKIE_SEARCH_GRAM_WORD_BYTES). A gram
 * already in `grams` (when given: the grams of the row so far) is not
 * given again: a 10 MB word of 36 letters and digits has 10M trigrams but
 * 47k distinct ones, and FTS5 looking each up in its hash table took most
 * of the 8 s of indexing it. */
static gboolean
word_terms (const gchar *word, gsize len, guint chars, WordSet *grams,
            DovekieSearchTermFunc func, gpointer data)
{
  gchar gram[1 + DOVEKIE_SEARCH_GRAM_CHARS * 4];
  guint gram_chars = len <= DOVEKIE_SEARCH_GRAM_WORD_BYTES ? DOVEKIE_SEARCH_GRAM_CHARS : 3;

  if (len <= DOVEKIE_SEARCH_WORD_BYTES)
    return func (data, word, len);
  for (gsize i = 0; i < len && chars >= 3; i++)
    {
      /* The next `gram_chars` code points, or the last three. Valid
       * UTF-8: a code point takes at most 4 bytes. */
      gsize n;

      if (is_continuation ((guchar) word[i]))
        continue;
      n = MIN (chars_len (word + i, len - i, MIN (chars, gram_chars)), sizeof gram - 1);
      if (grams == NULL || !word_set_seen (grams, (gsize) (word + i - grams->text), n))
        {
          gram[0] = DOVEKIE_SEARCH_GRAM_MARK;
          memcpy (gram + 1, word + i, n);
          if (!func (data, gram, 1 + n))
            return FALSE;
        }
      chars--;
    }
  /* And its last two code points, so that "#xy" * finds a pair of code
   * points anywhere in a long word. */
  {
    gsize start = len;

    for (guint k = 0; k < 2; k++)
      do
        start--;
      while (start > 0 && is_continuation ((guchar) word[start]));
    if (grams == NULL || !word_set_seen (grams, (gsize) (word + start - grams->text), len - start))
      {
        gram[0] = DOVEKIE_SEARCH_GRAM_MARK;
        memcpy (gram + 1, word + start, len - start);
        if (!func (data, gram, 1 + len - start))
          return FALSE;
      }
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


/* Boundary terms already given in a row: each packed into 64 bits (its
 * two code points, 4 bytes at most each, zero-padded; never 0). A row of
 * prose has one boundary per word but few distinct ones, and FTS5 takes a
 * term it already holds for the row slower than this set answers. */
#define BOUNDARY_SET_SLOTS 1024

typedef struct {
  guint64 slots[BOUNDARY_SET_SLOTS];
  /* The slots in use: a power of two up to BOUNDARY_SET_SLOTS, fewer for
   * a short row (most header rows), whose set is then cleared in a few
   * bytes instead of 8 KiB (boundary_set_init). */
  guint mask, shift;
  guint used;
  /* The single ASCII code points seen (bit c), apart from the slots: they
   * are most of a row's characters, and a bit test costs less than a
   * probe (the probes were 11% of a build's CPU). */
  guint64 ascii[2];
} BoundarySet;

/* An empty set for a row of `len` bytes: each byte starts at most one
 * code point, pair and triple, so 8 * len slots (at least 16) keep it at
 * most half full; past that it stops remembering, as the largest one
 * does (terms are then given again, which is only slower). */
static void
boundary_set_init (BoundarySet *set, gsize len)
{
  guint slots = 16, bits = 4;

  while (slots < BOUNDARY_SET_SLOTS && slots < len * 8)
    {
      slots *= 2;
      bits++;
    }
  memset (set->slots, 0, slots * sizeof set->slots[0]);
  set->mask = slots - 1;
  set->shift = 64 - bits;
  set->used = 0;
  set->ascii[0] = set->ascii[1] = 0;
}

/* Whether the two code points left[0..left_len) and right[0..right_len)
 * (right_len 0 for one code point) were seen before; remembers them if
 * not (while the set is half empty). */
static gboolean
boundary_seen (BoundarySet *set, const gchar *left, gsize left_len, const gchar *right,
               gsize right_len)
{
  guint64 key = 0;
  guint i;

  if (set == NULL)
    return FALSE;
  memcpy (&key, left, MIN (left_len, 4));
  if (right_len > 0)
    memcpy ((gchar *) &key + 4, right, MIN (right_len, 4));
  for (i = (guint) ((key * 0x9e3779b97f4a7c15u) >> set->shift) & set->mask;
       set->slots[i] != 0; i = (i + 1) & set->mask)
    if (set->slots[i] == key)
      return TRUE;
  if (set->used * 2 < set->mask + 1)
    {
      set->slots[i] = key;
      set->used++;
    }
  return FALSE;
}

/* Walks the words of text: their terms (only for a word's first
 * occurrence when `set` is given) and the boundary terms (only once each
 * when `boundaries` is given). */
static gboolean
terms_walk (const gchar *text, gsize len, WordSet *set, WordSet *grams, BoundarySet *boundaries,
            DovekieSearchTermFunc func, gpointer data)
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
          !boundary_seen (boundaries, text + prev_last, prev_end - prev_last, text + start,
                          char_len (text + start, pos - start)) &&
          !func (data, boundary, boundary_term (text + prev_last, prev_end - prev_last,
                                                text + start, pos - start, boundary)))
        return FALSE;
      if (chars >= 2 && (set == NULL || !word_set_seen (set, start, pos - start)) &&
          !word_terms (text + start, pos - start, chars,
                       pos - start > DOVEKIE_SEARCH_WORD_BYTES ? word_set_ready (grams, len) : NULL,
                       func, data))
        return FALSE;
      have_prev = TRUE;
      prev_end = pos;
      prev_last = last;
    }
  return TRUE;
}

/* Whether the pair of code points a, b (neither white space) is a term:
 * one of them is not an ASCII word character. */
static gboolean
is_char_pair (gunichar a, gunichar b)
{
  return a >= 0x80 || b >= 0x80 || !dovekie_search_is_word_char (a) ||
         !dovekie_search_is_word_char (b);
}

/* Whether the three code points a, b, c (none white space) are a term:
 * none of them is a word character (schema 9: "...", "://", "$$$"). */
static gboolean
is_char_triple (gunichar a, gunichar b, gunichar c)
{
  return !dovekie_search_is_word_char (a) && !dovekie_search_is_word_char (b) &&
         !dovekie_search_is_word_char (c);
}

/* Whether the single code point at[0..len) was seen before in the row;
 * remembers it if not (as boundary_seen). */
static gboolean
char_seen (BoundarySet *set, const gchar *at, gsize len)
{
  guchar c = (guchar) at[0];
  guint64 bit;

  if (set == NULL || len != 1 || c >= 0x80)
    return boundary_seen (set, at, len, NULL, 0);
  bit = G_GUINT64_CONSTANT (1) << (c & 63);
  if ((set->ascii[c >> 6] & bit) != 0)
    return TRUE;
  set->ascii[c >> 6] |= bit;
  return FALSE;
}

/* Triples already given in a row, packed as three ASCII bytes (never
 * 0): a row has few distinct ones (about four per corpus message). */
static gboolean
triple_seen (BoundarySet *set, const gchar *at)
{
  return boundary_seen (set, at, 3, "\x01", 1);
}

/* Walks the character terms of text (see dovekie-search-plan.h), each
 * only once when `seen` is given. An invalid byte is no code point: it
 * makes no term, and no pair or triple across it. */
static gboolean
chars_walk (const gchar *text, gsize len, BoundarySet *seen, DovekieSearchTermFunc func,
            gpointer data)
{
  gchar term[1 + 8];
  gsize pos = 0, prev = 0, prev_len = 0;
  gunichar prev_c = (gunichar) -1, prev2_c = (gunichar) -1;

  term[0] = DOVEKIE_SEARCH_CHAR_MARK;
  while (pos < len)
    {
      gsize step;
      gunichar c = next_char (text + pos, len - pos, &step);

      if (!dovekie_search_is_char_term (c))
        {
          prev_c = prev2_c = (gunichar) -1;
          pos += step;
          continue;
        }
      if (!char_seen (seen, text + pos, step))
        {
          memcpy (term + 1, text + pos, step);
          if (!func (data, term, 1 + step))
            return FALSE;
        }
      if (prev_c != (gunichar) -1 && is_char_pair (prev_c, c) &&
          !boundary_seen (seen, text + prev, prev_len, text + pos, step))
        {
          memcpy (term + 1, text + prev, prev_len);
          memcpy (term + 1 + prev_len, text + pos, step);
          if (!func (data, term, 1 + prev_len + step))
            return FALSE;
        }
      /* Three code points that are not word characters are ASCII, one
       * byte each: the triple is text[pos - 2..pos]. */
      if (prev2_c != (gunichar) -1 && prev_c != (gunichar) -1 &&
          is_char_triple (prev2_c, prev_c, c) && !triple_seen (seen, text + pos - 2))
        {
          memcpy (term + 1, text + pos - 2, 3);
          if (!func (data, term, 1 + 3))
            return FALSE;
        }
      prev = pos;
      prev_len = step;
      prev2_c = prev_c;
      prev_c = c;
      pos += step;
    }
  return TRUE;
}

gboolean
dovekie_search_terms_foreach (const gchar *text, gsize len, DovekieSearchTermFunc func,
                              gpointer data)
{
  return terms_walk (text, len, NULL, NULL, NULL, func, data) &&
         chars_walk (text, len, NULL, func, data);
}

gboolean
dovekie_search_terms_foreach_unique (const gchar *text, gsize len, DovekieSearchTermFunc func,
                                     gpointer data)
{
  WordSlot stack_slots[WORD_SET_STACK_SLOTS];
  g_autofree WordSlot *heap_slots = NULL;
  WordSet set = { text, NULL, 0, 0 }, grams = { text, NULL, 0, 0 };
  BoundarySet boundaries, chars;
  guint slots = 64;
  gboolean ok;

  /* A word of two code points or more and its separator take three
   * bytes at least: len * 2 / 3 slots keep the set at most half full. */
  while (slots < len / 3 * 2 && slots < WORD_SET_MAX_SLOTS)
    slots *= 2;
  if (len < G_MAXUINT32)
    {
      if (slots <= WORD_SET_STACK_SLOTS)
        set.slots = stack_slots;
      else
        set.slots = heap_slots = g_new (WordSlot, slots);
      memset (set.slots, 0, slots * sizeof (WordSlot));
      set.mask = slots - 1;
    }
  boundary_set_init (&boundaries, len);
  boundary_set_init (&chars, len);
  ok = terms_walk (text, len, &set, len < G_MAXUINT32 ? &grams : NULL, &boundaries, func, data) &&
       chars_walk (text, len, &chars, func, data);
  g_free (grams.slots);
  return ok;
}

/* ---- planning ---- */

static void
run_free (gpointer data)
{
  DovekieSearchRun *run = data;

  g_free (run->prefix);
  g_ptr_array_unref (run->words);
  g_ptr_array_unref (run->grams);
  g_ptr_array_unref (run->trigrams);
  g_free (run);
}

/* Adds to `grams` at most DOVEKIE_SEARCH_PLAN_RUN_GRAMS marked grams of
 * `gram_chars` code points of the run needle[start..end) of `chars` code
 * points, spread over it, the first and the last among them. */
static void
pick_grams (const gchar *needle, gsize start, gsize end, guint chars, guint gram_chars,
            GPtrArray *grams)
{
  guint count = chars - gram_chars + 1, wanted = MIN (count, DOVEKIE_SEARCH_PLAN_RUN_GRAMS);
  guint index = 0, next = 0, taken = 0;

  for (gsize i = start; i < end && taken < wanted; i++)
    {
      if (is_continuation ((guchar) needle[i]))
        continue;
      if (index == next)
        {
          gsize n = chars_len (needle + i, end - i, gram_chars);
          gchar *term = g_malloc (n + 2);

          term[0] = DOVEKIE_SEARCH_GRAM_MARK;
          memcpy (term + 1, needle + i, n);
          term[n + 1] = '\0';
          g_ptr_array_add (grams, term);
          taken++;
          next = wanted > 1 ? (guint) ((guint64) taken * (count - 1) / (wanted - 1)) : count;
        }
      index++;
    }
}

/* Adds the run needle[start..end) (word characters, valid UTF-8) of
 * `chars` code points, three or more. */
static void
plan_run (const gchar *needle, gsize start, gsize end, guint chars, DovekieSearchPlan *plan)
{
  DovekieSearchRun *run;

  if (plan->runs->len >= DOVEKIE_SEARCH_PLAN_MAX_RUNS)
    return;
  run = g_new0 (DovekieSearchRun, 1);
  if (end - start <= DOVEKIE_SEARCH_WORD_BYTES)
    run->prefix = g_strndup (needle + start, end - start);
  run->words = g_ptr_array_new_with_free_func (g_free);
  run->grams = g_ptr_array_new_with_free_func (g_free);
  run->trigrams = g_ptr_array_new_with_free_func (g_free);
  /* A run of three code points has one gram, itself, asked as a prefix:
   * it matches the 4-grams that start with it and every trigram. */
  run->gram_is_prefix = chars < DOVEKIE_SEARCH_GRAM_CHARS;
  pick_grams (needle, start, end, chars, MIN (chars, DOVEKIE_SEARCH_GRAM_CHARS), run->grams);
  if (!run->gram_is_prefix)
    pick_grams (needle, start, end, chars, 3, run->trigrams);
  g_ptr_array_add (plan->runs, run);
}

/* Adds the marked term of needle[start..start+n) to the plan's character
 * terms unless it is there or they are full. */
static void
add_char_term (const gchar *needle, gsize start, gsize n, DovekieSearchPlan *plan)
{
  gchar *term;

  if (plan->chars->len >= DOVEKIE_SEARCH_PLAN_MAX_RUNS)
    return;
  term = g_malloc (n + 2);
  term[0] = DOVEKIE_SEARCH_CHAR_MARK;
  memcpy (term + 1, needle + start, n);
  term[n + 1] = '\0';
  for (guint i = 0; i < plan->chars->len; i++)
    if (strcmp (g_ptr_array_index (plan->chars, i), term) == 0)
      {
        g_free (term);
        return;
      }
  g_ptr_array_add (plan->chars, term);
}

/* Fills the plan's character terms. A needle that is one character term
 * gets only that one, which proves it. Otherwise its triples, its pairs
 * and its code points that are not word characters ("$", "@"), and, when
 * the needle has no run of its own, its non-ASCII code points ("é", "日"):
 * those narrow; ASCII letters and digits are in nearly every message, and a
 * run narrows more than its code points. Returns TRUE when the needle is
 * one character term. */
static gboolean
plan_chars (const gchar *needle, gsize len, DovekieSearchPlan *plan)
{
  gunichar c[2];
  gsize step[2], pos = 0, prev = 0, prev_len = 0;
  gunichar prev_c = (gunichar) -1, prev2_c = (gunichar) -1;

  c[0] = len > 0 ? next_char (needle, len, &step[0]) : (gunichar) -1;
  if (dovekie_search_is_char_term (c[0]))
    {
      if (step[0] == len)
        {
          add_char_term (needle, 0, len, plan);
          return TRUE;
        }
      c[1] = next_char (needle + step[0], len - step[0], &step[1]);
      if (step[0] + step[1] == len && dovekie_search_is_char_term (c[1]) &&
          is_char_pair (c[0], c[1]))
        {
          add_char_term (needle, 0, len, plan);
          return TRUE;
        }
      if (len == 3 && step[0] == 1 && step[1] == 1 && dovekie_search_is_char_term (c[1]))
        {
          gunichar c2 = (guchar) needle[2];

          if (dovekie_search_is_char_term (c2) && is_char_triple (c[0], c[1], c2))
            {
              add_char_term (needle, 0, len, plan);
              return TRUE;
            }
        }
    }
  while (pos < len)
    {
      gsize n;
      gunichar here = next_char (needle + pos, len - pos, &n);

      if (!dovekie_search_is_char_term (here))
        here = (gunichar) -1;
      else
        {
          if (prev2_c != (gunichar) -1 && prev_c != (gunichar) -1 &&
              is_char_triple (prev2_c, prev_c, here))
            add_char_term (needle, pos - 2, 3, plan);
          if (prev_c != (gunichar) -1 && is_char_pair (prev_c, here))
            add_char_term (needle, prev, prev_len + n, plan);
          if (!dovekie_search_is_word_char (here) || (here >= 0x80 && plan->runs->len == 0))
            add_char_term (needle, pos, n, plan);
        }
      prev = pos;
      prev_len = n;
      prev2_c = here == (gunichar) -1 ? here : prev_c;
      prev_c = here;
      pos += n;
    }
  return FALSE;
}

gboolean
dovekie_search_plan_build (const gchar *needle, gsize len, DovekieIndexScope scope,
                           DovekieSearchPlan *plan)
{
  gboolean one_char;
  gsize pos = 0, run_start = 0, run_last = 0, prev_end = 0, prev_last = 0;
  guint run_chars = 0;
  gboolean one_run = TRUE, have_prev = FALSE;

  plan->runs = g_ptr_array_new_with_free_func (run_free);
  plan->boundaries = g_ptr_array_new_with_free_func (g_free);
  plan->chars = g_ptr_array_new_with_free_func (g_free);
  plan->definite = FALSE;

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
                                           needle + pos, step, term);
                  g_ptr_array_add (plan->boundaries, g_strndup (term, n));
                }
            }
          run_last = pos;
        }
      else
        {
          if (pos < len)
            one_run = FALSE;
          /* A needle that is two ASCII word characters ("zx") is a run
           * too: the short words that contain it, and "#zx" *. Not
           * within a longer needle, whose other terms narrow more than
           * the thousands of words a pair of letters is found in. */
          if (run_chars >= 3 || (run_chars == 2 && run_start == 0 && pos == len && len == 2))
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
  one_char = plan_chars (needle, len, plan);
  if (plan->runs->len == 0 && plan->boundaries->len == 0 && plan->chars->len == 0)
    return FALSE;
  if (one_char)
    plan->definite = scope != DOVEKIE_INDEX_SCOPE_HEADER;
  else if (plan->runs->len > 0)
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
  g_clear_pointer (&plan->runs, g_ptr_array_unref);
  g_clear_pointer (&plan->boundaries, g_ptr_array_unref);
  g_clear_pointer (&plan->chars, g_ptr_array_unref);
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

/* ("#gram" AND ...), with " *" for a run of three code points. */
static void
append_all (GString *expr, GPtrArray *grams, gboolean prefix)
{
  g_string_append_c (expr, '(');
  for (guint j = 0; j < grams->len; j++)
    {
      if (j > 0)
        g_string_append (expr, " AND ");
      append_literal (expr, g_ptr_array_index (grams, j));
    }
  if (prefix)
    g_string_append (expr, " *");
  g_string_append_c (expr, ')');
}

/* The run in long words: its 4-grams, OR its trigrams (very long words). */
static void
append_grams (GString *expr, const DovekieSearchRun *run)
{
  append_all (expr, run->grams, run->gram_is_prefix);
  if (run->trigrams->len > 0)
    {
      g_string_append (expr, " OR ");
      append_all (expr, run->trigrams, FALSE);
    }
}

/* ("word" OR ...) of words[from..to). */
static void
append_words (GString *expr, GPtrArray *words, guint from, guint to)
{
  g_string_append_c (expr, '(');
  for (guint j = from; j < to; j++)
    {
      if (j > from)
        g_string_append (expr, " OR ");
      append_literal (expr, g_ptr_array_index (words, j));
    }
  g_string_append_c (expr, ')');
}

/* Adds to `out` one expression per DOVEKIE_SEARCH_PLAN_EXPR_WORDS words
 * of `words`. */
static void
add_word_parts (GPtrArray *out, GPtrArray *words)
{
  for (guint from = 0; from < words->len; from += DOVEKIE_SEARCH_PLAN_EXPR_WORDS)
    {
      GString *expr = g_string_new (NULL);

      append_words (expr, words, from, MIN (words->len, from + DOVEKIE_SEARCH_PLAN_EXPR_WORDS));
      g_ptr_array_add (out, g_string_free (expr, FALSE));
    }
}

GPtrArray *
dovekie_search_plan_match_exprs (const DovekieSearchPlan *plan)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  GString *expr = g_string_new (NULL);
  const DovekieSearchRun *wide = NULL;

  for (guint i = 0; i < plan->runs->len; i++)
    {
      const DovekieSearchRun *run = g_ptr_array_index (plan->runs, i);
      gboolean with_words = !plan->definite && run->words->len > 0;

      if (with_words && run->words->len > DOVEKIE_SEARCH_PLAN_EXPR_WORDS)
        {
          /* Too many words for one expression: left out of the AND, which
           * stays a superset. */
          if (wide == NULL)
            wide = run;
          continue;
        }
      if (expr->len > 0)
        g_string_append (expr, " AND ");
      g_string_append_c (expr, '(');
      if (with_words)
        {
          append_words (expr, run->words, 0, run->words->len);
          g_string_append (expr, " OR ");
        }
      append_grams (expr, run);
      g_string_append_c (expr, ')');
    }
  for (guint i = 0; i < plan->boundaries->len; i++)
    {
      if (expr->len > 0)
        g_string_append (expr, " AND ");
      append_literal (expr, g_ptr_array_index (plan->boundaries, i));
    }
  for (guint i = 0; i < plan->chars->len; i++)
    {
      if (expr->len > 0)
        g_string_append (expr, " AND ");
      append_literal (expr, g_ptr_array_index (plan->chars, i));
    }
  if (expr->len > 0)
    {
      g_ptr_array_add (out, g_string_free (expr, FALSE));
      return out;
    }
  g_string_free (expr, TRUE);
  /* Only runs in too many words: the first one alone, in parts. */
  if (wide != NULL)
    {
      GString *grams = g_string_new (NULL);

      add_word_parts (out, wide->words);
      append_grams (grams, wide);
      g_ptr_array_add (out, g_string_free (grams, FALSE));
    }
  return out;
}

gboolean
dovekie_search_plan_proof_is_complete (const DovekieSearchPlan *plan)
{
  const DovekieSearchRun *run;

  if (!plan->definite)
    return FALSE;
  if (plan->runs->len == 0)
    return TRUE; /* a boundary term or a character term */
  run = g_ptr_array_index (plan->runs, 0);
  return run->gram_is_prefix;
}

GPtrArray *
dovekie_search_plan_proof_exprs (const DovekieSearchPlan *plan)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  const DovekieSearchRun *run;

  if (!plan->definite)
    return out;
  if (plan->runs->len == 0)
    {
      GString *expr = g_string_new (NULL);

      /* A definite plan without runs is one boundary or one character. */
      append_literal (expr, g_ptr_array_index (plan->boundaries->len > 0 ? plan->boundaries
                                                                          : plan->chars, 0));
      g_ptr_array_add (out, g_string_free (expr, FALSE));
      return out;
    }
  run = g_ptr_array_index (plan->runs, 0);
  add_word_parts (out, run->words);
  /* Three or four code points: the gram itself, found in long words up
   * to DOVEKIE_SEARCH_GRAM_WORD_BYTES (and, three, in longer ones). */
  if (g_utf8_strlen (run->prefix, -1) <= DOVEKIE_SEARCH_GRAM_CHARS)
    {
      GString *expr = g_string_new (NULL);

      append_all (expr, run->grams, run->gram_is_prefix);
      g_ptr_array_add (out, g_string_free (expr, FALSE));
    }
  return out;
}
