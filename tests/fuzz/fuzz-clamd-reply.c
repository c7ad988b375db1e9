/* Fuzz target for the clamd reply parsers (dovekie-av-reply.c).
 *
 * With libFuzzer:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DDOVEKIE_LIBFUZZER \
 *     -I include -I modules/antivirus -I <build dir> $(pkg-config --cflags glib-2.0) \
 *     tests/fuzz/fuzz-clamd-reply.c modules/antivirus/dovekie-av-reply.c \
 *     $(pkg-config --libs glib-2.0) -o fuzz-clamd-reply
 *   ./fuzz-clamd-reply -max_total_time=60
 * Without it (make check), a built-in driver runs the seeds and a fixed
 * number of seeded random mutations of them, so the target is exercised
 * under ASan/UBSan and valgrind on every test run.
 */
#include "dovekie-config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dovekie-av-reply.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  DovekieAvStatus status;
  gchar *signature = NULL;
  gchar *version = NULL;
  GError *error = NULL;
  gsize reply_len = 0;
  const void *nul = size > 0 ? memchr (data, '\0', size) : NULL;
  gboolean one_reply = nul != NULL && (const uint8_t *) nul == data + size - 1;

  /* The frame holds exactly one reply: one NUL, and it is the last byte;
   * a second result or trailing bytes are never a verdict. */
  if (dovekie_av_reply_frame ((const gchar *) data, size, &reply_len, &error))
    {
      if (!one_reply || reply_len != size - 1)
        abort ();
      if (dovekie_av_reply_parse ((const gchar *) data, reply_len, &status, &signature, &error) &&
          memchr (data, '\0', reply_len) != NULL)
        abort ();
    }
  else if (one_reply || error == NULL || reply_len != 0)
    abort ();
  g_clear_error (&error);
  g_clear_pointer (&signature, g_free);

  if (dovekie_av_reply_parse ((const gchar *) data, size, &status, &signature, &error))
    {
      /* A parsed verdict is consistent. */
      if ((status == DOVEKIE_AV_INFECTED) != (signature != NULL))
        abort ();
      if (signature != NULL && strlen (signature) > DOVEKIE_AV_SIGNATURE_MAX)
        abort ();
    }
  else if (error == NULL || signature != NULL)
    abort ();
  g_clear_error (&error);
  g_free (signature);

  if (dovekie_av_version_parse ((const gchar *) data, size, &version, &error))
    {
      if (version == NULL || strchr (version, '/') == NULL)
        abort ();
    }
  else if (error == NULL || version != NULL)
    abort ();
  g_clear_error (&error);
  g_free (version);
  return 0;
}

#ifndef DOVEKIE_LIBFUZZER
/* Seeds end at their string's NUL; the driver also tries each with its
 * terminator, and the two-result reply of the fixed bug. */
static const char *const seeds[] = {
  "stream: OK",
  "stream: Eicar-Test-Signature FOUND",
  "INSTREAM size limit exceeded. ERROR",
  "ClamAV 1.4.6/27500/Tue Dec  3 09:36:41 2024",
  "ClamAV 1.4.6",
  "stream: {HEX}A.B FOUND",
};

int
main (void)
{
  GRand *rand = g_rand_new_with_seed (20240601);
  guint8 buf[DOVEKIE_AV_REPLY_MAX + 64];
  guint runs = 0;

  static const char two_results[] = "stream: OK\0stream: Evil FOUND";

  for (guint s = 0; s < G_N_ELEMENTS (seeds); s++)
    {
      LLVMFuzzerTestOneInput ((const uint8_t *) seeds[s], strlen (seeds[s]));
      LLVMFuzzerTestOneInput ((const uint8_t *) seeds[s], strlen (seeds[s]) + 1);
    }
  LLVMFuzzerTestOneInput ((const uint8_t *) two_results, sizeof (two_results));
  for (guint i = 0; i < 20000; i++)
    {
      const char *seed = seeds[g_rand_int_range (rand, 0, G_N_ELEMENTS (seeds))];
      /* Half of the runs keep the seed's NUL, as clamd frames a reply. */
      gsize len = strlen (seed) + (g_rand_boolean (rand) ? 1 : 0);
      guint edits = (guint) g_rand_int_range (rand, 1, 8);

      memcpy (buf, seed, len);
      for (guint e = 0; e < edits; e++)
        {
          switch (g_rand_int_range (rand, 0, 4))
            {
            case 0: /* flip a byte */
              if (len > 0)
                buf[g_rand_int_range (rand, 0, (gint32) len)] = (guint8) g_rand_int (rand);
              break;
            case 1: /* truncate */
              len = (gsize) g_rand_int_range (rand, 0, (gint32) len + 1);
              break;
            case 2: /* append junk */
              while (len < sizeof (buf) && g_rand_boolean (rand))
                buf[len++] = (guint8) g_rand_int (rand);
              break;
            default: /* grow to the cap and beyond */
              if (g_rand_int_range (rand, 0, 50) == 0)
                {
                  memset (buf + len, 'A', sizeof (buf) - len);
                  len = sizeof (buf);
                }
              break;
            }
        }
      LLVMFuzzerTestOneInput (buf, len);
      runs++;
    }
  g_rand_free (rand);
  printf ("fuzz-clamd-reply: %u inputs, no failure\n", runs);
  return runs > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
#endif
