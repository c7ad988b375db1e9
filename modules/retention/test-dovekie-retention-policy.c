/* Unit tests for the retention policy: days, identities, decisions, plans. */
#include "dovekie-config.h"

#include <stdlib.h>
#include <string.h>

#include "dovekie-test.h"
#include "dovekie-retention-policy.h"

#define DAY DOVEKIE_RETENTION_DAY
#define T0 G_GINT64_CONSTANT (1700000000)

typedef struct {
  const gchar *text;
  gboolean ok;
  gint64 keep;
} DaysCase;

static const DaysCase days_cases[] = {
  { "0", TRUE, 0 },
  { "7", TRUE, 7 * DAY },
  { "36500", TRUE, 36500 * DAY },
  { "never", TRUE, -1 },
  { "36501", FALSE, 0 },
  { "-1", FALSE, 0 },
  { "7d", FALSE, 0 },
  { " 7", FALSE, 0 },
  { "", FALSE, 0 },
  { "Never", FALSE, 0 },
  { "0x10", FALSE, 0 },
};

START_TEST (test_parse_days)
{
  const DaysCase *c = &days_cases[_i];
  g_autoptr (GError) error = NULL;
  gint64 keep = 12345;

  ck_assert_msg (dovekie_retention_parse_days (c->text, &keep, &error) == c->ok, "%s", c->text);
  if (c->ok)
    ck_assert_int_eq (keep, c->keep);
  else
    ck_assert (strstr (error->message, "dovekie_retention_days") != NULL);
}
END_TEST

typedef struct {
  DovekieRetentionView view;
  const gchar *login;
  gchar separator;
  const gchar *identity; /* NULL: refused */
} IdentityCase;

#define NAME64 "abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz012345"

/* Issue 17: a client name that is not valid is refused, never merged into
 * the shared identity "*". */
static const IdentityCase identity_cases[] = {
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice#laptop", '#', "laptop" },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice#Thunderbird.profile-2_x", '#', "Thunderbird.profile-2_x" },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice#" NAME64, '#', NAME64 },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice", '#', "*" },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "", '#', "*" },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, NULL, '#', "*" },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice+phone", '+', "phone" },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice#" NAME64 "x", '#', NULL },  /* 65 */
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice#", '#', NULL },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice#*", '#', NULL },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice#lap top", '#', NULL },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice#a#b", '#', NULL },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice#lap:top", '#', NULL },
  { DOVEKIE_RETENTION_VIEW_PER_CLIENT, "alice#\xc3\xa9", '#', NULL },
  /* The shared view has one identity whatever the login says. */
  { DOVEKIE_RETENTION_VIEW_SHARED, "alice#laptop", '#', "*" },
  { DOVEKIE_RETENTION_VIEW_SHARED, "alice#a#b", '#', "*" },
};

START_TEST (test_identity)
{
  const IdentityCase *c = &identity_cases[_i];
  DovekieRetentionPolicy policy = { .view = c->view };
  g_autofree gchar *id = NULL;
  g_autoptr (GError) error = NULL;
  gboolean ok = dovekie_retention_identity (&policy, c->login, c->separator, &id, &error);

  if (c->identity != NULL)
    {
      ck_assert_msg (ok, "%s: %s", c->login, error != NULL ? error->message : "");
      ck_assert_str_eq (id, c->identity);
    }
  else
    {
      ck_assert_msg (!ok, "%s accepted as %s", c->login, id);
      ck_assert (id == NULL);
      /* The log line names the name and the rule. */
      ck_assert_msg (strstr (error->message, "client name \"") != NULL &&
                     strstr (error->message, "1 to 64 characters of A-Z a-z 0-9 . _ -") != NULL,
                     "%s", error->message);
    }
}
END_TEST

START_TEST (test_dele_ignored)
{
  DovekieRetentionPolicy policy = { .keep = 7 * DAY, .dele = DOVEKIE_RETENTION_DELE_IGNORE };

  ck_assert (dovekie_retention_dele_ignored (&policy));
  policy.keep = -1;
  ck_assert (dovekie_retention_dele_ignored (&policy));
  policy.keep = 0; /* 0 days: DELE deletes */
  ck_assert (!dovekie_retention_dele_ignored (&policy));
  policy.keep = 7 * DAY;
  policy.dele = DOVEKIE_RETENTION_DELE_HIDE;
  ck_assert (!dovekie_retention_dele_ignored (&policy));
  policy.dele = DOVEKIE_RETENTION_DELE_EXPUNGE;
  ck_assert (!dovekie_retention_dele_ignored (&policy));
}
END_TEST

static DovekieRetentionRecord *
rec (const gchar *text)
{
  static DovekieRetentionRecord record;
  ck_assert_msg (dovekie_retention_record_parse (text, strlen (text), &record, NULL), "%s", text);
  return &record;
}

typedef struct {
  const gchar *name;
  DovekieRetentionPolicy policy;
  const gchar *record; /* NULL: no record */
  gint64 saved, now;
  DovekieRetentionReason reason;
} DecideCase;

#define P7 { 7 * DAY, DOVEKIE_RETENTION_DELE_HIDE, DOVEKIE_RETENTION_VIEW_SHARED, DOVEKIE_RETENTION_EXPIRE_DELETED, 0, FALSE, 0 }
#define P7DL { 7 * DAY, DOVEKIE_RETENTION_DELE_HIDE, DOVEKIE_RETENTION_VIEW_SHARED, DOVEKIE_RETENTION_EXPIRE_DOWNLOADED, 0, FALSE, 0 }
#define PNEVER { -1, DOVEKIE_RETENTION_DELE_HIDE, DOVEKIE_RETENTION_VIEW_SHARED, DOVEKIE_RETENTION_EXPIRE_DOWNLOADED, 0, FALSE, 0 }
#define PMAX { -1, DOVEKIE_RETENTION_DELE_HIDE, DOVEKIE_RETENTION_VIEW_SHARED, DOVEKIE_RETENTION_EXPIRE_DELETED, 30 * DAY, FALSE, 0 }
#define PMAXALL { -1, DOVEKIE_RETENTION_DELE_HIDE, DOVEKIE_RETENTION_VIEW_SHARED, DOVEKIE_RETENTION_EXPIRE_DELETED, 30 * DAY, TRUE, 0 }

static const DecideCase decide_cases[] = {
  { "never touched", P7, NULL, T0, T0 + 100 * DAY, DOVEKIE_RETENTION_KEEP },
  { "DELE without download", P7, "1 *:0:d", T0, T0 + 100 * DAY, DOVEKIE_RETENTION_KEEP },
  { "deleted, one second early", P7, "1 *:1700000000:d", T0, T0 + 7 * DAY - 1, DOVEKIE_RETENTION_KEEP },
  { "deleted, on time", P7, "1 *:1700000000:d", T0, T0 + 7 * DAY, DOVEKIE_RETENTION_EXPIRED },
  { "downloaded, not deleted", P7, "1 *:1700000000:-", T0, T0 + 70 * DAY, DOVEKIE_RETENTION_KEEP },
  { "expire=downloaded", P7DL, "1 *:1700000000:-", T0, T0 + 7 * DAY, DOVEKIE_RETENTION_EXPIRED },
  { "earliest client counts", P7, "1 a:1700600000:d b:1700000000:-", T0, T0 + 7 * DAY, DOVEKIE_RETENTION_EXPIRED },
  { "clock behind download", P7DL, "1 *:1700000000:-", T0, T0 - DAY, DOVEKIE_RETENTION_KEEP },
  { "never", PNEVER, "1 *:1700000000:d", T0, T0 + 10000 * DAY, DOVEKIE_RETENTION_KEEP },
  { "max age, downloaded", PMAX, "1 *:1700000000:-", T0, T0 + 30 * DAY, DOVEKIE_RETENTION_MAX_AGE },
  { "max age, early", PMAX, "1 *:1700000000:-", T0, T0 + 30 * DAY - 1, DOVEKIE_RETENTION_KEEP },
  { "max age, undownloaded", PMAX, NULL, T0, T0 + 300 * DAY, DOVEKIE_RETENTION_KEEP },
  { "max age all, undownloaded", PMAXALL, NULL, T0, T0 + 30 * DAY, DOVEKIE_RETENTION_MAX_AGE },
  { "max age, unknown save date", PMAXALL, NULL, -1, T0 + 300 * DAY, DOVEKIE_RETENTION_KEEP },
};

START_TEST (test_decide)
{
  const DecideCase *c = &decide_cases[_i];
  DovekieRetentionReason reason = dovekie_retention_decide (
      &c->policy, c->record != NULL ? rec (c->record) : NULL, c->saved, c->now);

  ck_assert_msg (reason == c->reason, "%s: got %s", c->name, dovekie_retention_reason_name (reason));
}
END_TEST

START_TEST (test_hidden)
{
  DovekieRetentionPolicy shared = P7, per = P7;

  per.view = DOVEKIE_RETENTION_VIEW_PER_CLIENT;
  ck_assert (!dovekie_retention_hidden (&shared, rec ("1 *:5:d"), "*"));
  ck_assert (!dovekie_retention_hidden (&per, NULL, "laptop"));
  ck_assert (dovekie_retention_hidden (&per, rec ("1 laptop:5:-"), "laptop"));
  ck_assert (dovekie_retention_hidden (&per, rec ("1 laptop:0:d"), "laptop"));
  ck_assert (!dovekie_retention_hidden (&per, rec ("1 laptop:5:d"), "desktop"));
}
END_TEST

START_TEST (test_dele_expunges)
{
  DovekieRetentionPolicy p = P7;

  ck_assert (!dovekie_retention_dele_expunges (&p));
  p.dele = DOVEKIE_RETENTION_DELE_IGNORE;
  ck_assert (!dovekie_retention_dele_expunges (&p));
  p.dele = DOVEKIE_RETENTION_DELE_EXPUNGE;
  ck_assert (dovekie_retention_dele_expunges (&p));
  p.dele = DOVEKIE_RETENTION_DELE_HIDE;
  p.keep = 0;
  ck_assert (dovekie_retention_dele_expunges (&p));
}
END_TEST

/* Quota: oldest download first, never an undownloaded message, stop when
 * under the threshold. */
START_TEST (test_plan_quota)
{
  DovekieRetentionPolicy p = PNEVER;
  g_auto (DovekieRetentionRecord) r1 = { 0 };
  g_auto (DovekieRetentionRecord) r2 = { 0 };
  g_auto (DovekieRetentionRecord) r3 = { 0 };
  const DovekieRetentionMessage msgs[] = {
    { 1, T0, 400, FALSE, { 0 } }, { 2, T0, 400, FALSE, { 0 } },
    { 3, T0, 400, FALSE, { 0 } }, { 4, T0, 400, FALSE, { 0 } },
  };
  const DovekieRetentionRecord *recs[4] = { &r1, &r2, NULL, &r3 };
  DovekieRetentionReason reasons[4];

  ck_assert (dovekie_retention_record_parse ("1 *:300:-", 9, &r1, NULL));
  ck_assert (dovekie_retention_record_parse ("1 *:100:-", 9, &r2, NULL));
  ck_assert (dovekie_retention_record_parse ("1 *:200:-", 9, &r3, NULL));
  p.quota_percent = 50;
  /* 1600 used of 2000: must get to 1000 -> two go, oldest first (2, 4). */
  dovekie_retention_plan (&p, msgs, recs, NULL, 4, 1600, 2000, T0, reasons);
  ck_assert_int_eq (reasons[0], DOVEKIE_RETENTION_KEEP);
  ck_assert_int_eq (reasons[1], DOVEKIE_RETENTION_QUOTA);
  ck_assert_int_eq (reasons[2], DOVEKIE_RETENTION_KEEP);
  ck_assert_int_eq (reasons[3], DOVEKIE_RETENTION_QUOTA);
  /* Far over: every downloaded one goes, the undownloaded one stays. */
  dovekie_retention_plan (&p, msgs, recs, NULL, 4, 1900, 200, T0, reasons);
  ck_assert_int_eq (reasons[2], DOVEKIE_RETENTION_KEEP);
  ck_assert_int_eq (reasons[0], DOVEKIE_RETENTION_QUOTA);
  /* Under the threshold, or no limit known: nothing. */
  dovekie_retention_plan (&p, msgs, recs, NULL, 4, 900, 2000, T0, reasons);
  for (guint i = 0; i < 4; i++)
    ck_assert_int_eq (reasons[i], DOVEKIE_RETENTION_KEEP);
  dovekie_retention_plan (&p, msgs, recs, NULL, 4, 1900, 0, T0, reasons);
  for (guint i = 0; i < 4; i++)
    ck_assert_int_eq (reasons[i], DOVEKIE_RETENTION_KEEP);
}
END_TEST

static Suite *
policy_suite (void)
{
  Suite *s = suite_create ("retention-policy");
  TCase *tc;

  tc = tcase_create ("parse_days");
  tcase_add_loop_test (tc, test_parse_days, 0, G_N_ELEMENTS (days_cases));
  suite_add_tcase (s, tc);
  tc = tcase_create ("identity");
  tcase_add_loop_test (tc, test_identity, 0, G_N_ELEMENTS (identity_cases));
  suite_add_tcase (s, tc);
  tc = tcase_create ("decide");
  tcase_add_loop_test (tc, test_decide, 0, G_N_ELEMENTS (decide_cases));
  suite_add_tcase (s, tc);
  tc = tcase_create ("hidden");
  tcase_add_test (tc, test_hidden);
  suite_add_tcase (s, tc);
  tc = tcase_create ("dele_expunges");
  tcase_add_test (tc, test_dele_expunges);
  suite_add_tcase (s, tc);
  tc = tcase_create ("dele_ignored");
  tcase_add_test (tc, test_dele_ignored);
  suite_add_tcase (s, tc);
  tc = tcase_create ("plan");
  tcase_add_test (tc, test_plan_quota);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *runner = srunner_create (policy_suite ());
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
