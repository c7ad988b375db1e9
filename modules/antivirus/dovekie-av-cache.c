/* Verdict cache records and the message digest. */
#include "dovekie-config.h"

#include <string.h>

#include <openssl/evp.h>

#include "dovekie-av-cache.h"

#define DIGEST_CHUNK 65536

gboolean
dovekie_av_digest (const DovekieAvReader *reader, guint64 max_bytes,
                   guint8 digest[DOVEKIE_AV_DIGEST_LEN], guint64 *size_r, gboolean *too_big_r,
                   GByteArray *keep, GError **error)
{
  g_autofree guint8 *buf = g_malloc (DIGEST_CHUNK);
  EVP_MD_CTX *md = EVP_MD_CTX_new ();
  guint64 total = 0;
  gboolean ok = FALSE;
  unsigned int len = 0;

  *size_r = 0;
  *too_big_r = FALSE;
  if (md == NULL || EVP_DigestInit_ex (md, EVP_sha256 (), NULL) != 1)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "cannot start SHA-256");
      goto out;
    }
  for (;;)
    {
      gssize n = reader->read (reader->data, buf, DIGEST_CHUNK, error);
      if (n < 0)
        goto out;
      if (n == 0)
        break;
      total += (guint64) n;
      if (total > max_bytes)
        {
          *too_big_r = TRUE;
          *size_r = total;
          ok = TRUE;
          goto out;
        }
      if (EVP_DigestUpdate (md, buf, (gsize) n) != 1)
        {
          g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "SHA-256 update failed");
          goto out;
        }
      if (keep != NULL)
        g_byte_array_append (keep, buf, (guint) n);
    }
  if (EVP_DigestFinal_ex (md, digest, &len) != 1 || len != DOVEKIE_AV_DIGEST_LEN)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "SHA-256 final failed");
      goto out;
    }
  *size_r = total;
  ok = TRUE;
out:
  EVP_MD_CTX_free (md);
  return ok;
}

gchar *
dovekie_av_cache_key (const guint8 digest[DOVEKIE_AV_DIGEST_LEN])
{
  static const gchar hex[] = "0123456789abcdef";
  gchar *key = g_malloc (strlen (DOVEKIE_AV_CACHE_PREFIX) + 2 * DOVEKIE_AV_DIGEST_LEN + 1);
  gchar *p = key;

  memcpy (p, DOVEKIE_AV_CACHE_PREFIX, strlen (DOVEKIE_AV_CACHE_PREFIX));
  p += strlen (DOVEKIE_AV_CACHE_PREFIX);
  for (guint i = 0; i < DOVEKIE_AV_DIGEST_LEN; i++)
    {
      *p++ = hex[digest[i] >> 4];
      *p++ = hex[digest[i] & 0xf];
    }
  *p = '\0';
  return key;
}

gchar *
dovekie_av_cache_format (const gchar *version, DovekieAvStatus status, const gchar *signature)
{
  if (status == DOVEKIE_AV_INFECTED)
    return g_strdup_printf ("%s infected %s", version, signature);
  return g_strdup_printf ("%s clean", version);
}

gchar *
dovekie_av_cache_format_released (const gchar *version, const gchar *signature)
{
  return g_strdup_printf ("%s released %s", version, signature);
}

static gboolean
valid_word (const gchar *s, gsize max)
{
  gsize len = strlen (s);
  if (len == 0 || len > max)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if ((guchar) s[i] <= 0x20 || (guchar) s[i] > 0x7e)
      return FALSE;
  return TRUE;
}

gboolean
dovekie_av_cache_parse (const gchar *value, gchar **version_r, DovekieAvStatus *status_r,
                        gchar **signature_r)
{
  g_auto (GStrv) parts = NULL;
  guint n;

  *version_r = NULL;
  *signature_r = NULL;
  if (value == NULL || strlen (value) > DOVEKIE_AV_VERSION_MAX + DOVEKIE_AV_SIGNATURE_MAX + 16)
    return FALSE;
  /* Exactly one space between fields: g_strsplit keeps empty fields, which
   * valid_word rejects. */
  parts = g_strsplit (value, " ", 4);
  n = g_strv_length (parts);
  if (n < 2 || !valid_word (parts[0], DOVEKIE_AV_VERSION_MAX))
    return FALSE;
  if (n == 2 && g_str_equal (parts[1], "clean"))
    *status_r = DOVEKIE_AV_CLEAN;
  else if (n == 3 && g_str_equal (parts[1], "infected") &&
           valid_word (parts[2], DOVEKIE_AV_SIGNATURE_MAX))
    {
      *status_r = DOVEKIE_AV_INFECTED;
      *signature_r = g_strdup (parts[2]);
    }
  else if (n == 3 && g_str_equal (parts[1], "released") &&
           valid_word (parts[2], DOVEKIE_AV_SIGNATURE_MAX))
    {
      /* The admin released it: clean for this version, whatever the
       * scanner says. */
      *status_r = DOVEKIE_AV_CLEAN;
      *signature_r = g_strdup (parts[2]);
    }
  else
    return FALSE;
  *version_r = g_strdup (parts[0]);
  return TRUE;
}
