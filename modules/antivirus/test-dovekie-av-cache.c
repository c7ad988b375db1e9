/* Unit tests for the verdict cache records and the message digest. */
#include "dovekie-config.h"

#include <stdlib.h>

#include "dovekie-test.h"
#include "dovekie-av-cache.h"

typedef struct {
  const guint8 *data;
  gsize len, pos, chunk;
  gboolean fail;
} Src;

static gssize
src_read (gpointer data, guint8 *buf, gsize len, GError **error)
{
  Src *s = data;
  gsize n = MIN (MIN (len, s->len - s->pos), s->chunk);
  if (s->fail)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_IO, "src failure");
      return -1;
    }
  memcpy (buf, s->data + s->pos, n);
  s->pos += n;
  return (gssize) n;
}

START_TEST (test_digest)
{
  /* SHA-256("abc"), FIPS 180-2. */
  static const gchar abc_hex[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  Src src = { (const guint8 *) "abc", 3, 0, 1, FALSE };
  DovekieAvReader reader = { src_read, NULL, &src, NULL };
  guint8 digest[DOVEKIE_AV_DIGEST_LEN];
  guint64 size;
  gboolean too_big;
  g_autoptr (GByteArray) keep = g_byte_array_new ();
  g_autofree gchar *key = NULL;
  g_autoptr (GError) error = NULL;

  ck_assert (dovekie_av_digest (&reader, 100, digest, &size, &too_big, keep, &error));
  ck_assert (!too_big);
  ck_assert_uint_eq (size, 3);
  ck_assert_uint_eq (keep->len, 3);
  key = dovekie_av_cache_key (digest);
  ck_assert_str_eq (key + 2, abc_hex);
  ck_assert (g_str_has_prefix (key, "v/"));

  /* Over the limit: stops, says so. */
  src.pos = 0;
  ck_assert (dovekie_av_digest (&reader, 2, digest, &size, &too_big, NULL, &error));
  ck_assert (too_big);
  ck_assert_uint_gt (size, 2);

  /* Exactly at the limit is fine. */
  src.pos = 0;
  ck_assert (dovekie_av_digest (&reader, 3, digest, &size, &too_big, NULL, &error));
  ck_assert (!too_big);

  src.pos = 0;
  src.fail = TRUE;
  ck_assert (!dovekie_av_digest (&reader, 100, digest, &size, &too_big, NULL, &error));
  ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_IO));
}
END_TEST

START_TEST (test_format_roundtrip)
{
  g_autofree gchar *clean = dovekie_av_cache_format ("1.4.6/27000", DOVEKIE_AV_CLEAN, "ignored");
  g_autofree gchar *infected = dovekie_av_cache_format ("1.4.6/27000", DOVEKIE_AV_INFECTED, "Sig.X");
  gchar *version = NULL, *signature = NULL;
  DovekieAvStatus status;

  ck_assert_str_eq (clean, "1.4.6/27000 clean");
  ck_assert_str_eq (infected, "1.4.6/27000 infected Sig.X");
  ck_assert (dovekie_av_cache_parse (infected, &version, &status, &signature));
  ck_assert_str_eq (version, "1.4.6/27000");
  ck_assert_int_eq (status, DOVEKIE_AV_INFECTED);
  ck_assert_str_eq (signature, "Sig.X");
  g_free (version);
  g_free (signature);
}
END_TEST

START_TEST (test_format_released)
{
  g_autofree gchar *released = dovekie_av_cache_format_released ("1.4.6/27000", "Sig.X");
  g_autofree gchar *version = NULL, *signature = NULL;
  g_autofree gchar *version2 = NULL, *signature2 = NULL;
  DovekieAvStatus status = DOVEKIE_AV_INFECTED;

  ck_assert_str_eq (released, "1.4.6/27000 released Sig.X");
  ck_assert (dovekie_av_cache_parse (released, &version, &status, &signature));
  ck_assert_str_eq (version, "1.4.6/27000");
  /* Released means clean for that version; the signature stays known. */
  ck_assert_int_eq (status, DOVEKIE_AV_CLEAN);
  ck_assert_str_eq (signature, "Sig.X");
  ck_assert (!dovekie_av_cache_parse ("1.4.6/27000 released", &version2, &status, &signature2));
  ck_assert (version2 == NULL && signature2 == NULL);
}
END_TEST

typedef struct {
  const gchar *value;
  gboolean ok;
} ParseCase;

static const ParseCase parse_cases[] = {
  { "1.4.6/0 clean", TRUE },
  { "1.4.6/0 infected A", TRUE },
  { "1.4.6/0 infected", FALSE },
  { "1.4.6/0 infected A B", FALSE },
  { "1.4.6/0 clean extra", FALSE },
  { "1.4.6/0  clean", FALSE },
  { " 1.4.6/0 clean", FALSE },
  { "1.4.6/0", FALSE },
  { "", FALSE },
  { "1.4.6/0 dirty", FALSE },
  { "1.4.6/0 infected \x01", FALSE },
  { "1.4.6/0 CLEAN", FALSE },
  { "1.4.6/0 released A", TRUE },
  { "1.4.6/0 released", FALSE },
  { "1.4.6/0 released A B", FALSE },
};

START_TEST (test_parse)
{
  const ParseCase *c = &parse_cases[_i];
  gchar *version = NULL, *signature = NULL;
  DovekieAvStatus status;
  gboolean ok = dovekie_av_cache_parse (c->value, &version, &status, &signature);

  ck_assert_msg (ok == c->ok, "case %d '%s'", _i, c->value);
  if (!ok)
    ck_assert (version == NULL && signature == NULL);
  g_free (version);
  g_free (signature);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("dovekie-av-cache");
  TCase *tc_digest = tcase_create ("digest");
  TCase *tc_record = tcase_create ("record");
  SRunner *runner;
  int failed;

  tcase_add_test (tc_digest, test_digest);
  tcase_add_test (tc_record, test_format_roundtrip);
  tcase_add_test (tc_record, test_format_released);
  tcase_add_loop_test (tc_record, test_parse, 0, G_N_ELEMENTS (parse_cases));
  suite_add_tcase (s, tc_digest);
  suite_add_tcase (s, tc_record);
  runner = srunner_create (s);
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
