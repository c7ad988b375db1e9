/* Fuzz target: the retention state record parser (modules/retention).
 *
 * Records are read back from the per-user kv store, where another process,
 * a replica or a damaged file may have put anything. Property: the parser
 * never crashes, never reads out of bounds, and whatever it accepts formats
 * back to exactly the same bytes.
 *
 * libFuzzer:  configure --enable-libfuzzer (tests/fuzz/run builds and runs
 *             it, with tests/fuzz/corpus/retention-record as seeds);
 * otherwise:  a replay driver; with no arguments it runs every seed of
 *             FUZZ_CORPUS_DIR and 2000 seeded mutations of each, which
 *             `make check` does under ASan/UBSan and valgrind.
 */
#include "dovekie-config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "dovekie-retention-record.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  DovekieRetentionRecord record = { 0 };
  GError *error = NULL;

  if (dovekie_retention_record_parse ((const gchar *) data, size, &record, &error))
    {
      gchar *again = dovekie_retention_record_format (&record);
      if (strlen (again) != size || memcmp (again, data, size) != 0)
        abort ();
      g_free (again);
    }
  else
    {
      if (error == NULL || record.n_clients != 0)
        abort ();
      g_error_free (error);
    }
  dovekie_retention_record_clear (&record);
  return 0;
}

#ifndef DOVEKIE_LIBFUZZER
static int
replay (const gchar *path)
{
  gchar *contents = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &contents, &len, NULL))
    {
      g_printerr ("cannot read %s\n", path);
      return 1;
    }
  LLVMFuzzerTestOneInput ((const uint8_t *) contents, len);
  g_free (contents);
  return 0;
}

int
main (int argc, char **argv)
{
  int failed = 0;
  guint count = 0;

  if (argc > 1)
    {
      for (int i = 1; i < argc; i++)
        failed |= replay (argv[i]);
      return failed;
    }
#ifdef FUZZ_CORPUS_DIR
  {
    GDir *dir = g_dir_open (FUZZ_CORPUS_DIR, 0, NULL);
    const gchar *name;
    GRand *rand = g_rand_new_with_seed (7);

    if (dir == NULL)
      {
        g_printerr ("no corpus at %s\n", FUZZ_CORPUS_DIR);
        return 1;
      }
    while ((name = g_dir_read_name (dir)) != NULL)
      {
        gchar *path = g_build_filename (FUZZ_CORPUS_DIR, name, NULL);
        gchar *contents = NULL;
        gsize len = 0;

        failed |= replay (path);
        count++;
        /* Cheap mutations of each seed: flipped, cut and duplicated bytes. */
        if (g_file_get_contents (path, &contents, &len, NULL) && len > 0)
          {
            for (guint m = 0; m < 2000; m++)
              {
                gchar *buf = g_malloc (len * 2 + 1);
                gsize n = len;
                memcpy (buf, contents, len);
                switch (g_rand_int_range (rand, 0, 3))
                  {
                  case 0:
                    buf[g_rand_int_range (rand, 0, (gint32) n)] = (gchar) g_rand_int_range (rand, 0, 256);
                    break;
                  case 1:
                    n = g_rand_int_range (rand, 0, (gint32) n + 1);
                    break;
                  default:
                    memcpy (buf + n, contents, len);
                    n += len;
                    break;
                  }
                LLVMFuzzerTestOneInput ((const uint8_t *) buf, n);
                g_free (buf);
              }
          }
        g_free (contents);
        g_free (path);
      }
    g_dir_close (dir);
    g_rand_free (rand);
  }
#endif
  g_print ("fuzz-retention-record: %u inputs, no failure\n", count * 2001);
  return failed;
}
#endif
