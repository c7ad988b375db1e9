/* Unit tests for the clamd client, against a fake clamd (test-av-fake-clamd.h). */
#include "dovekie-config.h"

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
  DovekieAvReader reader = { mem_read, mem_rewind, &mr };
  return dovekie_av_clamd_scan (clamd, &reader, G_MAXUINT64, status, signature, error);
}

/* ---- dovekie_av_clamd_new ---- */

typedef struct {
  const gchar *servers;
  gboolean ok;
} NewCase;

static const NewCase new_cases[] = {
  { "unix:/run/clamav/clamd.ctl", TRUE },
  { "tcp:127.0.0.1:3310", TRUE },
  { "tcp:clamd.example.test:3310", TRUE },
  { "tcp:[::1]:3310", TRUE },
  { "  unix:/a   tcp:127.0.0.1:1\ttcp:[::1]:65535 ", TRUE },
  { "", FALSE },
  { "   ", FALSE },
  { "unix:relative", FALSE },
  { "unix:", FALSE },
  { "tcp:127.0.0.1", FALSE },
  { "tcp:127.0.0.1:0", FALSE },
  { "tcp:127.0.0.1:65536", FALSE },
  { "tcp:127.0.0.1:33x", FALSE },
  { "tcp::3310", FALSE },
  { "tcp:::1:3310", FALSE },
  { "tcp:[]:3310", FALSE },
  { "tcp:[::1]3310", FALSE },
  { "127.0.0.1:3310", FALSE },
  { "/run/clamav/clamd.ctl", FALSE },
  { "unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", FALSE },
  { "tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1 tcp:a:1", FALSE },
};

START_TEST (test_new)
{
  const NewCase *c = &new_cases[_i];
  g_autoptr (GError) error = NULL;
  g_autoptr (DovekieAvClamd) clamd = dovekie_av_clamd_new (c->servers, 100, 100, &error);

  ck_assert_msg ((clamd != NULL) == c->ok, "case %d '%s'", _i, c->servers);
  if (!c->ok)
    ck_assert_ptr_nonnull (strstr (error->message, "dovekie_av_clamd"));
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
  DovekieAvReader reader = { mem_read, mem_rewind, &mr };
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
  DovekieAvReader reader = { mem_read, mem_rewind, &mr };
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
