/* Fuzz target for what the antivirus module reads of clamd.conf
 * (dovekie-av-clamdconf.c).
 *
 * With libFuzzer:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DDOVEKIE_LIBFUZZER \
 *     -I include -I modules/antivirus -I <build dir> $(pkg-config --cflags glib-2.0) \
 *     tests/fuzz/fuzz-clamdconf.c modules/antivirus/dovekie-av-clamdconf.c \
 *     $(pkg-config --libs glib-2.0) -o fuzz-clamdconf
 *   ./fuzz-clamdconf -max_total_time=60
 * Without it (make check), a built-in driver runs the seeds and a fixed
 * number of seeded random mutations of them.
 */
#include "dovekie-config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dovekie-av-clamdconf.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  DovekieAvClamdConf *conf = dovekie_av_clamdconf_parse ((const gchar *) data, size, "fuzz", &error);
  gchar *servers;

  if (conf == NULL)
    {
      if (error == NULL)
        abort ();
      g_error_free (error);
      return 0;
    }
  if (error != NULL || conf->database_directory == NULL || conf->database_directory[0] == '\0' ||
      conf->tcp_port > 65535 || (conf->local_socket != NULL && conf->local_socket[0] == '\0'))
    abort ();
  /* The same bytes as a dovekie_av_clamd list. */
  servers = g_strndup ((const gchar *) data, size);
  (void) dovekie_av_clamdconf_serves (conf, servers);
  if (conf->local_socket != NULL)
    {
      gchar *mine = g_strconcat ("unix:", conf->local_socket, NULL);
      if (strpbrk (conf->local_socket, " \t,") == NULL && !dovekie_av_clamdconf_serves (conf, mine))
        abort ();
      g_free (mine);
    }
  g_free (servers);
  dovekie_av_clamdconf_free (conf);
  return 0;
}

#ifndef DOVEKIE_LIBFUZZER
static const char *const seeds[] = {
  "LocalSocket /var/run/clamav/clamd.ctl\nFixStaleSocket true\nDatabaseDirectory /var/lib/clamav\n",
  "TCPSocket 3310\nTCPAddr 127.0.0.1\n",
  "# comment\n  DatabaseDirectory \"/srv/sigs\"\r\n",
  "unix:/run/clamd.ctl tcp:127.0.0.1:3310",
};

int
main (void)
{
  GRand *rand = g_rand_new_with_seed (20261207);
  guint8 buf[1024];
  guint runs = 0;

  for (guint s = 0; s < G_N_ELEMENTS (seeds); s++)
    LLVMFuzzerTestOneInput ((const uint8_t *) seeds[s], strlen (seeds[s]));
  for (guint i = 0; i < 20000; i++)
    {
      const char *seed = seeds[g_rand_int_range (rand, 0, G_N_ELEMENTS (seeds))];
      gsize len = strlen (seed);
      guint edits = (guint) g_rand_int_range (rand, 1, 8);

      memcpy (buf, seed, len);
      for (guint e = 0; e < edits; e++)
        {
          switch (g_rand_int_range (rand, 0, 3))
            {
            case 0: /* flip a byte */
              if (len > 0)
                buf[g_rand_int_range (rand, 0, (gint32) len)] = (guint8) g_rand_int (rand);
              break;
            case 1: /* truncate */
              len = (gsize) g_rand_int_range (rand, 0, (gint32) len + 1);
              break;
            default: /* append junk */
              while (len < sizeof (buf) && g_rand_boolean (rand))
                buf[len++] = (guint8) g_rand_int (rand);
              break;
            }
        }
      LLVMFuzzerTestOneInput (buf, len);
      runs++;
    }
  g_rand_free (rand);
  printf ("fuzz-clamdconf: %u inputs, no failure\n", runs);
  return runs > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
#endif
