/* Unit tests for the in-process libclamav engine, on a DB made at run time. */
#include "dovekie-config.h"

#include <stdlib.h>

#include "dovekie-test.h"
#include "dovekie-av-engine.h"
#include "test-av-sigs.h"

static const DovekieAvLimits limits = { 10 << 20, 5 << 20, 8, 100, 10000 };

static gchar *db_dir;

static void
setup (void)
{
  db_dir = test_make_dir ();
  test_av_write_sigs (db_dir);
}

static void
teardown (void)
{
  dovekie_av_engine_shutdown ();
  test_remove_dir (db_dir);
  g_clear_pointer (&db_dir, g_free);
}

static void
prepare (guint check_secs, gchar **notice)
{
  g_autoptr (GError) error = NULL;
  ck_assert_msg (dovekie_av_engine_prepare (db_dir, &limits, check_secs, notice, &error), "%s",
                 error != NULL ? error->message : "");
}

static DovekieAvStatus
scan (const gchar *text, gchar **signature)
{
  DovekieAvStatus status = 99;
  g_autoptr (GError) error = NULL;
  ck_assert_msg (dovekie_av_engine_scan ((const guint8 *) text, strlen (text), &status, signature,
                                         &error), "%s", error != NULL ? error->message : "");
  return status;
}

START_TEST (test_prepare)
{
  gchar *notice = NULL;
  g_autofree gchar *version = NULL;
  g_autoptr (GError) error = NULL;

  prepare (60, &notice);
  ck_assert_ptr_nonnull (strstr (notice, "2 signatures"));
  g_free (notice);
  /* Built once: a second prepare with the same settings says nothing. */
  prepare (60, &notice);
  ck_assert_ptr_null (notice);
  version = dovekie_av_engine_version ();
  ck_assert (g_ascii_isdigit (version[0]));
  /* No official DB here (version 0); the unofficial files' fingerprint. */
  ck_assert_msg (g_regex_match_simple ("^[0-9][^/]*/0\\+[0-9a-f]{8}$", version, 0, 0), "%s",
                 version);

  /* A missing DB directory is an error, not a crash. */
  ck_assert (!dovekie_av_engine_prepare ("/nonexistent/dovekie", &limits, 60, &notice, &error));
  ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE));
}
END_TEST

typedef struct {
  const gchar *text;
  const gchar *signature; /* NULL: clean */
} ScanCase;

static const ScanCase scan_cases[] = {
  { "hello world\n", NULL },
  { TEST_EICAR, "Test.Eicar" },
  { "Subject: hi\r\n\r\nline before\r\n" TEST_EICAR "\r\n", "Test.Eicar" },
  { TEST_HASHED, "Test.Hashed" },
  { "", NULL },
  /* base64 of the hashed sample inside a MIME attachment */
  { "From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
    "--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n--XX\r\n"
    "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "ZG92ZWtpZSB1bml0IHRlc3QgaGFzaGVkIHNhbXBsZQo=\r\n--XX--\r\n", "Test.Hashed" },
};

START_TEST (test_scan)
{
  const ScanCase *c = &scan_cases[_i];
  gchar *notice = NULL;
  gchar *signature = NULL;
  DovekieAvStatus status;

  prepare (60, &notice);
  g_free (notice);
  status = scan (c->text, &signature);
  if (c->signature == NULL)
    {
      ck_assert_int_eq (status, DOVEKIE_AV_CLEAN);
      ck_assert_ptr_null (signature);
    }
  else
    {
      ck_assert_int_eq (status, DOVEKIE_AV_INFECTED);
      ck_assert_msg (g_str_has_prefix (signature, c->signature), "case %d: %s", _i, signature);
    }
  g_free (signature);
}
END_TEST

START_TEST (test_reload)
{
  g_autofree gchar *extra = g_build_filename (db_dir, "extra.ndb", NULL);
  g_autofree gchar *before = NULL;
  g_autofree gchar *after = NULL;
  gchar *notice = NULL;
  gchar *signature = NULL;

  prepare (0, &notice);
  g_free (notice);
  before = dovekie_av_engine_version ();
  ck_assert_int_eq (scan ("a new threat appears\n", &signature), DOVEKIE_AV_CLEAN);
  /* "a new threat" in hex. */
  ck_assert (g_file_set_contents (extra, "Test.New:0:*:61206e657720746872656174\n", -1, NULL));
  prepare (0, &notice);
  ck_assert_ptr_nonnull (notice);
  ck_assert_ptr_nonnull (strstr (notice, "reloaded"));
  g_free (notice);
  ck_assert_int_eq (scan ("a new threat appears\n", &signature), DOVEKIE_AV_INFECTED);
  ck_assert (g_str_has_prefix (signature, "Test.New"));
  g_free (signature);
  /* A new unofficial signature file is a new DB version: verdicts made
     before it are stale. */
  after = dovekie_av_engine_version ();
  ck_assert_str_ne (before, after);

  /* A broken DB keeps the loaded engine. */
  ck_assert (g_file_set_contents (extra, "this is no signature\n", -1, NULL));
  prepare (0, &notice);
  ck_assert_ptr_nonnull (notice);
  ck_assert_ptr_nonnull (strstr (notice, "keeping the loaded one"));
  g_free (notice);
  ck_assert_int_eq (scan ("a new threat appears\n", &signature), DOVEKIE_AV_INFECTED);
  g_free (signature);
  g_remove (extra);
}
END_TEST

START_TEST (test_limits_rebuild)
{
  DovekieAvLimits other = limits;
  gchar *notice = NULL;
  g_autoptr (GError) error = NULL;

  prepare (60, &notice);
  g_free (notice);
  other.max_files = 7;
  ck_assert (dovekie_av_engine_prepare (db_dir, &other, 60, &notice, &error));
  ck_assert_ptr_nonnull (strstr (notice, "ready"));
  g_free (notice);
}
END_TEST

START_TEST (test_scan_without_engine)
{
  DovekieAvStatus status;
  gchar *signature = NULL;
  g_autoptr (GError) error = NULL;

  ck_assert (!dovekie_av_engine_scan ((const guint8 *) "x", 1, &status, &signature, &error));
  ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE));
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("dovekie-av-engine");
  TCase *tc = tcase_create ("engine");
  SRunner *runner;
  int failed;

  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_scan_without_engine);
  tcase_add_test (tc, test_prepare);
  tcase_add_loop_test (tc, test_scan, 0, G_N_ELEMENTS (scan_cases));
  tcase_add_test (tc, test_reload);
  tcase_add_test (tc, test_limits_rebuild);
  tcase_set_timeout (tc, 120);
  suite_add_tcase (s, tc);
  runner = srunner_create (s);
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
