/* Scans files with dovekie's clamd client or its libclamav engine and
 * prints "<files> <bytes> <seconds> <infected> <fildes scans>". Built and
 * run by bench.py.
 *   bench-av clamd ADDRESS FILE...         INSTREAM
 *   bench-av clamd-fildes ADDRESS FILE...  FILDES (unix: ADDRESS), the
 *                                          file's fd offered as the host does
 *   bench-av libclamav DBDIR FILE...
 */
#include "dovekie-config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dovekie-av-clamd.h"
#include "dovekie-av-engine.h"

typedef struct {
  const guint8 *data;
  gsize len, pos;
  gint fd;
} Buf;

static gssize
buf_read (gpointer data, guint8 *out, gsize len, GError **error)
{
  Buf *b = data;
  gsize n = MIN (len, b->len - b->pos);
  (void) error;
  memcpy (out, b->data + b->pos, n);
  b->pos += n;
  return (gssize) n;
}

static gboolean
buf_rewind (gpointer data, GError **error)
{
  (void) error;
  ((Buf *) data)->pos = 0;
  return TRUE;
}

static gint
buf_fd (gpointer data)
{
  return ((Buf *) data)->fd;
}

int
main (int argc, char **argv)
{
  g_autoptr (DovekieAvClamd) clamd = NULL;
  gboolean use_clamd, fildes;
  guint64 bytes = 0;
  guint infected = 0, fildes_scans = 0;
  gint64 start;

  if (argc < 4)
    return 2;
  fildes = g_str_equal (argv[1], "clamd-fildes");
  use_clamd = fildes || g_str_equal (argv[1], "clamd");
  if (use_clamd)
    {
      clamd = dovekie_av_clamd_new (argv[2], 2000, 60000, NULL);
      if (clamd == NULL)
        return 2;
      dovekie_av_clamd_set_fildes (clamd, fildes);
    }
  else
    {
      DovekieAvLimits limits = { 100 << 20, 25 << 20, 16, 10000, 120000 };
      gchar *notice = NULL;
      GError *error = NULL;
      if (!dovekie_av_engine_prepare (argv[2], &limits, 60, &notice, &error))
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
      g_free (notice);
    }
  start = g_get_monotonic_time ();
  for (int i = 3; i < argc; i++)
    {
      gchar *contents = NULL;
      gsize len = 0;
      DovekieAvStatus status;
      gchar *signature = NULL;
      GError *error = NULL;
      gboolean ok;

      if (!g_file_get_contents (argv[i], &contents, &len, NULL))
        return 1;
      bytes += len;
      if (use_clamd)
        {
          Buf b = { (const guint8 *) contents, len, 0, -1 };
          DovekieAvReader reader = { buf_read, buf_rewind, &b, buf_fd };
          if (fildes && (b.fd = open (argv[i], O_RDONLY | O_CLOEXEC)) < 0)
            return 1;
          ok = dovekie_av_clamd_scan (clamd, &reader, G_MAXUINT64, &status, &signature, &error);
          if (b.fd >= 0)
            close (b.fd);
          /* Counted from the client's own account of each scan. */
          fildes_scans += ok && g_str_has_suffix (dovekie_av_clamd_scan_label (clamd),
                                                  " mode=fildes");
        }
      else
        ok = dovekie_av_engine_scan ((const guint8 *) contents, len, &status, &signature, &error);
      if (!ok)
        {
          fprintf (stderr, "%s: %s\n", argv[i], error->message);
          return 1;
        }
      infected += status == DOVEKIE_AV_INFECTED;
      g_free (signature);
      g_free (contents);
    }
  printf ("%d %" G_GUINT64_FORMAT " %.3f %u %u\n", argc - 3, bytes,
          (double) (g_get_monotonic_time () - start) / 1e6, infected, fildes_scans);
  dovekie_av_engine_shutdown ();
  return 0;
}
