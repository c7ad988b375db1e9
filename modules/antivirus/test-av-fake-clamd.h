/* A fake clamd for unit tests: one thread serving a unix socket or a TCP
 * port on 127.0.0.1, answering every command the way `mode` says. It reads
 * INSTREAM framing for real, so a client's framing bugs show up, and
 * receives FILDES descriptors for real (SCM_RIGHTS in a message of its
 * own after the command, as clamd wants), reading the file from byte 0
 * and leaving its offset at the end, as clamd does. Header only; used by
 * test-dovekie-av-clamd.c and test-dovekie-antivirus.c. */
#ifndef TEST_AV_FAKE_CLAMD_H
#define TEST_AV_FAKE_CLAMD_H

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>

typedef enum {
  FAKE_OK,          /* "stream: OK" */
  FAKE_FOUND,       /* "stream: <found_name> FOUND" */
  FAKE_GARBAGE,     /* binary bytes, then NUL */
  FAKE_SLOW,        /* waits slow_ms, then "stream: OK" */
  FAKE_ENDLESS,     /* sends text without a NUL until the client leaves */
  FAKE_CLOSE,       /* closes without a word */
  FAKE_SIZE_ERROR,  /* "INSTREAM size limit exceeded. ERROR" right after the command */
  FAKE_TWO_RESULTS, /* "stream: OK" and "stream: <found_name> FOUND", each with its NUL */
  FAKE_TRAILING,    /* "stream: OK", its NUL, then bytes */
  FAKE_NO_NUL,      /* "stream: OK" without its NUL, then closes */
} FakeMode;

typedef struct {
  gint listen_fd;
  gchar *address;        /* "unix:/..." or "tcp:127.0.0.1:N" */
  gchar *dir;            /* temp dir of the unix socket */
  GThread *thread;
  gint stop;             /* atomic */
  FakeMode mode;         /* atomic-ish: set before connections */
  const gchar *found_name;
  const gchar *version;  /* VERSION reply */
  guint slow_ms;
  gint connections;      /* atomic: connections accepted */
  gint scans;            /* atomic: complete INSTREAM bodies received */
  gint fildes;           /* atomic: FILDES descriptors received and read */
  const gchar *fildes_reply; /* if set, the reply to every FILDES (else by mode) */
  GMutex lock;
  GByteArray *last_body; /* last INSTREAM body, under lock */
} FakeClamd;

static gboolean
fake_read_exact (gint fd, guint8 *buf, gsize len)
{
  while (len > 0)
    {
      gssize n = recv (fd, buf, len, 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
      buf += n;
      len -= (gsize) n;
    }
  return TRUE;
}

static void
fake_send (gint fd, const void *data, gsize len)
{
  (void) send (fd, data, len, MSG_NOSIGNAL);
}

/* The descriptor of a FILDES: one byte with SCM_RIGHTS; -1 if none. */
static gint
fake_recv_fd (gint fd)
{
  union {
    struct cmsghdr align;
    gchar buf[CMSG_SPACE (sizeof (gint))];
  } control;
  guint8 byte;
  struct iovec iov = { &byte, 1 };
  struct msghdr msg;
  struct cmsghdr *cmsg;
  gint passed = -1;

  memset (&msg, 0, sizeof (msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof (control.buf);
  if (recvmsg (fd, &msg, MSG_CMSG_CLOEXEC) != 1)
    return -1;
  for (cmsg = CMSG_FIRSTHDR (&msg); cmsg != NULL; cmsg = CMSG_NXTHDR (&msg, cmsg))
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
      memcpy (&passed, CMSG_DATA (cmsg), sizeof (gint));
  return passed;
}

static void fake_reply (FakeClamd *fake, gint fd, const gchar *prefix);

static void
fake_serve_fildes (FakeClamd *fake, gint fd)
{
  gint passed = fake_recv_fd (fd);
  g_autoptr (GByteArray) body = g_byte_array_new ();
  guint8 buf[4096];
  gssize n;

  if (passed < 0)
    {
      static const char err[] = "FILDES: didn't receive file descriptor. ERROR";
      fake_send (fd, err, sizeof (err));
      return;
    }
  /* Like clamd: from byte 0, whatever the offset, which it moves. */
  (void) lseek (passed, 0, SEEK_SET);
  while ((n = read (passed, buf, sizeof (buf))) > 0)
    g_byte_array_append (body, buf, (guint) n);
  close (passed);
  g_atomic_int_inc (&fake->fildes);
  g_mutex_lock (&fake->lock);
  g_byte_array_set_size (fake->last_body, 0);
  g_byte_array_append (fake->last_body, body->data, body->len);
  g_mutex_unlock (&fake->lock);
  if (fake->fildes_reply != NULL)
    fake_send (fd, fake->fildes_reply, strlen (fake->fildes_reply) + 1);
  else
    fake_reply (fake, fd, "fd[9]");
}

static void
fake_serve (FakeClamd *fake, gint fd)
{
  gchar command[32];
  gsize clen = 0;
  g_autoptr (GByteArray) body = g_byte_array_new ();

  /* The command ends at its NUL. */
  while (clen < sizeof (command) - 1)
    {
      if (!fake_read_exact (fd, (guint8 *) command + clen, 1))
        return;
      if (command[clen] == '\0')
        break;
      clen++;
    }
  command[clen] = '\0';
  if (g_str_equal (command, "zVERSION"))
    {
      fake_send (fd, fake->version, strlen (fake->version) + 1);
      return;
    }
  if (g_str_equal (command, "zFILDES"))
    {
      fake_serve_fildes (fake, fd);
      return;
    }
  if (!g_str_equal (command, "zINSTREAM"))
    {
      static const char unknown[] = "UNKNOWN COMMAND";
      fake_send (fd, unknown, sizeof (unknown));
      return;
    }
  if (fake->mode == FAKE_SIZE_ERROR)
    {
      static const char err[] = "INSTREAM size limit exceeded. ERROR";
      fake_send (fd, err, sizeof (err));
      return;
    }
  for (;;)
    {
      guint8 lenbuf[4];
      guint32 len;
      if (!fake_read_exact (fd, lenbuf, 4))
        return;
      len = ((guint32) lenbuf[0] << 24) | ((guint32) lenbuf[1] << 16) | ((guint32) lenbuf[2] << 8) | lenbuf[3];
      if (len == 0)
        break;
      g_assert (len <= 16 * 1024 * 1024);
      guint old = body->len;
      g_byte_array_set_size (body, old + len);
      if (!fake_read_exact (fd, body->data + old, len))
        return;
    }
  g_atomic_int_inc (&fake->scans);
  g_mutex_lock (&fake->lock);
  g_byte_array_set_size (fake->last_body, 0);
  g_byte_array_append (fake->last_body, body->data, body->len);
  g_mutex_unlock (&fake->lock);
  fake_reply (fake, fd, "stream");
}

/* The verdict after a received message; `prefix` is "stream" or "fd[N]". */
static void
fake_reply (FakeClamd *fake, gint fd, const gchar *prefix)
{
  g_autofree gchar *ok = g_strdup_printf ("%s: OK", prefix);

  switch (fake->mode)
    {
    case FAKE_OK:
      fake_send (fd, ok, strlen (ok) + 1);
      break;
    case FAKE_FOUND:
      {
        g_autofree gchar *reply = g_strdup_printf ("%s: %s FOUND", prefix, fake->found_name);
        fake_send (fd, reply, strlen (reply) + 1);
      }
      break;
    case FAKE_GARBAGE:
      fake_send (fd, "\x01\x02\xff garbage\n\x7f", 13);
      fake_send (fd, "", 1);
      break;
    case FAKE_SLOW:
      g_usleep ((gulong) fake->slow_ms * 1000);
      fake_send (fd, ok, strlen (ok) + 1);
      break;
    case FAKE_ENDLESS:
      {
        gchar chunk[4096];
        memset (chunk, 'A', sizeof (chunk));
        for (guint i = 0; i < 100000 && !g_atomic_int_get (&fake->stop); i++)
          if (send (fd, chunk, sizeof (chunk), MSG_NOSIGNAL) < 0)
            break;
      }
      break;
    case FAKE_TWO_RESULTS:
      {
        g_autofree gchar *found = g_strdup_printf ("%s: %s FOUND", prefix, fake->found_name);
        fake_send (fd, ok, strlen (ok) + 1);
        fake_send (fd, found, strlen (found) + 1);
      }
      break;
    case FAKE_TRAILING:
      fake_send (fd, ok, strlen (ok) + 1);
      fake_send (fd, "xyz", 3);
      break;
    case FAKE_NO_NUL:
      fake_send (fd, ok, strlen (ok));
      break;
    case FAKE_CLOSE:
    case FAKE_SIZE_ERROR:
      break;
    }
}

static gpointer
fake_thread (gpointer data)
{
  FakeClamd *fake = data;

  while (!g_atomic_int_get (&fake->stop))
    {
      struct pollfd pfd = { fake->listen_fd, POLLIN, 0 };
      gint fd;
      if (poll (&pfd, 1, 20) <= 0)
        continue;
      fd = accept (fake->listen_fd, NULL, NULL);
      if (fd < 0)
        continue;
      g_atomic_int_inc (&fake->connections);
      fake_serve (fake, fd);
      close (fd);
    }
  return NULL;
}

static FakeClamd *
fake_clamd_start (gboolean tcp, FakeMode mode)
{
  FakeClamd *fake = g_new0 (FakeClamd, 1);

  fake->mode = mode;
  fake->found_name = "Fake.Test.Virus";
  fake->version = "ClamAV 1.4.6/27000/Mon Jan  1 00:00:00 2024";
  fake->slow_ms = 1000;
  fake->last_body = g_byte_array_new ();
  g_mutex_init (&fake->lock);
  if (tcp)
    {
      struct sockaddr_in sin;
      socklen_t len = sizeof (sin);
      fake->listen_fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      memset (&sin, 0, sizeof (sin));
      sin.sin_family = AF_INET;
      sin.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
      g_assert (bind (fake->listen_fd, (struct sockaddr *) &sin, sizeof (sin)) == 0);
      g_assert (getsockname (fake->listen_fd, (struct sockaddr *) &sin, &len) == 0);
      fake->address = g_strdup_printf ("tcp:127.0.0.1:%u", ntohs (sin.sin_port));
    }
  else
    {
      struct sockaddr_un sun;
      fake->dir = g_dir_make_tmp ("dovekie-fakeclamd-XXXXXX", NULL);
      g_assert (fake->dir != NULL);
      memset (&sun, 0, sizeof (sun));
      sun.sun_family = AF_UNIX;
      g_snprintf (sun.sun_path, sizeof (sun.sun_path), "%s/clamd.sock", fake->dir);
      fake->listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      g_assert (bind (fake->listen_fd, (struct sockaddr *) &sun, sizeof (sun)) == 0);
      fake->address = g_strdup_printf ("unix:%s", sun.sun_path);
    }
  g_assert (listen (fake->listen_fd, 16) == 0);
  fake->thread = g_thread_new ("fake-clamd", fake_thread, fake);
  return fake;
}

static void
fake_clamd_stop (FakeClamd *fake)
{
  if (fake == NULL)
    return;
  g_atomic_int_set (&fake->stop, 1);
  g_thread_join (fake->thread);
  close (fake->listen_fd);
  if (fake->dir != NULL)
    {
      g_autofree gchar *path = g_strdup_printf ("%s/clamd.sock", fake->dir);
      unlink (path);
      rmdir (fake->dir);
    }
  g_byte_array_unref (fake->last_body);
  g_mutex_clear (&fake->lock);
  g_free (fake->address);
  g_free (fake->dir);
  g_free (fake);
}

#endif
