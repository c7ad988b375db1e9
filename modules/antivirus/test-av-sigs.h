/* A tiny signature DB for unit tests, made at run time: an .ndb body
 * signature for the EICAR string and an .hdb hash of a marker text. */
#ifndef TEST_AV_SIGS_H
#define TEST_AV_SIGS_H

#include <glib.h>
#include <glib/gstdio.h>

/* Built from parts so no source file carries the whole string. */
#define TEST_EICAR "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" "EICAR-STANDARD-ANTIVIRUS" "-TEST-FILE!$H+H*"
#define TEST_HASHED "dovekie unit test hashed sample\n"

static inline void
test_av_write_sigs (const gchar *dir)
{
  g_autofree gchar *hex = NULL;
  g_autofree gchar *md5 = g_compute_checksum_for_string (G_CHECKSUM_MD5, TEST_HASHED, -1);
  g_autofree gchar *ndb = NULL;
  g_autofree gchar *hdb = NULL;
  g_autofree gchar *ndb_path = g_build_filename (dir, "test.ndb", NULL);
  g_autofree gchar *hdb_path = g_build_filename (dir, "test.hdb", NULL);
  GString *h = g_string_new (NULL);

  for (const gchar *p = TEST_EICAR; *p != '\0'; p++)
    g_string_append_printf (h, "%02x", (guchar) *p);
  hex = g_string_free (h, FALSE);
  ndb = g_strdup_printf ("Test.Eicar:0:*:%s\n", hex);
  hdb = g_strdup_printf ("%s:%u:Test.Hashed\n", md5, (guint) strlen (TEST_HASHED));
  g_assert (g_file_set_contents (ndb_path, ndb, -1, NULL));
  g_assert (g_file_set_contents (hdb_path, hdb, -1, NULL));
}

#endif
