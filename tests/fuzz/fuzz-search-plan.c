/* Fuzz target: query planning and the index's text intake.
 *
 * Input: byte 0 picks the scope, the rest is both a needle and a message
 * text. The planner must never crash, every term must be three valid
 * code points, and a planned needle that was indexed as a body must be
 * found (the superset property).
 *
 * The index is emptied (its reset) every FUZZ_RESET_EVERY inputs. Without
 * that, every input stayed in one index for the whole run: each lookup
 * read ever longer posting lists and memory grew, so the rate fell from
 * ~11,000 to ~2,500 inputs/s within two minutes (650k in 240 s) and a
 * 10M-input run took hours. With it an input costs the same at the 10th
 * and at the 10,000,000th run: ~13,000-15,000/s with ASan+UBSan, 10M in
 * about 13 minutes on one core.
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

static DovekieIndex *fuzz_index;
static gchar *fuzz_dir;
static guint32 fuzz_uid;

static void
found (gpointer data, guint32 uid, gboolean definite)
{
  (void) definite;
  if (uid == fuzz_uid)
    *(gboolean *) data = TRUE;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  DovekieSearchPlan plan;
  DovekieIndexScope scope;
  g_autofree gchar *needle = NULL;
  gboolean handled, hit = FALSE;

  if (size < 1)
    return 0;
  scope = (DovekieIndexScope) (data[0] % 3);
  needle = g_strndup ((const gchar *) data + 1, size - 1);
  if (dovekie_search_plan_build (needle, strlen (needle), scope, &plan))
    {
      g_autofree gchar *expr = dovekie_search_plan_match_expr (&plan);
      for (guint i = 0; i < plan.terms->len; i++)
        {
          const gchar *term = g_ptr_array_index (plan.terms, i);
          if (!g_utf8_validate (term, -1, NULL) || g_utf8_strlen (term, -1) != 3)
            g_error ("bad term");
        }
      (void) expr;
    }
  dovekie_search_plan_clear (&plan);

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
  if (fuzz_uid % FUZZ_RESET_EVERY == 0 && !dovekie_search_index_vtable.reset (fuzz_index, NULL))
    g_error ("reset failed");
  if (!dovekie_search_index_vtable.doc_begin (fuzz_index, fuzz_uid, NULL) ||
      !dovekie_search_index_vtable.doc_append (fuzz_index, DOVEKIE_INDEX_FIELD_BODY,
                                               (const gchar *) data + 1, size - 1, NULL) ||
      !dovekie_search_index_vtable.doc_end (fuzz_index, NULL))
    g_error ("indexing failed");
  /* Only valid UTF-8 text is stored verbatim; for it, the needle must be found. */
  if (g_utf8_validate ((const gchar *) data + 1, (gssize) size - 1, NULL) &&
      strlen (needle) == size - 1)
    {
      if (!dovekie_search_index_vtable.lookup (fuzz_index, DOVEKIE_INDEX_SCOPE_BODY, needle,
                                               found, &hit, &handled, NULL))
        g_error ("lookup failed");
      if (handled && !hit)
        g_error ("indexed text not found by its own needle");
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
