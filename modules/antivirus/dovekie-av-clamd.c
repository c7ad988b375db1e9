/* A clamd client over unix sockets and TCP. */
#include "dovekie-config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dovekie-av-clamd.h"
#include "dovekie-av-reply.h"

typedef struct {
  gchar *text;      /* as written in the list, for logs */
  gboolean is_unix;
  gchar *path;      /* unix */
  gchar *host;      /* tcp */
  gchar *port;      /* tcp, digits */
} ClamdServer;

struct _DovekieAvClamd {
  GPtrArray *servers; /* of ClamdServer */
  guint connect_ms, scan_ms;
  guint preferred;
};

static void
server_free (gpointer data)
{
  ClamdServer *server = data;
  g_free (server->text);
  g_free (server->path);
  g_free (server->host);
  g_free (server->port);
  g_free (server);
}

static ClamdServer *
server_parse (const gchar *text, GError **error)
{
  g_autoptr (GString) host = NULL;
  ClamdServer *server;
  const gchar *rest, *colon;
  guint64 port;

  if (g_str_has_prefix (text, "unix:"))
    {
      rest = text + strlen ("unix:");
      if (rest[0] != '/' || strlen (rest) >= sizeof (((struct sockaddr_un *) NULL)->sun_path))
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                       "dovekie_av_clamd: '%s' needs an absolute socket path shorter than %d bytes",
                       text, (gint) sizeof (((struct sockaddr_un *) NULL)->sun_path));
          return NULL;
        }
      server = g_new0 (ClamdServer, 1);
      server->is_unix = TRUE;
      server->path = g_strdup (rest);
      server->text = g_strdup (text);
      return server;
    }
  if (!g_str_has_prefix (text, "tcp:"))
    goto bad;
  rest = text + strlen ("tcp:");
  if (rest[0] == '[')
    {
      const gchar *close = strchr (rest, ']');
      if (close == NULL || close[1] != ':' || close == rest + 1)
        goto bad;
      host = g_string_new_len (rest + 1, close - rest - 1);
      colon = close + 1;
    }
  else
    {
      colon = strrchr (rest, ':');
      if (colon == NULL || colon == rest || memchr (rest, ':', (gsize) (colon - rest)) != NULL)
        goto bad;
      host = g_string_new_len (rest, colon - rest);
    }
  if (!g_ascii_string_to_unsigned (colon + 1, 10, 1, 65535, &port, NULL))
    goto bad;
  server = g_new0 (ClamdServer, 1);
  server->host = g_string_free (g_steal_pointer (&host), FALSE);
  server->port = g_strdup_printf ("%u", (guint) port);
  server->text = g_strdup (text);
  return server;

bad:
  g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
               "dovekie_av_clamd: '%s' is neither unix:/path nor tcp:HOST:PORT", text);
  return NULL;
}

DovekieAvClamd *
dovekie_av_clamd_new (const gchar *servers, guint connect_ms, guint scan_ms, GError **error)
{
  g_auto (GStrv) words = g_strsplit_set (servers != NULL ? servers : "", " \t", -1);
  g_autoptr (GPtrArray) list = g_ptr_array_new_with_free_func (server_free);
  DovekieAvClamd *clamd;

  for (guint i = 0; words[i] != NULL; i++)
    {
      ClamdServer *server;
      if (words[i][0] == '\0')
        continue;
      if (list->len == DOVEKIE_AV_CLAMD_SERVERS_MAX)
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                       "dovekie_av_clamd: more than %d servers", DOVEKIE_AV_CLAMD_SERVERS_MAX);
          return NULL;
        }
      server = server_parse (words[i], error);
      if (server == NULL)
        return NULL;
      g_ptr_array_add (list, server);
    }
  if (list->len == 0)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                           "dovekie_av_clamd: no server given");
      return NULL;
    }
  clamd = g_new0 (DovekieAvClamd, 1);
  clamd->servers = g_steal_pointer (&list);
  clamd->connect_ms = MAX (connect_ms, 1);
  clamd->scan_ms = MAX (scan_ms, 1);
  return clamd;
}

void
dovekie_av_clamd_free (DovekieAvClamd *clamd)
{
  if (clamd == NULL)
    return;
  g_ptr_array_unref (clamd->servers);
  g_free (clamd);
}

const gchar *
dovekie_av_clamd_server (DovekieAvClamd *clamd)
{
  ClamdServer *server = g_ptr_array_index (clamd->servers, clamd->preferred);
  return server->text;
}

/* ---- one connection ---- */

/* Milliseconds left until `deadline` (monotonic µs), at least 0. */
static gint
remaining_ms (gint64 deadline)
{
  gint64 left = (deadline - g_get_monotonic_time () + 999) / 1000;
  return (gint) CLAMP (left, 0, G_MAXINT);
}

/* Waits for `events` on fd until the deadline. */
static gboolean
wait_fd (gint fd, gshort events, gint64 deadline, const gchar *what, GError **error)
{
  struct pollfd pfd = { fd, events, 0 };

  for (;;)
    {
      gint ret = poll (&pfd, 1, remaining_ms (deadline));
      if (ret > 0)
        return TRUE;
      if (ret == 0)
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_TIMEOUT, "timed out %s", what);
          return FALSE;
        }
      if (errno != EINTR)
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "poll failed %s: %s", what,
                       g_strerror (errno));
          return FALSE;
        }
    }
}

static gint
connect_addr (const struct sockaddr *addr, socklen_t addrlen, gint64 deadline, GError **error)
{
  gint fd = socket (addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  gint soerr = 0;
  socklen_t len = sizeof (soerr);

  if (fd < 0)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "socket: %s", g_strerror (errno));
      return -1;
    }
  if (connect (fd, addr, addrlen) == 0)
    return fd;
  if (errno != EINPROGRESS && errno != EAGAIN)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "connect: %s", g_strerror (errno));
      close (fd);
      return -1;
    }
  if (!wait_fd (fd, POLLOUT, deadline, "connecting", error))
    {
      close (fd);
      return -1;
    }
  if (getsockopt (fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "connect: %s",
                   g_strerror (soerr != 0 ? soerr : errno));
      close (fd);
      return -1;
    }
  return fd;
}

static gint
server_connect (const ClamdServer *server, guint connect_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) connect_ms * 1000;
  struct addrinfo hints, *res = NULL, *ai;
  gint fd = -1, ret;

  if (server->is_unix)
    {
      struct sockaddr_un sun;
      memset (&sun, 0, sizeof (sun));
      sun.sun_family = AF_UNIX;
      memcpy (sun.sun_path, server->path, strlen (server->path));
      return connect_addr ((struct sockaddr *) &sun, sizeof (sun), deadline, error);
    }
  memset (&hints, 0, sizeof (hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  ret = getaddrinfo (server->host, server->port, &hints, &res);
  if (ret != 0)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "cannot resolve %s: %s",
                   server->host, gai_strerror (ret));
      return -1;
    }
  for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
    {
      g_clear_error (error);
      fd = connect_addr (ai->ai_addr, ai->ai_addrlen, deadline, error);
    }
  freeaddrinfo (res);
  return fd;
}

static gboolean
send_all (gint fd, const guint8 *data, gsize len, gint64 deadline, GError **error)
{
  while (len > 0)
    {
      gssize n = send (fd, data, len, MSG_NOSIGNAL);
      if (n > 0)
        {
          data += n;
          len -= (gsize) n;
          continue;
        }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == EAGAIN)
        {
          if (!wait_fd (fd, POLLOUT, deadline, "sending to clamd", error))
            return FALSE;
          continue;
        }
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "sending to clamd: %s",
                   n < 0 ? g_strerror (errno) : "nothing sent");
      return FALSE;
    }
  return TRUE;
}

/* Reads one NUL-terminated reply of at most DOVEKIE_AV_REPLY_MAX bytes;
 * *len_r excludes the NUL. `buf` holds DOVEKIE_AV_REPLY_MAX + 1 bytes. */
static gboolean
read_reply (gint fd, gchar *buf, gsize *len_r, gint64 deadline, GError **error)
{
  gsize have = 0;

  for (;;)
    {
      gssize n;
      gchar *nul;

      if (!wait_fd (fd, POLLIN, deadline, "waiting for clamd's reply", error))
        return FALSE;
      n = recv (fd, buf + have, DOVEKIE_AV_REPLY_MAX + 1 - have, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (n < 0)
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "reading clamd's reply: %s",
                       g_strerror (errno));
          return FALSE;
        }
      if (n == 0)
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                       have == 0 ? "clamd closed the connection without a reply"
                                 : "clamd closed the connection in the middle of its reply");
          return FALSE;
        }
      nul = memchr (buf + have, '\0', (gsize) n);
      have += (gsize) n;
      if (nul != NULL)
        {
          /* Anything after the NUL is ignored: one command, one reply. */
          *len_r = (gsize) (nul - buf);
          return TRUE;
        }
      if (have > DOVEKIE_AV_REPLY_MAX)
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                       "clamd's reply is longer than %d bytes", DOVEKIE_AV_REPLY_MAX);
          return FALSE;
        }
    }
}

typedef enum { COMMAND_INSTREAM, COMMAND_VERSION } ClamdCommand;

typedef struct {
  ClamdCommand command;
  const DovekieAvReader *reader;
  guint64 max_bytes;
  /* results */
  DovekieAvStatus status;
  gchar *signature;
  gchar *version;
  gboolean reader_failed;
} Exchange;

static gboolean
stream_message (gint fd, Exchange *ex, gint64 deadline, GError **error)
{
  g_autofree guint8 *buf = g_malloc (4 + DOVEKIE_AV_CLAMD_CHUNK);
  guint64 total = 0;

  for (;;)
    {
      gssize n = ex->reader->read (ex->reader->data, buf + 4, DOVEKIE_AV_CLAMD_CHUNK, error);
      if (n < 0)
        {
          ex->reader_failed = TRUE;
          return FALSE;
        }
      total += (guint64) n;
      if (total > ex->max_bytes)
        {
          ex->reader_failed = TRUE;
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                       "message is larger than the %" G_GUINT64_FORMAT " bytes to scan", ex->max_bytes);
          return FALSE;
        }
      /* A zero-length chunk ends the stream. */
      buf[0] = (guint8) ((guint32) n >> 24);
      buf[1] = (guint8) ((guint32) n >> 16);
      buf[2] = (guint8) ((guint32) n >> 8);
      buf[3] = (guint8) n;
      if (!send_all (fd, buf, 4 + (gsize) n, deadline, error))
        return FALSE;
      if (n == 0)
        return TRUE;
    }
}

static gboolean
exchange_once (const ClamdServer *server, DovekieAvClamd *clamd, Exchange *ex, GError **error)
{
  static const gchar instream[] = "zINSTREAM";
  static const gchar version[] = "zVERSION";
  gchar reply[DOVEKIE_AV_REPLY_MAX + 1];
  gsize reply_len = 0;
  gint64 deadline;
  gboolean sent;
  gint fd;

  fd = server_connect (server, clamd->connect_ms, error);
  if (fd < 0)
    return FALSE;
  deadline = g_get_monotonic_time () + (gint64) clamd->scan_ms * 1000;
  if (ex->command == COMMAND_INSTREAM)
    sent = send_all (fd, (const guint8 *) instream, sizeof (instream), deadline, error) &&
           stream_message (fd, ex, deadline, error);
  else
    sent = send_all (fd, (const guint8 *) version, sizeof (version), deadline, error);
  if (!sent)
    {
      /* clamd may have refused the stream (a size limit) and said why. */
      g_autoptr (GError) reply_error = NULL;
      if (!ex->reader_failed &&
          read_reply (fd, reply, &reply_len, MIN (deadline, g_get_monotonic_time () + 100000),
                      &reply_error))
        {
          g_autoptr (GError) parse_error = NULL;
          gchar *early = NULL;

          /* Only a reported error replaces ours; a verdict on a message
           * clamd did not fully receive is no verdict. */
          if (!dovekie_av_reply_parse (reply, reply_len, &ex->status, &early, &parse_error))
            {
              g_clear_error (error);
              g_propagate_error (error, g_steal_pointer (&parse_error));
            }
          g_free (early);
        }
      close (fd);
      return FALSE;
    }
  if (!read_reply (fd, reply, &reply_len, deadline, error))
    {
      close (fd);
      return FALSE;
    }
  close (fd);
  if (ex->command == COMMAND_INSTREAM)
    return dovekie_av_reply_parse (reply, reply_len, &ex->status, &ex->signature, error);
  return dovekie_av_version_parse (reply, reply_len, &ex->version, error);
}

static gboolean
exchange (DovekieAvClamd *clamd, Exchange *ex, GError **error)
{
  guint n = clamd->servers->len;
  g_autoptr (GError) last = NULL;

  for (guint i = 0; i < n; i++)
    {
      guint index = (clamd->preferred + i) % n;
      ClamdServer *server = g_ptr_array_index (clamd->servers, index);
      g_autoptr (GError) local = NULL;

      if (i > 0 && ex->reader != NULL && !ex->reader->rewind (ex->reader->data, error))
        return FALSE;
      if (exchange_once (server, clamd, ex, &local))
        {
          clamd->preferred = index;
          return TRUE;
        }
      if (ex->reader_failed)
        {
          g_propagate_error (error, g_steal_pointer (&local));
          return FALSE;
        }
      g_clear_error (&last);
      last = g_error_new (DOVEKIE_ERROR, local->code, "clamd %s: %s", server->text, local->message);
    }
  if (n > 1)
    g_set_error (error, DOVEKIE_ERROR, last->code, "all %u clamd servers failed; last: %s", n,
                 last->message);
  else
    g_propagate_error (error, g_steal_pointer (&last));
  return FALSE;
}

gboolean
dovekie_av_clamd_scan (DovekieAvClamd *clamd, const DovekieAvReader *reader, guint64 max_bytes,
                       DovekieAvStatus *status_r, gchar **signature_r, GError **error)
{
  Exchange ex = { COMMAND_INSTREAM, reader, max_bytes, DOVEKIE_AV_CLEAN, NULL, NULL, FALSE };

  *signature_r = NULL;
  if (!exchange (clamd, &ex, error))
    return FALSE;
  *status_r = ex.status;
  *signature_r = ex.signature;
  return TRUE;
}

gboolean
dovekie_av_clamd_version (DovekieAvClamd *clamd, gchar **version_r, GError **error)
{
  Exchange ex = { COMMAND_VERSION, NULL, 0, DOVEKIE_AV_CLEAN, NULL, NULL, FALSE };

  *version_r = NULL;
  if (!exchange (clamd, &ex, error))
    return FALSE;
  *version_r = ex.version;
  return TRUE;
}
