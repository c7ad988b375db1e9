/* Unit tests for the clamd client, against a fake clamd (test-av-fake-clamd.h). */
#include "dovekie-config.h"

#include <fcntl.h>
#include <stdlib.h>

#include "dovekie-test.h"
#include "dovekie-av-clamd.h"
#include "test-av-fake-clamd.h"

/* ---- an in-memory reader ---- */

typedef struct {
  const guint8 *data;
  gsize len, pos;
  guint rewinds;
  gboolean fail;
} MemReader;

static gssize
mem_read (gpointer data, guint8 *buf, gsize len, GError **error)
{
  MemReader *r = data;
  gsize n = MIN (len, r->len - r->pos);
  if (r->fail)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_IO, "mem read failure");
      return -1;
    }
  memcpy (buf, r->data + r->pos, n);
  r->pos += n;
  return (gssize) n;
}

static gboolean
mem_rewind (gpointer data, GError **error)
{
  MemReader *r = data;
  (void) error;
  r->pos = 0;
  r->rewinds++;
  return TRUE;
}

static gboolean
scan_text (DovekieAvClamd *clamd, const gchar *text, DovekieAvStatus *status, gchar **signature,
           GError **error)
{
  MemReader mr = { (const guint8 *) text, strlen (text), 0, 0, FALSE };
  DovekieAvReader reader = { mem_read, mem_rewind, &mr, NULL };
  return dovekie_av_clamd_scan (clamd, &reader, G_MAXUINT64, status, signature, error);
}

/* ---- dovekie_av_clamd_new ---- */

typedef struct {
  const gchar *servers;
  gboolean ok;
  /* ok: the first server of the list; else text the error must hold
   * (the bad item, quoted). */
  const gchar *expect;
} NewCase;

static const NewCase new_cases[] = {
  { "unix:/run/clamav/clamd.ctl", TRUE, "unix:/run/clamav/clamd.ctl" },
  { "tcp:127.0.0.1:3310", TRUE, "tcp:127.0.0.1:3310" },
  { "tcp:clamd.example.test:3310", TRUE, "tcp:clamd.example.test:3310" },
  { "tcp:[::1]:3310", TRUE, "tcp:[::1]:3310" },
  { "  unix:/a   tcp:127.0.0.1:1\ttcp:[::1]:65535 ", TRUE, "unix:/a" },
  /* Bug: a list needed spaces, which a passwd-file userdb field cannot
   * hold; commas separate too, mixed with spaces, empty items ignored. */
  { "unix:/a,tcp:127.0.0.1:1", TRUE, "unix:/a" },
  { "tcp:[::1]:3310,unix:/a", TRUE, "tcp:[::1]:3310" },
  { ",,unix:/a,,tcp:b:2,", TRUE, "unix:/a" },
  { "unix:/a, tcp:b:2 ,tcp:c:3\t,unix:/d", TRUE, "unix:/a" },
  { " , tcp:b:2", TRUE, "tcp:b:2" },
  { "", FALSE, "\"\" names no clamd server" },
  { "   ", FALSE, "\"   \" names no clamd server" },
  { ",", FALSE, "\",\" names no clamd server" },
  { " , ,\t,", FALSE, "names no clamd server" },
  { "unix:relative", FALSE, "\"unix:relative\" needs an absolute socket path" },
  { "unix:", FALSE, "\"unix:\" needs an absolute socket path" },
  { "tcp:127.0.0.1", FALSE, "\"tcp:127.0.0.1\" is neither" },
  { "tcp:127.0.0.1:0", FALSE, "\"tcp:127.0.0.1:0\" is neither" },
  { "tcp:127.0.0.1:65536", FALSE, "\"tcp:127.0.0.1:65536\"" },
  { "tcp:127.0.0.1:33x", FALSE, "\"tcp:127.0.0.1:33x\"" },
  { "tcp::3310", FALSE, "\"tcp::3310\"" },
  { "tcp:::1:3310", FALSE, "\"tcp:::1:3310\"" },
  { "tcp:[]:3310", FALSE, "\"tcp:[]:3310\"" },
  { "tcp:[::1]3310", FALSE, "\"tcp:[::1]3310\"" },
  { "127.0.0.1:3310", FALSE, "\"127.0.0.1:3310\" is neither" },
  { "/run/clamav/clamd.ctl", FALSE, "\"/run/clamav/clamd.ctl\" is neither" },
  { "clamd", FALSE, "\"clamd\" is neither" },
  /* A bad item anywhere in the list is named, not the whole list. */
  { "unix:/a,tcp:b", FALSE, "\"tcp:b\" is neither" },
  { "unix:/a tcp:b:2,bogus", FALSE, "\"bogus\" is neither" },
  { "unix:/a tcp:b:2;tcp:c:3", FALSE, "\"tcp:b:2;tcp:c:3\" is neither" },
  { "unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", FALSE, "needs an absolute socket path shorter than" },
  { "tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1", FALSE, "more than 16 servers" },
  { "tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1,tcp:a:1", FALSE, "more than 16 servers" },
};

START_TEST (test_new)
{
  const NewCase *c = &new_cases[_i];
  g_autoptr (GError) error = NULL;
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (c->servers, 100, 100, &error);

  ck_assert_msg ((clamd != NULL) == c->ok, "case %d '%s'", _i, c->servers);
  if (c->ok)
    {
      ck_assert_ptr_null (error);
      ck_assert_str_eq (dovekie_av_clamd_server (clamd), c->expect);
    }
  else
    {
      ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED));
      ck_assert_msg (g_str_has_prefix (error->message, "dovekie_av_clamd: "), "case %d: %s", _i,
                     error->message);
      ck_assert_msg (strstr (error->message, c->expect) != NULL, "case %d: %s", _i,
                     error->message);
    }
}
END_TEST

/* ---- scan ---- */

static void
check_scan_mode (gboolean tcp)
{
  FakeClamd *fake = fake_clamd_start (tcp, FAKE_OK);
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (fake->address, 1000, 2000, NULL);
  /* More than one chunk, to test the framing. */
  g_autofree gchar *big = g_strnfill (3 * DOVEKIE_AV_CLAMD_CHUNK + 17, 'm');
  DovekieAvStatus status = 99;
  gchar *signature = NULL;
  g_autoptr (GError) error = NULL;

  ck_assert_ptr_nonnull (clamd);
  ck_assert_msg (scan_text (clamd, big, &status, &signature, &error), "%s",
                 error != NULL ? error->message : "");
  ck_assert_int_eq (status, DOVEKIE_AV_CLEAN);
  ck_assert_ptr_null (signature);
  g_mutex_lock (&fake->lock);
  ck_assert_uint_eq (fake->last_body->len, strlen (big));
  ck_assert (memcmp (fake->last_body->data, big, strlen (big)) == 0);
  g_mutex_unlock (&fake->lock);

  fake->mode = FAKE_FOUND;
  ck_assert (scan_text (clamd, "x", &status, &signature, &error));
  ck_assert_int_eq (status, DOVEKIE_AV_INFECTED);
  ck_assert_str_eq (signature, "Fake.Test.Virus");
  g_free (signature);

  /* An empty message is one zero-length chunk. */
  fake->mode = FAKE_OK;
  ck_assert (scan_text (clamd, "", &status, &signature, &error));
  ck_assert_int_eq (status, DOVEKIE_AV_CLEAN);
  ck_assert_str_eq (dovekie_av_clamd_server (clamd), fake->address);
  fake_clamd_stop (fake);
}

START_TEST (test_scan_unix)
{
  check_scan_mode (FALSE);
}
END_TEST

START_TEST (test_scan_tcp)
{
  check_scan_mode (TRUE);
}
END_TEST

typedef struct {
  FakeMode mode;
  DovekieErrorCode code;
  const gchar *message;
} FaultCase;

static const FaultCase fault_cases[] = {
  { FAKE_GARBAGE, DOVEKIE_ERROR_PROTOCOL, "not one line of text" },
  { FAKE_SLOW, DOVEKIE_ERROR_TIMEOUT, "timed out waiting for clamd's reply" },
  { FAKE_ENDLESS, DOVEKIE_ERROR_PROTOCOL, "longer than" },
  { FAKE_CLOSE, DOVEKIE_ERROR_PROTOCOL, "without a reply" },
  { FAKE_SIZE_ERROR, DOVEKIE_ERROR_PROTOCOL, "size limit exceeded" },
  /* The bug: "stream: OK\0stream: X FOUND\0" was read up to its first NUL
   * and taken as clean. One request, one result; the rest is an error. */
  { FAKE_TWO_RESULTS, DOVEKIE_ERROR_PROTOCOL, "more than one reply" },
  { FAKE_TRAILING, DOVEKIE_ERROR_PROTOCOL, "more than one reply" },
  { FAKE_NO_NUL, DOVEKIE_ERROR_PROTOCOL, "no terminator" },
};

START_TEST (test_scan_faults)
{
  const FaultCase *c = &fault_cases[_i];
  FakeClamd *fake = fake_clamd_start (FALSE, c->mode);
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (fake->address, 500, 300, NULL);
  /* Big enough that a refusing server stops reading before the end. */
  g_autofree gchar *body = g_strnfill (c->mode == FAKE_SIZE_ERROR ? 8 << 20 : 1000, 'b');
  DovekieAvStatus status;
  gchar *signature = NULL;
  g_autoptr (GError) error = NULL;
  gint64 start = g_get_monotonic_time ();

  ck_assert (!scan_text (clamd, body, &status, &signature, &error));
  ck_assert_ptr_null (signature);
  ck_assert_msg (g_error_matches (error, DOVEKIE_ERROR, c->code), "case %d: %s", _i, error->message);
  ck_assert_msg (strstr (error->message, c->message) != NULL, "case %d: %s", _i, error->message);
  ck_assert_ptr_nonnull (strstr (error->message, fake->address));
  /* Bounded: the scan timeout is 300 ms. */
  ck_assert_int_lt (g_get_monotonic_time () - start, 2 * G_USEC_PER_SEC);
  fake_clamd_stop (fake);
}
END_TEST

START_TEST (test_scan_unreachable)
{
  g_autofree gchar *dir = test_make_dir ();
  g_autofree gchar *servers = g_strdup_printf ("unix:%s/none.sock", dir);
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (servers, 200, 200, NULL);
  DovekieAvStatus status;
  gchar *signature = NULL;
  g_autoptr (GError) error = NULL;

  ck_assert (!scan_text (clamd, "x", &status, &signature, &error));
  ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE));
  ck_assert_ptr_nonnull (strstr (error->message, "connect"));
  test_remove_dir (dir);
}
END_TEST

START_TEST (test_failover)
{
  g_autofree gchar *dir = test_make_dir ();
  FakeClamd *garbage = fake_clamd_start (FALSE, FAKE_GARBAGE);
  FakeClamd *good = fake_clamd_start (TRUE, FAKE_FOUND);
  g_autofree gchar *servers = g_strdup_printf ("unix:%s/none.sock %s %s", dir, garbage->address,
                                               good->address);
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (servers, 200, 500, NULL);
  const gchar *text = "failover body";
  MemReader mr = { (const guint8 *) text, strlen (text), 0, 0, FALSE };
  DovekieAvReader reader = { mem_read, mem_rewind, &mr, NULL };
  DovekieAvStatus status;
  gchar *signature = NULL;
  g_autoptr (GError) error = NULL;

  ck_assert_msg (dovekie_av_clamd_scan (clamd, &reader, 1000, &status, &signature, &error), "%s",
                 error != NULL ? error->message : "");
  ck_assert_int_eq (status, DOVEKIE_AV_INFECTED);
  g_free (signature);
  /* Rewound before each retry: the good server got the whole body. */
  ck_assert_uint_eq (mr.rewinds, 2);
  ck_assert_uint_eq (good->last_body->len, strlen (text));
  ck_assert_str_eq (dovekie_av_clamd_server (clamd), good->address);

  /* The server that answered is asked first next time. */
  gint before = g_atomic_int_get (&garbage->connections);
  mr.pos = 0;
  ck_assert (dovekie_av_clamd_scan (clamd, &reader, 1000, &status, &signature, &error));
  g_free (signature);
  ck_assert_int_eq (g_atomic_int_get (&garbage->connections), before);

  /* Version goes through the same failover. */
  gchar *version = NULL;
  ck_assert (dovekie_av_clamd_version (clamd, &version, &error));
  ck_assert_str_eq (version, "1.4.6/27000");
  g_free (version);

  fake_clamd_stop (garbage);
  fake_clamd_stop (good);
  test_remove_dir (dir);
}
END_TEST

START_TEST (test_all_fail)
{
  FakeClamd *a = fake_clamd_start (FALSE, FAKE_CLOSE);
  FakeClamd *b = fake_clamd_start (TRUE, FAKE_GARBAGE);
  g_autofree gchar *servers = g_strdup_printf ("%s %s", a->address, b->address);
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (servers, 200, 300, NULL);
  DovekieAvStatus status;
  gchar *signature = NULL;
  g_autoptr (GError) error = NULL;

  ck_assert (!scan_text (clamd, "x", &status, &signature, &error));
  ck_assert_ptr_nonnull (strstr (error->message, "all 2 clamd servers failed"));
  ck_assert_ptr_nonnull (strstr (error->message, b->address));
  fake_clamd_stop (a);
  fake_clamd_stop (b);
}
END_TEST

START_TEST (test_reader_failure_stops)
{
  FakeClamd *a = fake_clamd_start (FALSE, FAKE_OK);
  FakeClamd *b = fake_clamd_start (FALSE, FAKE_OK);
  g_autofree gchar *servers = g_strdup_printf ("%s %s", a->address, b->address);
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (servers, 200, 300, NULL);
  MemReader mr = { (const guint8 *) "x", 1, 0, 0, TRUE };
  DovekieAvReader reader = { mem_read, mem_rewind, &mr, NULL };
  DovekieAvStatus status;
  gchar *signature = NULL;
  g_autoptr (GError) error = NULL;

  ck_assert (!dovekie_av_clamd_scan (clamd, &reader, 1000, &status, &signature, &error));
  ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_IO));
  ck_assert_int_eq (g_atomic_int_get (&b->connections), 0);

  /* More bytes than allowed is not sent to a second server either. */
  g_clear_error (&error);
  mr.fail = FALSE;
  mr.data = (const guint8 *) "0123456789";
  mr.len = 10;
  mr.pos = 0;
  ck_assert (!dovekie_av_clamd_scan (clamd, &reader, 5, &status, &signature, &error));
  ck_assert_ptr_nonnull (strstr (error->message, "larger than"));
  ck_assert_int_eq (g_atomic_int_get (&b->connections), 0);
  fake_clamd_stop (a);
  fake_clamd_stop (b);
}
END_TEST

/* ---- FILDES ---- */

/* A message in memory and, for FILDES, the same bytes in a file. */
typedef struct {
  MemReader mem;
  gint fd;
  guint fd_calls;
} FileReader;

static gssize
file_read (gpointer data, guint8 *buf, gsize len, GError **error)
{
  return mem_read (&((FileReader *) data)->mem, buf, len, error);
}

static gboolean
file_rewind (gpointer data, GError **error)
{
  return mem_rewind (&((FileReader *) data)->mem, error);
}

static gint
file_fd (gpointer data)
{
  FileReader *r = data;
  r->fd_calls++;
  return r->fd;
}

/* Writes `text` into dir/name and opens it with `flags`. */
static gint
file_open (const gchar *dir, const gchar *name, const gchar *text, gint flags)
{
  g_autofree gchar *path = g_build_filename (dir, name, NULL);
  gint fd;

  ck_assert (g_file_set_contents (path, text, -1, NULL));
  fd = open (path, flags | O_CLOEXEC);
  ck_assert_int_ge (fd, 0);
  return fd;
}

static gboolean
scan_file (DovekieAvClamd *clamd, FileReader *fr, DovekieAvStatus *status, gchar **signature,
           GError **error)
{
  DovekieAvReader reader = { file_read, file_rewind, fr, file_fd };
  return dovekie_av_clamd_scan (clamd, &reader, 1 << 20, status, signature, error);
}

static void
assert_label_mode (DovekieAvClamd *clamd, const gchar *mode)
{
  g_autofree gchar *want = g_strdup_printf (" mode=%s", mode);
  ck_assert_msg (g_str_has_suffix (dovekie_av_clamd_scan_label (clamd), want), "label '%s'",
                 dovekie_av_clamd_scan_label (clamd));
}

START_TEST (test_fildes_used)
{
  g_autofree gchar *dir = test_make_dir ();
  const gchar *text = "Subject: fildes\n\nbody read by clamd from the file\n";
  FakeClamd *fake = fake_clamd_start (FALSE, FAKE_FOUND);
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (fake->address, 500, 2000, NULL);
  FileReader fr = { { (const guint8 *) text, strlen (text), 0, 0, FALSE }, -1, 0 };
  DovekieAvStatus status = 99;
  gchar *signature = NULL;
  g_autoptr (GError) error = NULL;

  fr.fd = file_open (dir, "msg", text, O_RDONLY);
  /* The fd's offset is not 0: clamd reads from byte 0 anyway, and the
   * owner finds the offset where it left it. */
  ck_assert_int_eq (lseek (fr.fd, 7, SEEK_SET), 7);
  ck_assert_msg (scan_file (clamd, &fr, &status, &signature, &error), "%s",
                 error != NULL ? error->message : "");
  ck_assert_int_eq (status, DOVEKIE_AV_INFECTED);
  ck_assert_str_eq (signature, "Fake.Test.Virus");
  g_clear_pointer (&signature, g_free);
  ck_assert_int_eq (g_atomic_int_get (&fake->fildes), 1);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 0);
  ck_assert_uint_eq (fake->last_body->len, strlen (text));
  ck_assert (memcmp (fake->last_body->data, text, strlen (text)) == 0);
  ck_assert_int_eq (lseek (fr.fd, 0, SEEK_CUR), 7);
  /* No byte went through the reader. */
  ck_assert_uint_eq (fr.mem.pos, 0);
  assert_label_mode (clamd, "fildes");
  ck_assert (g_str_has_prefix (dovekie_av_clamd_scan_label (clamd), fake->address));

  fake->mode = FAKE_OK;
  ck_assert (scan_file (clamd, &fr, &status, &signature, &error));
  ck_assert_int_eq (status, DOVEKIE_AV_CLEAN);
  ck_assert_ptr_null (signature);
  ck_assert_int_eq (g_atomic_int_get (&fake->fildes), 2);
  close (fr.fd);
  fake_clamd_stop (fake);
  test_remove_dir (dir);
}
END_TEST

/* Replies to FILDES that are no verdict: each time the same server is
 * asked over INSTREAM, which finds the message infected. So a refused or
 * garbled FILDES never makes an infected message clean. */
static const gchar *const fildes_refusals[] = {
  "fd[9]: Not a regular file ERROR",
  "FILDES: didn't receive file descriptor. ERROR",
  "PROTOCOL ERROR: ancillary data sent without FILDES. ERROR",
  "stream: OK",
  "fd[9]: OK junk",
  "fd[]: OK",
  "fd[9]:OK",
  "fd[9] OK",
  "fd[12345678901]: OK",
  "fd[9]: ",
  "fd[9",
  "",
  "\x01\xff binary",
};

START_TEST (test_fildes_fallback)
{
  g_autofree gchar *dir = test_make_dir ();
  const gchar *text = "refused body";
  FakeClamd *fake = fake_clamd_start (FALSE, FAKE_FOUND);
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (fake->address, 500, 2000, NULL);
  FileReader fr = { { (const guint8 *) text, strlen (text), 0, 0, FALSE }, -1, 0 };
  DovekieAvStatus status = DOVEKIE_AV_CLEAN;
  gchar *signature = NULL;
  g_autoptr (GError) error = NULL;

  fake->fildes_reply = fildes_refusals[_i];
  fr.fd = file_open (dir, "msg", text, O_RDONLY);
  ck_assert_msg (scan_file (clamd, &fr, &status, &signature, &error), "case %d: %s", _i,
                 error != NULL ? error->message : "");
  ck_assert_int_eq (g_atomic_int_get (&fake->fildes), 1);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 1);
  ck_assert_int_eq (status, DOVEKIE_AV_INFECTED);
  ck_assert_str_eq (signature, "Fake.Test.Virus");
  g_free (signature);
  ck_assert_uint_eq (fake->last_body->len, strlen (text));
  assert_label_mode (clamd, "instream-fallback");
  close (fr.fd);
  fake_clamd_stop (fake);
  test_remove_dir (dir);
}
END_TEST

typedef enum {
  NOT_TCP,          /* a tcp: server cannot take an fd */
  NOT_DISABLED,     /* dovekie_av_clamd_set_fildes (FALSE) */
  NOT_NO_FD,        /* the reader has none (-1) */
  NOT_WRITE_ONLY,   /* clamd would answer OK for a file it cannot read */
  NOT_DIRECTORY,    /* not a regular file */
  NOT_PIPE,         /* not a regular file */
  NOT_TOO_BIG,      /* larger than max_bytes: the stream's own check says so */
} NotCase;

START_TEST (test_fildes_not_used)
{
  NotCase c = (NotCase) _i;
  g_autofree gchar *dir = test_make_dir ();
  const gchar *text = "streamed body";
  FakeClamd *fake = fake_clamd_start (c == NOT_TCP, FAKE_OK);
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (fake->address, 500, 2000, NULL);
  FileReader fr = { { (const guint8 *) text, strlen (text), 0, 0, FALSE }, -1, 0 };
  DovekieAvReader reader = { file_read, file_rewind, &fr, file_fd };
  DovekieAvStatus status = 99;
  gchar *signature = NULL;
  g_autoptr (GError) error = NULL;
  gint pipe_fds[2] = { -1, -1 };
  gboolean ok;

  switch (c)
    {
    case NOT_WRITE_ONLY:
      fr.fd = file_open (dir, "msg", text, O_WRONLY);
      break;
    case NOT_DIRECTORY:
      fr.fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      break;
    case NOT_PIPE:
      ck_assert_int_eq (pipe (pipe_fds), 0);
      ck_assert_int_eq (write (pipe_fds[1], text, strlen (text)), (gssize) strlen (text));
      fr.fd = pipe_fds[0];
      break;
    case NOT_NO_FD:
      break;
    default:
      fr.fd = file_open (dir, "msg", text, O_RDONLY);
      break;
    }
  if (c == NOT_DISABLED)
    dovekie_av_clamd_set_fildes (clamd, FALSE);
  ok = dovekie_av_clamd_scan (clamd, &reader, c == NOT_TOO_BIG ? 5 : 1 << 20, &status,
                              &signature, &error);
  ck_assert_int_eq (g_atomic_int_get (&fake->fildes), 0);
  if (c == NOT_TOO_BIG)
    {
      ck_assert (!ok);
      ck_assert_ptr_nonnull (strstr (error->message, "larger than"));
    }
  else
    {
      ck_assert_msg (ok, "case %d: %s", _i, error != NULL ? error->message : "");
      ck_assert_int_eq (status, DOVEKIE_AV_CLEAN);
      ck_assert_int_eq (g_atomic_int_get (&fake->scans), 1);
      ck_assert_uint_eq (fake->last_body->len, strlen (text));
      assert_label_mode (clamd, "instream");
    }
  /* The fd is not even asked for where it could not be used. */
  ck_assert_uint_eq (fr.fd_calls, c == NOT_TCP || c == NOT_DISABLED ? 0 : 1);
  if (fr.fd >= 0)
    close (fr.fd);
  if (pipe_fds[1] >= 0)
    close (pipe_fds[1]);
  fake_clamd_stop (fake);
  test_remove_dir (dir);
}
END_TEST

/* A FILDES that times out is a server failure, not a reason to stream the
 * message to the same slow server. */
START_TEST (test_fildes_timeout)
{
  g_autofree gchar *dir = test_make_dir ();
  const gchar *text = "slow body";
  FakeClamd *fake = fake_clamd_start (FALSE, FAKE_SLOW);
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (fake->address, 500, 200, NULL);
  FileReader fr = { { (const guint8 *) text, strlen (text), 0, 0, FALSE }, -1, 0 };
  DovekieAvStatus status;
  gchar *signature = NULL;
  g_autoptr (GError) error = NULL;

  fake->slow_ms = 600;
  fr.fd = file_open (dir, "msg", text, O_RDONLY);
  ck_assert (!scan_file (clamd, &fr, &status, &signature, &error));
  ck_assert_ptr_null (signature);
  ck_assert_msg (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_TIMEOUT), "%s",
                 error->message);
  close (fr.fd);
  /* Once the fake has served its slow FILDES, nothing else is waiting. */
  g_usleep (900 * 1000);
  ck_assert_int_eq (g_atomic_int_get (&fake->connections), 1);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 0);
  fake_clamd_stop (fake);
  test_remove_dir (dir);
}
END_TEST

START_TEST (test_version)
{
  FakeClamd *fake = fake_clamd_start (FALSE, FAKE_OK);
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (fake->address, 200, 300, NULL);
  gchar *version = NULL;
  g_autoptr (GError) error = NULL;

  fake->version = "ClamAV 1.4.6";
  ck_assert (dovekie_av_clamd_version (clamd, &version, &error));
  ck_assert_str_eq (version, "1.4.6/0");
  g_free (version);
  fake->version = "garbage";
  ck_assert (!dovekie_av_clamd_version (clamd, &version, &error));
  ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL));
  ck_assert_ptr_null (version);
  fake_clamd_stop (fake);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("dovekie-av-clamd");
  TCase *tc_new = tcase_create ("new");
  TCase *tc_scan = tcase_create ("scan");
  TCase *tc_version = tcase_create ("version");
  SRunner *runner;
  int failed;

  tcase_add_loop_test (tc_new, test_new, 0, G_N_ELEMENTS (new_cases));
  tcase_add_test (tc_scan, test_scan_unix);
  tcase_add_test (tc_scan, test_scan_tcp);
  tcase_add_loop_test (tc_scan, test_scan_faults, 0, G_N_ELEMENTS (fault_cases));
  tcase_add_test (tc_scan, test_scan_unreachable);
  tcase_add_test (tc_scan, test_failover);
  tcase_add_test (tc_scan, test_all_fail);
  tcase_add_test (tc_scan, test_reader_failure_stops);
  tcase_add_test (tc_scan, test_fildes_used);
  tcase_add_loop_test (tc_scan, test_fildes_fallback, 0, G_N_ELEMENTS (fildes_refusals));
  tcase_add_loop_test (tc_scan, test_fildes_not_used, 0, NOT_TOO_BIG + 1);
  tcase_add_test (tc_scan, test_fildes_timeout);
  tcase_add_test (tc_version, test_version);
  /* Under valgrind everything is slower. */
  tcase_set_timeout (tc_scan, 60);
  suite_add_tcase (s, tc_new);
  suite_add_tcase (s, tc_scan);
  suite_add_tcase (s, tc_version);
  runner = srunner_create (s);
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
