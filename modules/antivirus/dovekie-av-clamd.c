/* A clamd client over unix sockets and TCP. */
#include "dovekie-config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dovekie-av-clamd.h"
#include "dovekie-av-reply.h"
#include "dovekie/log-quote.h"

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
  gboolean fildes;
  gchar *label;       /* see dovekie_av_clamd_scan_label */
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
          g_autofree gchar *quoted = dovekie_log_quote (text);
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                       "dovekie_av_clamd: %s needs an absolute socket path shorter than %d bytes",
                       quoted, (gint) sizeof (((struct sockaddr_un *) NULL)->sun_path));
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
  {
    g_autofree gchar *quoted = dovekie_log_quote (text);
    g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                 "dovekie_av_clamd: %s is neither unix:/path nor tcp:HOST:PORT "
                 "(HOST a name, an IPv4 address or [IPv6], PORT 1..65535)", quoted);
  }
  return NULL;
}

DovekieAvClamd *
dovekie_av_clamd_new (const gchar *servers, guint connect_ms, guint scan_ms, GError **error)
{
  /* Commas too: a passwd-file userdb field cannot hold a space. */
  g_auto (GStrv) words = g_strsplit_set (servers != NULL ? servers : "", DOVEKIE_AV_CLAMD_SEPARATORS,
                                         -1);
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
      g_autofree gchar *quoted = dovekie_log_quote (servers);
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                   "dovekie_av_clamd: %s names no clamd server (give unix:/path or "
                   "tcp:HOST:PORT, separated by spaces or commas)", quoted);
      return NULL;
    }
  clamd = g_new0 (DovekieAvClamd, 1);
  clamd->servers = g_steal_pointer (&list);
  clamd->connect_ms = MAX (connect_ms, 1);
  clamd->scan_ms = MAX (scan_ms, 1);
  clamd->fildes = TRUE;
  return clamd;
}

void
dovekie_av_clamd_free (DovekieAvClamd *clamd)
{
  if (clamd == NULL)
    return;
  g_ptr_array_unref (clamd->servers);
  g_free (clamd->label);
  g_free (clamd);
}

const gchar *
dovekie_av_clamd_server (DovekieAvClamd *clamd)
{
  ClamdServer *server = g_ptr_array_index (clamd->servers, clamd->preferred);
  return server->text;
}

void
dovekie_av_clamd_set_fildes (DovekieAvClamd *clamd, gboolean fildes)
{
  clamd->fildes = fildes;
}

const gchar *
dovekie_av_clamd_scan_label (DovekieAvClamd *clamd)
{
  return clamd->label != NULL ? clamd->label : dovekie_av_clamd_server (clamd);
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

/* Reads everything clamd sends until it closes the connection (it does
 * after one command) and checks that it is exactly one reply: a second
 * result or bytes after the terminator are a protocol error, never a
 * verdict. At most DOVEKIE_AV_REPLY_MAX + 1 bytes are accepted; *len_r
 * excludes the NUL. `buf` holds DOVEKIE_AV_REPLY_MAX + 2 bytes, so one byte
 * past the longest reply shows that more came. */
static gboolean
read_reply (gint fd, gchar *buf, gsize *len_r, gint64 deadline, GError **error)
{
  gsize have = 0;

  for (;;)
    {
      gssize n;

      if (!wait_fd (fd, POLLIN, deadline, "waiting for clamd's reply", error))
        return FALSE;
      n = recv (fd, buf + have, DOVEKIE_AV_REPLY_MAX + 2 - have, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      /* A reset is a close too: clamd that refuses a stream closes with
       * our bytes unread, and that close arrives as a reset. What it sent
       * before is all it sent. */
      if (n < 0 && (errno != ECONNRESET || have == 0))
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "reading clamd's reply: %s",
                       g_strerror (errno));
          return FALSE;
        }
      if (n <= 0)
        return dovekie_av_reply_frame (buf, have, len_r, error);
      have += (gsize) n;
      if (have > DOVEKIE_AV_REPLY_MAX + 1)
        {
          if (memchr (buf, '\0', DOVEKIE_AV_REPLY_MAX + 1) != NULL)
            g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                                 "clamd sent more than one reply to one request");
          else
            g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                         "clamd's reply is longer than %d bytes", DOVEKIE_AV_REPLY_MAX);
          return FALSE;
        }
    }
}

typedef enum { COMMAND_INSTREAM, COMMAND_VERSION } ClamdCommand;

typedef enum { MODE_INSTREAM, MODE_FILDES, MODE_INSTREAM_FALLBACK } ScanMode;
static const gchar *const mode_names[] = { "instream", "fildes", "instream-fallback" };

typedef struct {
  ClamdCommand command;
  const DovekieAvReader *reader;
  guint64 max_bytes;
  /* results */
  DovekieAvStatus status;
  gchar *signature;
  gchar *version;
  gboolean reader_failed;
  ScanMode mode;
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

/* ---- FILDES ---- */

/* The reader's fd if clamd may read it instead of the stream: a regular
 * file, open for reading, no larger than we would stream. Else -1. A
 * write-only fd must never go out: clamd 1.4 answers "OK" for a file it
 * cannot read. */
static gint
fildes_fd (DovekieAvClamd *clamd, const ClamdServer *server, const Exchange *ex)
{
  struct stat st;
  gint fd, flags;

  if (!clamd->fildes || !server->is_unix || ex->command != COMMAND_INSTREAM ||
      ex->reader->fd == NULL)
    return -1;
  fd = ex->reader->fd (ex->reader->data);
  if (fd < 0 || fstat (fd, &st) < 0 || !S_ISREG (st.st_mode) || st.st_size < 0 ||
      (guint64) st.st_size > ex->max_bytes)
    return -1;
  flags = fcntl (fd, F_GETFL);
  if (flags < 0 || (flags & O_ACCMODE) == O_WRONLY)
    return -1;
#ifdef O_PATH
  if ((flags & O_PATH) != 0)
    return -1;
#endif
  return fd;
}

/* Passes `fd` the way clamdscan does: one NUL byte carrying SCM_RIGHTS,
 * in its own message after the command (clamd refuses an fd that comes
 * with the command's own bytes). */
static gboolean
send_fd (gint sock, gint fd, gint64 deadline, GError **error)
{
  union {
    struct cmsghdr align;
    gchar buf[CMSG_SPACE (sizeof (gint))];
  } control;
  guint8 nul = 0;
  struct iovec iov = { &nul, 1 };
  struct msghdr msg;
  struct cmsghdr *cmsg;

  memset (&control, 0, sizeof (control));
  memset (&msg, 0, sizeof (msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof (control.buf);
  cmsg = CMSG_FIRSTHDR (&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN (sizeof (gint));
  memcpy (CMSG_DATA (cmsg), &fd, sizeof (gint));
  for (;;)
    {
      gssize n = sendmsg (sock, &msg, MSG_NOSIGNAL);
      if (n == 1)
        return TRUE;
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == EAGAIN)
        {
          if (!wait_fd (sock, POLLOUT, deadline, "sending the fd to clamd", error))
            return FALSE;
          continue;
        }
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "sending the fd to clamd: %s",
                   n < 0 ? g_strerror (errno) : "nothing sent");
      return FALSE;
    }
}

/* clamd answers FILDES with "fd[<its fd number>]: " where INSTREAM has
 * "stream: "; what follows is parsed exactly as for INSTREAM. A reply
 * without that prefix can only be an error (a "stream: " verdict is not
 * an answer to FILDES). */
static gboolean
fildes_reply_parse (const gchar *reply, gsize len, Exchange *ex, GError **error)
{
  gchar rewritten[DOVEKIE_AV_REPLY_MAX + 16];
  gsize i = 3, digits = 0;

  if (len <= DOVEKIE_AV_REPLY_MAX && len > 3 && memcmp (reply, "fd[", 3) == 0)
    {
      while (i < len && g_ascii_isdigit (reply[i]))
        i++;
      digits = i - 3;
    }
  if (digits == 0 || digits > 10 || len - i < 2 || reply[i] != ']' || reply[i + 1] != ':')
    {
      if (dovekie_av_reply_parse (reply, len, &ex->status, &ex->signature, error))
        {
          g_clear_pointer (&ex->signature, g_free);
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                       "clamd sent an unexpected reply to FILDES: '%.*s'", (gint) MIN (len, 80),
                       reply);
        }
      return FALSE;
    }
  i += 2;
  /* "fd[N]:" + " rest" -> "stream:" + " rest" */
  memcpy (rewritten, "stream:", 7);
  memcpy (rewritten + 7, reply + i, len - i);
  return dovekie_av_reply_parse (rewritten, 7 + len - i, &ex->status, &ex->signature, error);
}

/* One FILDES exchange. *connected_r tells whether clamd was reached. */
static gboolean
exchange_fildes (const ClamdServer *server, DovekieAvClamd *clamd, Exchange *ex, gint msg_fd,
                 gboolean *connected_r, GError **error)
{
  static const gchar fildes[] = "zFILDES";
  gchar reply[DOVEKIE_AV_REPLY_MAX + 2];
  gsize reply_len = 0;
  gint64 deadline;
  off_t offset;
  gboolean ok;
  gint fd;

  *connected_r = FALSE;
  fd = server_connect (server, clamd->connect_ms, error);
  if (fd < 0)
    return FALSE;
  *connected_r = TRUE;
  deadline = g_get_monotonic_time () + (gint64) clamd->scan_ms * 1000;
  /* clamd scans from byte 0 whatever the offset, but leaves the shared
   * offset at 0: put it back for the fd's owner. */
  offset = lseek (msg_fd, 0, SEEK_CUR);
  ok = send_all (fd, (const guint8 *) fildes, sizeof (fildes), deadline, error) &&
       send_fd (fd, msg_fd, deadline, error) &&
       read_reply (fd, reply, &reply_len, deadline, error);
  close (fd);
  if (offset >= 0)
    (void) lseek (msg_fd, offset, SEEK_SET);
  return ok && fildes_reply_parse (reply, reply_len, ex, error);
}

static gboolean
exchange_once (const ClamdServer *server, DovekieAvClamd *clamd, Exchange *ex, GError **error)
{
  static const gchar instream[] = "zINSTREAM";
  static const gchar version[] = "zVERSION";
  gchar reply[DOVEKIE_AV_REPLY_MAX + 2];
  gsize reply_len = 0;
  gint64 deadline;
  gboolean sent;
  gint fd;

  ex->mode = MODE_INSTREAM;
  fd = fildes_fd (clamd, server, ex);
  if (fd >= 0)
    {
      g_autoptr (GError) fildes_error = NULL;
      gboolean connected;

      if (exchange_fildes (server, clamd, ex, fd, &connected, &fildes_error))
        {
          ex->mode = MODE_FILDES;
          return TRUE;
        }
      g_clear_pointer (&ex->signature, g_free);
      /* Unreachable or too slow: the stream would fare no better. */
      if (!connected || fildes_error->code == DOVEKIE_ERROR_TIMEOUT)
        {
          g_propagate_error (error, g_steal_pointer (&fildes_error));
          return FALSE;
        }
      /* clamd refused the fd or could not read it: stream the bytes. */
      ex->mode = MODE_INSTREAM_FALLBACK;
    }
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
          if (ex->command == COMMAND_INSTREAM)
            {
              g_free (clamd->label);
              clamd->label = g_strdup_printf ("%s mode=%s", server->text, mode_names[ex->mode]);
            }
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
  Exchange ex = { COMMAND_INSTREAM, reader, max_bytes, DOVEKIE_AV_CLEAN, NULL, NULL, FALSE,
                   MODE_INSTREAM };

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
  Exchange ex = { COMMAND_VERSION, NULL, 0, DOVEKIE_AV_CLEAN, NULL, NULL, FALSE, MODE_INSTREAM };

  *version_r = NULL;
  if (!exchange (clamd, &ex, error))
    return FALSE;
  *version_r = ex.version;
  return TRUE;
}
