/* Unit tests for the clamd reply parsers. */
#include "dovekie-config.h"

#include <stdlib.h>

#include "dovekie-test.h"
#include "dovekie-av-reply.h"

typedef struct {
  const gchar *reply;
  gsize len;            /* 0: strlen */
  gboolean ok;
  DovekieAvStatus status;
  const gchar *signature;
} ReplyCase;

static const ReplyCase reply_cases[] = {
  { "stream: OK", 0, TRUE, DOVEKIE_AV_CLEAN, NULL },
  { "stream: Eicar-Test-Signature FOUND", 0, TRUE, DOVEKIE_AV_INFECTED, "Eicar-Test-Signature" },
  { "stream: Win.Test.EICAR_HDB-1 FOUND", 0, TRUE, DOVEKIE_AV_INFECTED, "Win.Test.EICAR_HDB-1" },
  { "stream: {HEX}Heuristics.Phishing FOUND", 0, TRUE, DOVEKIE_AV_INFECTED, "{HEX}Heuristics.Phishing" },
  { "INSTREAM size limit exceeded. ERROR", 0, FALSE, 0, NULL },
  { "stream: lstat() failed ERROR", 0, FALSE, 0, NULL },
  { "", 0, FALSE, 0, NULL },
  { "stream: OK ", 0, FALSE, 0, NULL },
  { "stream:OK", 0, FALSE, 0, NULL },
  { "Stream: OK", 0, FALSE, 0, NULL },
  { "stream: FOUND", 0, FALSE, 0, NULL },
  { "stream:  FOUND", 0, FALSE, 0, NULL },
  { "stream: two words FOUND", 0, FALSE, 0, NULL },
  { "stream: X FOUND\n", 0, FALSE, 0, NULL },
  { "1: stream: OK", 0, FALSE, 0, NULL },
  { "PONG", 0, FALSE, 0, NULL },
  { "stream: OK\0trailing", 18, FALSE, 0, NULL },
  { "stream: \xc3\xa9 FOUND", 0, FALSE, 0, NULL },
  { "COMMAND READ TIMED OUT", 0, FALSE, 0, NULL },
};

START_TEST (test_reply_parse)
{
  const ReplyCase *c = &reply_cases[_i];
  gsize len = c->len != 0 ? c->len : strlen (c->reply);
  DovekieAvStatus status = 99;
  gchar *signature = (gchar *) "untouched";
  g_autoptr (GError) error = NULL;
  gboolean ok = dovekie_av_reply_parse (c->reply, len, &status, &signature, &error);

  ck_assert_msg (ok == c->ok, "case %d '%s': expected %d", _i, c->reply, c->ok);
  if (ok)
    {
      ck_assert_int_eq (status, c->status);
      ck_assert_str_eq (signature != NULL ? signature : "(null)",
                        c->signature != NULL ? c->signature : "(null)");
      ck_assert (error == NULL);
    }
  else
    {
      ck_assert_ptr_null (signature);
      ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL));
    }
  g_free (signature);
}
END_TEST

START_TEST (test_reply_bounds)
{
  /* A name of exactly the maximum passes; one byte more fails, and so does
   * an over-long reply. */
  g_autofree gchar *name = g_strnfill (DOVEKIE_AV_SIGNATURE_MAX, 'N');
  g_autofree gchar *longer = g_strnfill (DOVEKIE_AV_SIGNATURE_MAX + 1, 'N');
  g_autofree gchar *ok = g_strdup_printf ("stream: %s FOUND", name);
  g_autofree gchar *bad = g_strdup_printf ("stream: %s FOUND", longer);
  g_autofree gchar *huge = g_strnfill (DOVEKIE_AV_REPLY_MAX + 1, 'x');
  DovekieAvStatus status;
  gchar *signature = NULL;

  ck_assert (dovekie_av_reply_parse (ok, strlen (ok), &status, &signature, NULL));
  ck_assert_str_eq (signature, name);
  g_free (signature);
  ck_assert (!dovekie_av_reply_parse (bad, strlen (bad), &status, &signature, NULL));
  ck_assert (!dovekie_av_reply_parse (huge, strlen (huge), &status, &signature, NULL));
  /* The error text of a reported error is kept, for the log. */
  g_autoptr (GError) error = NULL;
  ck_assert (!dovekie_av_reply_parse ("INSTREAM size limit exceeded. ERROR", 35, &status,
                                      &signature, &error));
  ck_assert_ptr_nonnull (strstr (error->message, "size limit exceeded"));
}
END_TEST

/* Everything clamd sent for one request, up to its close, through the
 * frame check and the parser. The bug this guards: a reply holding two
 * results, "stream: OK\0stream: Evil FOUND\0", was cut at its first NUL
 * and taken as clean. Exactly one result per request; anything else is a
 * protocol error, which the module turns into a tempfail. */
typedef enum { FRAMED_CLEAN, FRAMED_INFECTED, FRAMED_CLAMD_ERROR, FRAMED_BAD } FrameExpect;

typedef struct {
  const gchar *raw;
  gsize len;
  FrameExpect expect;
  const gchar *message; /* in the error, when not a verdict */
} FrameCase;

#define RAW(s) s, sizeof (s) - 1

static const FrameCase frame_cases[] = {
  /* one result: accepted (an ERROR is one result too: clamd's own error) */
  { RAW ("stream: OK\0"), FRAMED_CLEAN, NULL },
  { RAW ("stream: Evil FOUND\0"), FRAMED_INFECTED, NULL },
  { RAW ("INSTREAM size limit exceeded. ERROR\0"), FRAMED_CLAMD_ERROR, "reported an error" },
  /* two results, in either order, or twice the same */
  { RAW ("stream: OK\0stream: Evil FOUND\0"), FRAMED_BAD, "more than one reply" },
  { RAW ("stream: Evil FOUND\0stream: OK\0"), FRAMED_BAD, "more than one reply" },
  { RAW ("stream: OK\0stream: OK\0"), FRAMED_BAD, "more than one reply" },
  { RAW ("stream: Evil FOUND\0INSTREAM size limit exceeded. ERROR\0"), FRAMED_BAD,
    "more than one reply" },
  /* trailing bytes after the terminator */
  { RAW ("stream: OK\0garbage"), FRAMED_BAD, "more than one reply" },
  { RAW ("stream: OK\0\0"), FRAMED_BAD, "more than one reply" },
  { RAW ("stream: OK\0\n"), FRAMED_BAD, "more than one reply" },
  /* empty, or a lone terminator */
  { RAW (""), FRAMED_BAD, "without a reply" },
  { RAW ("\0"), FRAMED_BAD, "empty reply" },
  /* no terminator */
  { RAW ("stream: OK"), FRAMED_BAD, "no terminator" },
  { RAW ("stream: Evil FOUND"), FRAMED_BAD, "no terminator" },
};

START_TEST (test_reply_frame)
{
  const FrameCase *c = &frame_cases[_i];
  DovekieAvStatus status = 99;
  gchar *signature = NULL;
  gsize len = 12345;
  g_autoptr (GError) error = NULL;
  gboolean ok = dovekie_av_reply_frame (c->raw, c->len, &len, &error) &&
                dovekie_av_reply_parse (c->raw, len, &status, &signature, &error);

  switch (c->expect)
    {
    case FRAMED_CLEAN:
    case FRAMED_INFECTED:
      ck_assert_msg (ok, "case %d: %s", _i, error != NULL ? error->message : "");
      ck_assert_uint_eq (len, c->len - 1);
      ck_assert_int_eq (status, c->expect == FRAMED_CLEAN ? DOVEKIE_AV_CLEAN : DOVEKIE_AV_INFECTED);
      ck_assert_str_eq (signature != NULL ? signature : "(null)",
                        c->expect == FRAMED_CLEAN ? "(null)" : "Evil");
      break;
    case FRAMED_CLAMD_ERROR:
    case FRAMED_BAD:
      ck_assert_msg (!ok, "case %d accepted", _i);
      ck_assert_ptr_null (signature);
      ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL));
      ck_assert_msg (strstr (error->message, c->message) != NULL, "case %d: %s", _i,
                     error->message);
      if (c->expect == FRAMED_BAD && strstr (c->message, "empty") == NULL)
        ck_assert_uint_eq (len, 0);
      break;
    }
  g_free (signature);
}
END_TEST

typedef struct {
  const gchar *reply;
  const gchar *version; /* NULL: must fail */
} VersionCase;

static const VersionCase version_cases[] = {
  { "ClamAV 1.4.6", "1.4.6/0" },
  { "ClamAV 1.4.6/27500/Tue Dec  3 09:36:41 2024", "1.4.6/27500" },
  { "ClamAV 0.103.11/26913", "0.103.11/26913" },
  { "ClamAV 1.0.0-rc/1/x", "1.0.0-rc/1" },
  { "ClamAV ", NULL },
  { "ClamAV", NULL },
  { "clamav 1.4.6", NULL },
  { "ClamAV 1.4.6/", NULL },
  { "ClamAV 1.4.6/abc", NULL },
  { "ClamAV 1.4.6/12x", NULL },
  { "ClamAV 1.4.6/99999999999", NULL },
  { "ClamAV 1.4 .6", NULL },
  { "ClamAV 1.4.6\n", NULL },
  { "stream: OK", NULL },
};

START_TEST (test_version_parse)
{
  const VersionCase *c = &version_cases[_i];
  g_autofree gchar *version = NULL;
  g_autoptr (GError) error = NULL;
  gboolean ok = dovekie_av_version_parse (c->reply, strlen (c->reply), &version, &error);

  ck_assert_msg (ok == (c->version != NULL), "case %d '%s'", _i, c->reply);
  if (ok)
    ck_assert_str_eq (version, c->version);
  else
    {
      ck_assert_ptr_null (version);
      ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL));
    }
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("dovekie-av-reply");
  TCase *tc_reply = tcase_create ("reply_parse");
  TCase *tc_frame = tcase_create ("reply_frame");
  TCase *tc_version = tcase_create ("version_parse");
  SRunner *runner;
  int failed;

  tcase_add_loop_test (tc_reply, test_reply_parse, 0, G_N_ELEMENTS (reply_cases));
  tcase_add_test (tc_reply, test_reply_bounds);
  tcase_add_loop_test (tc_frame, test_reply_frame, 0, G_N_ELEMENTS (frame_cases));
  tcase_add_loop_test (tc_version, test_version_parse, 0, G_N_ELEMENTS (version_cases));
  suite_add_tcase (s, tc_reply);
  suite_add_tcase (s, tc_frame);
  suite_add_tcase (s, tc_version);
  runner = srunner_create (s);
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
