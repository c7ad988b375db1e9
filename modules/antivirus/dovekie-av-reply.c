/* Strict parsers for clamd's replies. */
#include "dovekie-config.h"

#include <string.h>

#include "dovekie-av-reply.h"

#define REPLY_STREAM_PREFIX "stream: "
#define REPLY_FOUND_SUFFIX " FOUND"
#define REPLY_ERROR_SUFFIX " ERROR"
#define VERSION_PREFIX "ClamAV "
#define VERSION_ENGINE_MAX 32

static gboolean
all_printable (const gchar *s, gsize len)
{
  for (gsize i = 0; i < len; i++)
    if ((guchar) s[i] < 0x20 || (guchar) s[i] > 0x7e)
      return FALSE;
  return TRUE;
}

static gboolean
has_suffix (const gchar *s, gsize len, const gchar *suffix)
{
  gsize n = strlen (suffix);
  return len >= n && memcmp (s + len - n, suffix, n) == 0;
}

static gboolean
has_prefix (const gchar *s, gsize len, const gchar *prefix)
{
  gsize n = strlen (prefix);
  return len >= n && memcmp (s, prefix, n) == 0;
}

/* A signature name: printable ASCII, no spaces, bounded. */
static gboolean
valid_signature (const gchar *s, gsize len)
{
  if (len == 0 || len > DOVEKIE_AV_SIGNATURE_MAX)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if ((guchar) s[i] <= 0x20 || (guchar) s[i] > 0x7e)
      return FALSE;
  return TRUE;
}

gboolean
dovekie_av_reply_frame (const gchar *raw, gsize len, gsize *reply_len_r, GError **error)
{
  const gchar *nul = len > 0 ? memchr (raw, '\0', len) : NULL;

  *reply_len_r = 0;
  if (len == 0)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                           "clamd closed the connection without a reply");
      return FALSE;
    }
  if (nul == NULL)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                   "clamd closed the connection in the middle of its reply (%" G_GSIZE_FORMAT
                   " bytes, no terminator)", len);
      return FALSE;
    }
  if ((gsize) (nul - raw) != len - 1)
    {
      /* One request has exactly one result: which of two would be the
       * verdict is not ours to guess. */
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                   "clamd sent more than one reply to one request (%" G_GSIZE_FORMAT
                   " bytes after the first)", len - 1 - (gsize) (nul - raw));
      return FALSE;
    }
  *reply_len_r = len - 1;
  return TRUE;
}

gboolean
dovekie_av_reply_parse (const gchar *reply, gsize len, DovekieAvStatus *status_r,
                        gchar **signature_r, GError **error)
{
  const gchar *rest;
  gsize rest_len;

  *signature_r = NULL;
  if (len == 0)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL, "clamd sent an empty reply");
      return FALSE;
    }
  if (len > DOVEKIE_AV_REPLY_MAX || !all_printable (reply, len))
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                   "clamd sent a reply that is not one line of text (%" G_GSIZE_FORMAT " bytes)", len);
      return FALSE;
    }
  if (has_suffix (reply, len, REPLY_ERROR_SUFFIX))
    {
      /* The text is printable and capped, so it is safe to log. */
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL, "clamd reported an error: %.*s",
                   (gint) MIN (len, 200), reply);
      return FALSE;
    }
  if (!has_prefix (reply, len, REPLY_STREAM_PREFIX))
    goto unexpected;
  rest = reply + strlen (REPLY_STREAM_PREFIX);
  rest_len = len - strlen (REPLY_STREAM_PREFIX);
  if (rest_len == 2 && memcmp (rest, "OK", 2) == 0)
    {
      *status_r = DOVEKIE_AV_CLEAN;
      return TRUE;
    }
  if (has_suffix (rest, rest_len, REPLY_FOUND_SUFFIX))
    {
      gsize name_len = rest_len - strlen (REPLY_FOUND_SUFFIX);
      if (!valid_signature (rest, name_len))
        goto unexpected;
      *status_r = DOVEKIE_AV_INFECTED;
      *signature_r = g_strndup (rest, name_len);
      return TRUE;
    }

unexpected:
  g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL, "clamd sent an unexpected reply: '%.*s'",
               (gint) MIN (len, 80), reply);
  return FALSE;
}

gboolean
dovekie_av_version_parse (const gchar *reply, gsize len, gchar **version_r, GError **error)
{
  const gchar *p, *end = reply + len;
  const gchar *engine;
  gsize engine_len = 0;
  guint64 db = 0;

  *version_r = NULL;
  if (len > DOVEKIE_AV_REPLY_MAX || !all_printable (reply, len) ||
      !has_prefix (reply, len, VERSION_PREFIX))
    goto bad;
  engine = p = reply + strlen (VERSION_PREFIX);
  while (p < end && (g_ascii_isalnum (*p) || strchr (".+~-_", *p) != NULL))
    p++;
  engine_len = (gsize) (p - engine);
  if (engine_len == 0 || engine_len > VERSION_ENGINE_MAX)
    goto bad;
  if (p < end)
    {
      const gchar *digits;
      gchar buf[16];

      if (*p++ != '/')
        goto bad;
      digits = p;
      while (p < end && g_ascii_isdigit (*p))
        p++;
      if (p == digits || (gsize) (p - digits) >= sizeof (buf))
        goto bad;
      memcpy (buf, digits, (gsize) (p - digits));
      buf[p - digits] = '\0';
      if (!g_ascii_string_to_unsigned (buf, 10, 0, G_MAXUINT32, &db, NULL))
        goto bad;
      /* What follows is the DB's date; it is not part of the version. */
      if (p < end && *p != '/')
        goto bad;
    }
  *version_r = g_strdup_printf ("%.*s/%" G_GUINT64_FORMAT, (gint) engine_len, engine, db);
  return TRUE;

bad:
  g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
               "clamd sent an unexpected VERSION reply: '%.*s'", (gint) MIN (len, 80),
               all_printable (reply, MIN (len, 80)) ? reply : "(binary)");
  return FALSE;
}
