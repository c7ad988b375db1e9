/* Unit tests for the quarantine notice. */
#include "dovekie-config.h"

#include <stdlib.h>

#include "dovekie-test.h"
#include "dovekie-av-notice.h"

/* 2026-12-07 16:01:44 UTC, a Monday. */
#define NOTICE_TIME G_GINT64_CONSTANT (1796659304)

static DovekieAntivirusNotice
notice_of (const gchar *from, const gchar *to, const gchar *subject, const gchar *date)
{
  DovekieAntivirusNotice n = {
    from, to, subject, date, "Virus", "Virus found: Eicar-Test-Signature",
    "mx.example.org", "4242.17", NOTICE_TIME,
  };
  return n;
}

static gchar *
make (const DovekieAntivirusNotice *n)
{
  g_autoptr (GError) error = NULL;
  gchar *text = dovekie_av_notice_text (n, &error);

  ck_assert_msg (text != NULL, "%s", error != NULL ? error->message : "?");
  ck_assert (error == NULL);
  return text;
}

/* The header block (up to the empty line), and the header lines in it. */
static gchar **
header_lines (const gchar *text)
{
  const gchar *end = strstr (text, "\r\n\r\n");
  g_autofree gchar *head = NULL;

  ck_assert_ptr_nonnull (end);
  head = g_strndup (text, (gsize) (end - text));
  return g_strsplit (head, "\r\n", -1);
}

/* Every line ends in CRLF: no bare CR or LF anywhere. */
static void
assert_crlf_only (const gchar *text)
{
  for (const gchar *p = text; *p != '\0'; p++)
    {
      if (*p == '\r')
        ck_assert_msg (p[1] == '\n', "bare CR at %d", (int) (p - text));
      else if (*p == '\n')
        ck_assert_msg (p > text && p[-1] == '\r', "bare LF at %d", (int) (p - text));
    }
}

/* The notice's exact bytes, as users have had them. */
START_TEST (test_notice_bytes)
{
  DovekieAntivirusNotice n = notice_of ("Mallory <m@example.net>", "alice@example.org",
                                        "Invoice", "Mon, 7 Dec 2026 15:00:00 +0000");
  g_autofree gchar *text = NULL;

  g_setenv ("TZ", "UTC", TRUE);
  tzset ();
  text = make (&n);
  ck_assert_str_eq (text,
    "From: Mail virus scanner <postmaster@mx.example.org>\r\n"
    "To: alice@example.org\r\n"
    "Subject: [virus removed] Invoice\r\n"
    "Date: Mon, 07 Dec 2026 16:01:44 +0000\r\n"
    "Message-ID: <dovekie.1796659304.4242.17@mx.example.org>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "Virus found: Eicar-Test-Signature.\r\n"
    "The message was moved to the mailbox \"Virus\".\r\n"
    "\r\n"
    "  From:    Mallory <m@example.net>\r\n"
    "  Subject: Invoice\r\n"
    "  Date:    Mon, 7 Dec 2026 15:00:00 +0000\r\n"
    "\r\n"
    "Ask your mail administrator if you need it.\r\n");
}
END_TEST

/* The Date is local time with its offset, in English whatever the locale. */
START_TEST (test_notice_date_zones)
{
  static const struct { const gchar *tz, *date; } zones[] = {
    { "UTC", "Date: Mon, 07 Dec 2026 16:01:44 +0000\r\n" },
    { "Europe/Helsinki", "Date: Mon, 07 Dec 2026 18:01:44 +0200\r\n" },
    { "America/St_Johns", "Date: Mon, 07 Dec 2026 12:31:44 -0330\r\n" },
    { "Pacific/Kiritimati", "Date: Tue, 08 Dec 2026 06:01:44 +1400\r\n" },
  };
  DovekieAntivirusNotice n = notice_of (NULL, NULL, NULL, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (zones); i++)
    {
      g_autofree gchar *text = NULL;

      g_setenv ("TZ", zones[i].tz, TRUE);
      tzset ();
      text = make (&n);
      ck_assert_msg (strstr (text, zones[i].date) != NULL, "%s: %s", zones[i].tz, text);
    }
  g_setenv ("TZ", "UTC", TRUE);
  tzset ();
}
END_TEST

/* Absent headers read "(none)"; an empty one stays empty. */
START_TEST (test_notice_absent)
{
  DovekieAntivirusNotice n = notice_of (NULL, NULL, NULL, "");
  g_autofree gchar *text = make (&n);

  ck_assert (strstr (text, "\r\nTo: (none)\r\n") != NULL);
  ck_assert (strstr (text, "\r\nSubject: [virus removed] (none)\r\n") != NULL);
  ck_assert (strstr (text, "\r\n  From:    (none)\r\n") != NULL);
  ck_assert (strstr (text, "\r\n  Subject: (none)\r\n") != NULL);
  ck_assert (strstr (text, "\r\n  Date:    \r\n") != NULL);
}
END_TEST

/* CR, LF and the other controls in any quoted value never start a line:
 * the header block keeps exactly its seven headers. */
typedef struct {
  const gchar *value;
  const gchar *quoted; /* as it reads in the Subject */
} InjectCase;

static const InjectCase inject_cases[] = {
  { "hi\r\nBcc: victim@example.org", "hi  Bcc: victim@example.org" },
  { "hi\nBcc: victim@example.org", "hi Bcc: victim@example.org" },
  { "hi\rBcc: victim@example.org", "hi Bcc: victim@example.org" },
  { "hi\r\n\r\n<html>body</html>", "hi    <html>body</html>" },
  { "folded\r\n\tline", "folded  \tline" },
  { "nul\x01" "bell\x07" "esc\x1b" "del\x7f" "end", "nul bell esc del end" },
  { "nel\xc2\x85" "line", "nel line" },
  { "\r\n", "  " },
};

START_TEST (test_notice_injection)
{
  const InjectCase *c = &inject_cases[_i];
  DovekieAntivirusNotice n = notice_of (c->value, c->value, c->value, c->value);
  g_autofree gchar *text = NULL;
  g_autofree gchar *subject = g_strconcat ("Subject: [virus removed] ", c->quoted, NULL);
  g_auto (GStrv) lines = NULL;
  static const gchar *const names[] = {
    "From: ", "To: ", "Subject: ", "Date: ", "Message-ID: ", "MIME-Version: ", "Content-Type: ",
  };

  n.reason = c->value;
  n.mailbox = c->value;
  text = make (&n);
  assert_crlf_only (text);
  lines = header_lines (text);
  ck_assert_uint_eq (g_strv_length (lines), G_N_ELEMENTS (names));
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    ck_assert_msg (g_str_has_prefix (lines[i], names[i]), "line %u: %s", i, lines[i]);
  ck_assert_str_eq (lines[2], subject);
  /* The body has its fixed lines and no more: seven headers, the empty
   * line, eight body lines and what follows the last CRLF. */
  g_strfreev (lines);
  lines = g_strsplit (text, "\r\n", -1);
  ck_assert_uint_eq (g_strv_length (lines), 17);
  ck_assert_str_eq (lines[15], "Ask your mail administrator if you need it.");
}
END_TEST

/* Over-long values are cut at the limit, both where they are quoted. */
START_TEST (test_notice_long)
{
  g_autofree gchar *longest = g_strnfill (DOVEKIE_AV_NOTICE_FIELD_MAX, 's');
  g_autofree gchar *longer = g_strconcat (longest, "TAIL", NULL);
  g_autofree gchar *huge = g_strnfill (100000, 'h');
  DovekieAntivirusNotice n = notice_of (huge, huge, longer, longest);
  g_autofree gchar *text = make (&n);
  g_autofree gchar *subject = g_strconcat ("\r\nSubject: [virus removed] ", longest, "\r\n",
                                           NULL);
  g_autofree gchar *body_subject = g_strconcat ("\r\n  Subject: ", longest, "\r\n", NULL);
  g_autofree gchar *body_date = g_strconcat ("\r\n  Date:    ", longest, "\r\n", NULL);

  ck_assert (strstr (text, subject) != NULL);
  ck_assert (strstr (text, body_subject) != NULL);
  ck_assert (strstr (text, body_date) != NULL);
  ck_assert (strstr (text, "TAIL") == NULL);
  /* So its size does not depend on the original's. */
  ck_assert_uint_lt (strlen (text), 2000);
}
END_TEST

/* 8-bit header bytes: valid UTF-8 is kept (and labelled), never cut inside
 * a character; anything else becomes '?', as its charset is unknown. */
START_TEST (test_notice_8bit)
{
  DovekieAntivirusNotice n = notice_of ("J\xc3\xbcrgen <j@example.de>", NULL,
                                        "Rechnung f\xc3\xbcr Sie", NULL);
  g_autofree gchar *text = make (&n);
  g_autofree gchar *latin1 = NULL;
  g_autofree gchar *cut = NULL;
  g_autofree gchar *cut_value = NULL;
  g_autofree gchar *expect = NULL;
  g_autofree gchar *pad = g_strnfill (DOVEKIE_AV_NOTICE_FIELD_MAX - 1, 'a');

  ck_assert (g_utf8_validate (text, -1, NULL));
  ck_assert (strstr (text, "\r\nSubject: [virus removed] Rechnung f\xc3\xbcr Sie\r\n") != NULL);
  ck_assert (strstr (text, "\r\n  From:    J\xc3\xbcrgen <j@example.de>\r\n") != NULL);
  ck_assert (strstr (text, "charset=utf-8\r\n") != NULL);

  /* ISO-8859-1 sent raw: not UTF-8, so each 8-bit byte is a '?'. */
  n = notice_of (NULL, NULL, "Rechnung f\xfcr Sie \xe9t\xe9", NULL);
  latin1 = make (&n);
  ck_assert (strstr (latin1, "\r\nSubject: [virus removed] Rechnung f?r Sie ?t?\r\n") != NULL);
  ck_assert (strstr (latin1, "charset=us-ascii\r\n") != NULL);
  ck_assert (g_utf8_validate (latin1, -1, NULL));

  /* A two-byte character that would straddle the limit is left out. */
  cut_value = g_strconcat (pad, "\xc3\xbc", "more", NULL);
  n = notice_of (NULL, NULL, cut_value, NULL);
  cut = make (&n);
  expect = g_strconcat ("\r\nSubject: [virus removed] ", pad, "\r\n", NULL);
  ck_assert (strstr (cut, expect) != NULL);
  ck_assert (g_utf8_validate (cut, -1, NULL));
  /* Only ASCII went out: the label stays us-ascii. */
  ck_assert (strstr (cut, "charset=us-ascii\r\n") != NULL);
}
END_TEST

/* The host name and token cannot break the From address or Message-ID. */
START_TEST (test_notice_atoms)
{
  DovekieAntivirusNotice n = notice_of (NULL, NULL, NULL, NULL);
  g_autofree gchar *text = NULL;
  g_auto (GStrv) lines = NULL;

  n.host = "mx>\r\nBcc: x@y";
  n.unique = "1 2<3>@\xc3\xbc";
  text = make (&n);
  lines = header_lines (text);
  ck_assert_uint_eq (g_strv_length (lines), 7);
  ck_assert_str_eq (lines[0], "From: Mail virus scanner <postmaster@mx___Bcc__x_y>");
  ck_assert_str_eq (lines[4], "Message-ID: <dovekie.1796659304.1_2_3____@mx___Bcc__x_y>");
}
END_TEST

/* What the notice cannot do without is an error, not a half notice. */
START_TEST (test_notice_missing)
{
  static const gchar *const which[] = { "mailbox", "reason", "host", "unique" };
  DovekieAntivirusNotice n = notice_of (NULL, NULL, NULL, NULL);
  g_autoptr (GError) error = NULL;
  gchar *text;

  switch (_i / 2)
    {
    case 0: n.mailbox = _i % 2 ? "" : NULL; break;
    case 1: n.reason = _i % 2 ? "" : NULL; break;
    case 2: n.host = _i % 2 ? "" : NULL; break;
    default: n.unique = _i % 2 ? "" : NULL; break;
    }
  text = dovekie_av_notice_text (&n, &error);
  ck_assert_msg (text == NULL, "no %s", which[_i / 2]);
  ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED));
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("dovekie-av-notice");
  TCase *tc = tcase_create ("notice");
  SRunner *sr;
  int failed;

  g_setenv ("TZ", "UTC", TRUE);
  tzset ();
  tcase_add_test (tc, test_notice_bytes);
  tcase_add_test (tc, test_notice_date_zones);
  tcase_add_test (tc, test_notice_absent);
  tcase_add_loop_test (tc, test_notice_injection, 0, G_N_ELEMENTS (inject_cases));
  tcase_add_test (tc, test_notice_long);
  tcase_add_test (tc, test_notice_8bit);
  tcase_add_test (tc, test_notice_atoms);
  tcase_add_loop_test (tc, test_notice_missing, 0, 8);
  suite_add_tcase (s, tc);
  sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
