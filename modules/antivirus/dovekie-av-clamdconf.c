/* clamd.conf: the options that say which clamd it is and where its
 * signature files are. */
#include "dovekie-config.h"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>

#include "dovekie-av-clamd.h"
#include "dovekie-av-clamdconf.h"

void
dovekie_av_clamdconf_free (DovekieAvClamdConf *conf)
{
  if (conf == NULL)
    return;
  g_free (conf->local_socket);
  g_free (conf->database_directory);
  g_free (conf);
}

/* The value of an option line, without surrounding blanks and one pair of
 * double quotes (clamd accepts both forms). */
static gchar *
option_value (const gchar *rest)
{
  g_autofree gchar *value = g_strstrip (g_strdup (rest));
  gsize len = strlen (value);

  if (len >= 2 && value[0] == '"' && value[len - 1] == '"')
    return g_strndup (value + 1, len - 2);
  return g_steal_pointer (&value);
}

DovekieAvClamdConf *
dovekie_av_clamdconf_parse (const gchar *text, gsize len, const gchar *name, GError **error)
{
  g_autoptr (DovekieAvClamdConf) conf = g_new0 (DovekieAvClamdConf, 1);
  g_auto (GStrv) lines = NULL;

  if (memchr (text, '\0', len) != NULL)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "%s: holds a NUL byte", name);
      return NULL;
    }
  {
    g_autofree gchar *copy = g_strndup (text, len);
    lines = g_strsplit (copy, "\n", -1);
  }
  for (guint i = 0; lines[i] != NULL; i++)
    {
      gchar *line = g_strstrip (lines[i]);
      gsize key_len = strcspn (line, " \t");
      g_autofree gchar *value = NULL;
      gchar **slot = NULL;

      if (line[0] == '\0' || line[0] == '#')
        continue;
      if (key_len == strlen ("LocalSocket") && g_ascii_strncasecmp (line, "LocalSocket", key_len) == 0)
        slot = &conf->local_socket;
      else if (key_len == strlen ("DatabaseDirectory") &&
               g_ascii_strncasecmp (line, "DatabaseDirectory", key_len) == 0)
        slot = &conf->database_directory;
      else if (!(key_len == strlen ("TCPSocket") &&
                 g_ascii_strncasecmp (line, "TCPSocket", key_len) == 0))
        continue;
      value = option_value (line + key_len);
      if (value[0] == '\0')
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "%s, line %u: %.*s without a value",
                       name, i + 1, (gint) key_len, line);
          return NULL;
        }
      if (slot != NULL)
        {
          g_free (*slot);
          *slot = g_steal_pointer (&value);
        }
      else
        {
          guint64 port;
          if (!g_ascii_string_to_unsigned (value, 10, 1, 65535, &port, NULL))
            {
              g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                           "%s, line %u: TCPSocket %s is not a port", name, i + 1, value);
              return NULL;
            }
          conf->tcp_port = (guint) port;
        }
    }
  if (conf->database_directory == NULL)
    conf->database_directory = g_strdup (DOVEKIE_AV_CLAMD_DEFAULT_DB);
  return g_steal_pointer (&conf);
}

DovekieAvClamdConf *
dovekie_av_clamdconf_read (const gchar *path, gboolean *missing_r, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autofree gchar *text = NULL;
  gsize len = 0;
  GStatBuf st;

  *missing_r = FALSE;
  if (g_stat (path, &st) != 0)
    {
      if (errno == ENOENT)
        {
          *missing_r = TRUE;
          return NULL;
        }
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "%s: %s", path, g_strerror (errno));
      return NULL;
    }
  if (st.st_size > DOVEKIE_AV_CLAMDCONF_MAX)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "%s: larger than %d bytes", path,
                   DOVEKIE_AV_CLAMDCONF_MAX);
      return NULL;
    }
  if (!g_file_get_contents (path, &text, &len, &local))
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "%s", local->message);
      return NULL;
    }
  /* It may have grown since the stat. */
  if (len > DOVEKIE_AV_CLAMDCONF_MAX)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "%s: larger than %d bytes", path,
                   DOVEKIE_AV_CLAMDCONF_MAX);
      return NULL;
    }
  return dovekie_av_clamdconf_parse (text, len, path, error);
}

static gboolean
loopback (const gchar *host, gsize len)
{
  return (len == strlen ("127.0.0.1") && strncmp (host, "127.0.0.1", len) == 0) ||
         (len == strlen ("localhost") && g_ascii_strncasecmp (host, "localhost", len) == 0) ||
         (len == strlen ("[::1]") && strncmp (host, "[::1]", len) == 0);
}

gboolean
dovekie_av_clamdconf_serves (const DovekieAvClamdConf *conf, const gchar *servers)
{
  g_auto (GStrv) words = g_strsplit_set (servers != NULL ? servers : "",
                                         DOVEKIE_AV_CLAMD_SEPARATORS, -1);

  for (guint i = 0; words[i] != NULL; i++)
    {
      const gchar *word = words[i];
      if (g_str_has_prefix (word, "unix:"))
        {
          if (conf->local_socket != NULL && g_str_equal (word + strlen ("unix:"), conf->local_socket))
            return TRUE;
        }
      else if (g_str_has_prefix (word, "tcp:") && conf->tcp_port != 0)
        {
          const gchar *host = word + strlen ("tcp:");
          const gchar *colon = strrchr (host, ':');
          guint64 port;
          if (colon != NULL && loopback (host, (gsize) (colon - host)) &&
              g_ascii_string_to_unsigned (colon + 1, 10, 1, 65535, &port, NULL) &&
              port == conf->tcp_port)
            return TRUE;
        }
    }
  return FALSE;
}
