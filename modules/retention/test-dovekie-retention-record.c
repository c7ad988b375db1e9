/* Unit tests for the retention state record: grammar tables, round trips. */
#include "dovekie-config.h"

#include <stdlib.h>

#include "dovekie-test.h"
#include "dovekie-retention-record.h"

typedef struct {
  const gchar *text;
  gboolean ok;
  guint n_clients; /* when ok */
} ParseCase;

static const ParseCase parse_cases[] = {
  { "1", TRUE, 0 },
  { "1 *:1700000000:-", TRUE, 1 },
  { "1 *:1700000000:d", TRUE, 1 },
  { "1 *:0:d", TRUE, 1 },
  { "1 laptop:1700000000:- desktop:1700000100:d", TRUE, 2 },
  { "1 a.b_c-D9:5:-", TRUE, 1 },
  { "1 abcdefghijklmnopqrstuvwxyz012345:5:-", TRUE, 1 },  /* 32 chars */
  /* 64 chars: the longest client name */
  { "1 abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz012345:5:-", TRUE, 1 },
  { "1 *:253402300799:-", TRUE, 1 },
  { "", FALSE, 0 },
  { "2", FALSE, 0 },
  { "1 ", FALSE, 0 },
  { " 1", FALSE, 0 },
  { "1  *:5:-", FALSE, 0 },
  { "1 *:5:- ", FALSE, 0 },
  { "1 *:5", FALSE, 0 },
  { "1 *:5:", FALSE, 0 },
  { "1 *:5:x", FALSE, 0 },
  { "1 *:5:dd", FALSE, 0 },
  { "1 *:0:-", FALSE, 0 },                 /* says nothing */
  { "1 *:05:-", FALSE, 0 },                /* leading zero */
  { "1 *:-5:-", FALSE, 0 },
  { "1 *:+5:-", FALSE, 0 },
  { "1 *::-", FALSE, 0 },
  { "1 *:253402300800:-", FALSE, 0 },      /* past 9999 */
  { "1 *:99999999999999999999:-", FALSE, 0 },
  { "1 :5:-", FALSE, 0 },
  { "1 **:5:-", FALSE, 0 },
  { "1 lap top:5:-", FALSE, 0 },
  { "1 lap/top:5:-", FALSE, 0 },
  /* 65 chars */
  { "1 abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz0123456:5:-", FALSE, 0 },
  { "1 a:5:- a:6:-", FALSE, 0 },           /* twice */
  { "1 a:5:-\n", FALSE, 0 },
  { "1 a:5:-\tb:5:-", FALSE, 0 },
  { "1 a:5:-;", FALSE, 0 },
  { "1 \xc3\xa9:5:-", FALSE, 0 },
};

START_TEST (test_parse_table)
{
  const ParseCase *c = &parse_cases[_i];
  g_auto (DovekieRetentionRecord) record = { 0 };
  g_autoptr (GError) error = NULL;
  gboolean ok = dovekie_retention_record_parse (c->text, strlen (c->text), &record, &error);

  ck_assert_msg (ok == c->ok, "'%s': expected %s", c->text, c->ok ? "ok" : "error");
  if (ok)
    {
      g_autofree gchar *again = dovekie_retention_record_format (&record);
      ck_assert_uint_eq (record.n_clients, c->n_clients);
      ck_assert_str_eq (again, c->text);
    }
  else
    {
      ck_assert (error != NULL && g_str_has_prefix (error->message, "bad retention record"));
      ck_assert_uint_eq (record.n_clients, 0);
    }
}
END_TEST

START_TEST (test_parse_nul_and_length)
{
  g_auto (DovekieRetentionRecord) record = { 0 };
  g_autofree gchar *big = NULL;
  GString *many = g_string_new ("1");

  ck_assert (!dovekie_retention_record_parse ("1 a:5:-\0b", 9, &record, NULL));
  ck_assert (!dovekie_retention_record_parse ("1 a\0:5:-", 8, &record, NULL));
  big = g_strnfill (DOVEKIE_RETENTION_RECORD_MAX + 1, '1');
  ck_assert (!dovekie_retention_record_parse (big, strlen (big), &record, NULL));

  for (guint i = 0; i < DOVEKIE_RETENTION_CLIENTS_MAX; i++)
    g_string_append_printf (many, " c%u:%u:-", i, i + 1);
  ck_assert (dovekie_retention_record_parse (many->str, many->len, &record, NULL));
  ck_assert_uint_eq (record.n_clients, DOVEKIE_RETENTION_CLIENTS_MAX);
  ck_assert (dovekie_retention_record_client (&record, "new", TRUE) == NULL);
  g_string_append (many, " extra:1:-");
  ck_assert (!dovekie_retention_record_parse (many->str, many->len, &record, NULL));
  g_string_free (many, TRUE);
}
END_TEST

START_TEST (test_client)
{
  g_auto (DovekieRetentionRecord) record = { 0 };
  DovekieRetentionClient *c;

  ck_assert (dovekie_retention_record_client (&record, "laptop", FALSE) == NULL);
  ck_assert (dovekie_retention_record_client (&record, "bad id", TRUE) == NULL);
  c = dovekie_retention_record_client (&record, "laptop", TRUE);
  ck_assert (c != NULL);
  ck_assert_str_eq (c->id, "laptop");
  ck_assert (dovekie_retention_record_client (&record, "laptop", TRUE) == c);
  ck_assert_uint_eq (record.n_clients, 1);
  {
    /* An empty entry is not written. */
    g_autofree gchar *text = dovekie_retention_record_format (&record);
    ck_assert_str_eq (text, "1");
  }
}
END_TEST

START_TEST (test_first_download_and_deleted)
{
  g_auto (DovekieRetentionRecord) record = { 0 };

  ck_assert (dovekie_retention_record_parse ("1 a:0:d b:300:- c:200:-", 23, &record, NULL));
  ck_assert_int_eq (dovekie_retention_record_first_download (&record), 200);
  ck_assert (dovekie_retention_record_deleted (&record));
  ck_assert (dovekie_retention_record_parse ("1 a:7:-", 7, &record, NULL));
  ck_assert (!dovekie_retention_record_deleted (&record));
  ck_assert (dovekie_retention_record_parse ("1", 1, &record, NULL));
  ck_assert_int_eq (dovekie_retention_record_first_download (&record), 0);
}
END_TEST

START_TEST (test_id_valid)
{
  ck_assert (dovekie_retention_id_valid ("*"));
  ck_assert (dovekie_retention_id_valid ("phone-2"));
  ck_assert (!dovekie_retention_id_valid (""));
  ck_assert (!dovekie_retention_id_valid (NULL));
  ck_assert (!dovekie_retention_id_valid ("a*"));
  ck_assert (!dovekie_retention_id_valid ("a:b"));
  ck_assert (!dovekie_retention_id_valid ("a#b"));
  ck_assert (dovekie_retention_id_valid (
      "abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz012345")); /* 64 */
  ck_assert (!dovekie_retention_id_valid (
      "abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz0123456")); /* 65 */
}
END_TEST

/* The longest record (64 identities of 64 characters, the largest time,
 * DELEd) is within DOVEKIE_RETENTION_RECORD_MAX and parses back; a record
 * holds only the entries it has. */
START_TEST (test_longest_record)
{
  g_auto (DovekieRetentionRecord) record = { 0 };
  g_auto (DovekieRetentionRecord) back = { 0 };
  g_autofree gchar *text = NULL;

  for (guint i = 0; i < DOVEKIE_RETENTION_CLIENTS_MAX; i++)
    {
      g_autofree gchar *id = g_strdup_printf ("%02u%s", i,
          "abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz0123");
      DovekieRetentionClient *c;

      ck_assert_uint_eq (strlen (id), DOVEKIE_RETENTION_ID_MAX);
      c = dovekie_retention_record_client (&record, id, TRUE);
      ck_assert (c != NULL);
      c->downloaded = DOVEKIE_RETENTION_TIME_MAX;
      c->deleted = TRUE;
      ck_assert_uint_eq (record.n_clients, i + 1);
    }
  text = dovekie_retention_record_format (&record);
  ck_assert_uint_le (strlen (text), DOVEKIE_RETENTION_RECORD_MAX);
  ck_assert (dovekie_retention_record_parse (text, strlen (text), &back, NULL));
  ck_assert_uint_eq (back.n_clients, DOVEKIE_RETENTION_CLIENTS_MAX);
  /* Parsing into a used record replaces its entries. */
  ck_assert (dovekie_retention_record_parse ("1 a:5:-", 7, &back, NULL));
  ck_assert_uint_eq (back.n_clients, 1);
  ck_assert_str_eq (back.clients[0].id, "a");
}
END_TEST

/* Random records survive format -> parse unchanged. */
START_TEST (test_roundtrip_random)
{
  GRand *rand = g_rand_new_with_seed (20240517);

  for (guint round = 0; round < 2000; round++)
    {
      g_auto (DovekieRetentionRecord) record = { 0 };
      g_auto (DovekieRetentionRecord) back = { 0 };
      guint n = g_rand_int_range (rand, 0, 6);
      for (guint i = 0; i < n; i++)
        {
          g_autofree gchar *id = g_rand_boolean (rand) ? g_strdup ("*")
                                                       : g_strdup_printf ("c%d", g_rand_int_range (rand, 0, 9));
          DovekieRetentionClient *c = dovekie_retention_record_client (&record, id, TRUE);
          c->downloaded = g_rand_boolean (rand) ? 0 : g_rand_int_range (rand, 1, G_MAXINT32);
          c->deleted = c->downloaded == 0 || g_rand_boolean (rand);
        }
      g_autofree gchar *text = dovekie_retention_record_format (&record);
      ck_assert_msg (dovekie_retention_record_parse (text, strlen (text), &back, NULL), "%s", text);
      g_autofree gchar *again = dovekie_retention_record_format (&back);
      ck_assert_str_eq (text, again);
      ck_assert_int_eq (dovekie_retention_record_first_download (&back),
                        dovekie_retention_record_first_download (&record));
    }
  g_rand_free (rand);
}
END_TEST

/* ---- the stored form ---- */

static void
set_slot (guint8 *bytes, guint slot, const gchar *id)
{
  memset (bytes + 8 + slot * 65, 0, 65);
  memcpy (bytes + 8 + slot * 65, id, strlen (id));
}

START_TEST (test_table_parse_and_format)
{
  guint8 bytes[DOVEKIE_RETENTION_TABLE_SIZE] = { 0 }, again[DOVEKIE_RETENTION_TABLE_SIZE];
  DovekieRetentionTable table;
  g_autoptr (GError) error = NULL;

  /* Never written: empty, not migrated. */
  ck_assert (dovekie_retention_table_parse (bytes, &table, NULL));
  ck_assert_uint_eq (table.n_ids, 0);
  ck_assert (!dovekie_retention_table_migrated (bytes));
  ck_assert_int_eq (dovekie_retention_table_slot (&table, "*", TRUE), 0);
  ck_assert_int_eq (dovekie_retention_table_slot (&table, "laptop", TRUE), 1);
  ck_assert_int_eq (dovekie_retention_table_slot (&table, "laptop", TRUE), 1);
  ck_assert_int_eq (dovekie_retention_table_slot (&table, "phone", FALSE), -1);
  ck_assert_int_eq (dovekie_retention_table_slot (&table, "bad id", TRUE), -1);
  table.flags = DOVEKIE_RETENTION_TABLE_MIGRATED;
  table.last_quit[1] = 1700000000;
  ck_assert_uint_eq (dovekie_retention_table_active (&table, 1700000000), 0x2);
  ck_assert_uint_eq (dovekie_retention_table_active (&table, 1700000001), 0);
  dovekie_retention_table_format (&table, bytes);
  ck_assert (dovekie_retention_table_migrated (bytes));
  ck_assert (dovekie_retention_table_parse (bytes, &table, NULL));
  ck_assert_uint_eq (table.n_ids, 2);
  ck_assert_str_eq (table.ids[1], "laptop");
  ck_assert_int_eq (table.last_quit[1], 1700000000);
  ck_assert_int_eq (table.last_quit[0], 0);
  dovekie_retention_table_format (&table, again);
  ck_assert (memcmp (bytes, again, sizeof (bytes)) == 0);

  /* Full at DOVEKIE_RETENTION_CLIENTS_MAX. */
  for (guint i = 2; i < DOVEKIE_RETENTION_CLIENTS_MAX; i++)
    {
      g_autofree gchar *id = g_strdup_printf ("c%u", i);
      ck_assert_int_eq (dovekie_retention_table_slot (&table, id, TRUE), (gint) i);
    }
  ck_assert_int_eq (dovekie_retention_table_slot (&table, "one-more", TRUE), -1);

  /* Broken tables are refused and leave the table empty. */
  memcpy (again, bytes, sizeof (bytes));
  again[0] = 2;
  ck_assert (!dovekie_retention_table_parse (again, &table, &error));
  ck_assert_uint_eq (table.n_ids, 0);
  g_clear_error (&error);
  memcpy (again, bytes, sizeof (bytes));
  set_slot (again, 3, "gap"); /* after an empty slot */
  ck_assert (!dovekie_retention_table_parse (again, &table, &error));
  ck_assert (strstr (error->message, "slot 3") != NULL);
  g_clear_error (&error);
  memcpy (again, bytes, sizeof (bytes));
  set_slot (again, 2, "laptop"); /* twice */
  ck_assert (!dovekie_retention_table_parse (again, &table, NULL));
  memcpy (again, bytes, sizeof (bytes));
  set_slot (again, 2, "lap top");
  ck_assert (!dovekie_retention_table_parse (again, &table, NULL));
  memcpy (again, bytes, sizeof (bytes));
  memset (again + 8 + 2 * 65, 'a', 65); /* no NUL */
  ck_assert (!dovekie_retention_table_parse (again, &table, NULL));
  memcpy (again, bytes, sizeof (bytes));
  again[DOVEKIE_RETENTION_TABLE_SIZE - 1] = 1; /* a QUIT time of an empty slot */
  ck_assert (!dovekie_retention_table_parse (again, &table, NULL));
  memset (again, 0, sizeof (again));
  again[100] = 1; /* version 0 with data */
  ck_assert (!dovekie_retention_table_parse (again, &table, NULL));
}
END_TEST

START_TEST (test_pack_and_unpack)
{
  DovekieRetentionTable table = { 0 };
  g_auto (DovekieRetentionRecord) record = { 0 };
  g_auto (DovekieRetentionRecord) back = { 0 };
  guint8 packed[DOVEKIE_RETENTION_PACKED_SIZE];
  gboolean changed = FALSE;
  g_autofree gchar *text = NULL;
  g_autoptr (GError) error = NULL;

  const gchar *in = "1 laptop:1700000100:- desk:0:d phone:1700000000:d";

  ck_assert (dovekie_retention_record_parse (in, strlen (in), &record, NULL));
  ck_assert (dovekie_retention_record_pack (&table, &record, packed, &changed, NULL));
  ck_assert (changed);
  ck_assert_uint_eq (table.n_ids, 3);
  ck_assert_int_eq (dovekie_retention_packed_first (packed), 1700000000);
  ck_assert_uint_eq (dovekie_retention_packed_downloaded (packed), 0x5);
  ck_assert_uint_eq (dovekie_retention_packed_deleted (packed), 0x6);
  ck_assert (!dovekie_retention_packed_empty (packed));
  ck_assert (dovekie_retention_record_unpack (&table, packed, &back, NULL));
  /* Each download carries the first download time: all the policy uses. */
  text = dovekie_retention_record_format (&back);
  ck_assert_str_eq (text, "1 laptop:1700000000:- desk:0:d phone:1700000000:d");
  ck_assert_int_eq (dovekie_retention_record_first_download (&back), 1700000000);
  ck_assert (dovekie_retention_record_deleted (&back));

  /* Known identities: the table does not change. */
  changed = FALSE;
  ck_assert (dovekie_retention_record_pack (&table, &back, packed, &changed, NULL));
  ck_assert (!changed);

  /* The empty record packs to zero, which is "none". */
  dovekie_retention_record_clear (&record);
  ck_assert (dovekie_retention_record_pack (&table, &record, packed, &changed, NULL));
  ck_assert (dovekie_retention_packed_empty (packed));
  ck_assert (dovekie_retention_record_unpack (&table, packed, &back, NULL));
  ck_assert_uint_eq (back.n_clients, 0);

  /* Bits of unknown slots, a time without download bits, and the reverse. */
  memset (packed, 0, sizeof (packed));
  packed[16] = 0x8;
  ck_assert (!dovekie_retention_record_unpack (&table, packed, &back, &error));
  ck_assert (strstr (error->message, "slot") != NULL);
  g_clear_error (&error);
  memset (packed, 0, sizeof (packed));
  packed[0] = 1;
  ck_assert (!dovekie_retention_record_unpack (&table, packed, &back, NULL));
  memset (packed, 0, sizeof (packed));
  packed[8] = 1;
  ck_assert (!dovekie_retention_record_unpack (&table, packed, &back, NULL));
  memset (packed, 0xff, 8);
  ck_assert (!dovekie_retention_record_unpack (&table, packed, &back, NULL));
  ck_assert_uint_eq (back.n_clients, 0);
}
END_TEST

START_TEST (test_pack_full_table)
{
  DovekieRetentionTable table = { 0 };
  g_auto (DovekieRetentionRecord) record = { 0 };
  guint8 packed[DOVEKIE_RETENTION_PACKED_SIZE] = { 0 }, before[DOVEKIE_RETENTION_PACKED_SIZE];
  gboolean changed = FALSE;
  g_autoptr (GError) error = NULL;

  for (guint i = 0; i < DOVEKIE_RETENTION_CLIENTS_MAX; i++)
    {
      g_autofree gchar *id = g_strdup_printf ("c%u", i);
      ck_assert (dovekie_retention_table_slot (&table, id, TRUE) >= 0);
    }
  dovekie_retention_record_client (&record, "late", TRUE)->deleted = TRUE;
  memcpy (before, packed, sizeof (packed));
  ck_assert (!dovekie_retention_record_pack (&table, &record, packed, &changed, &error));
  ck_assert (strstr (error->message, "no room for client identity 'late'") != NULL);
  ck_assert (!changed);
  ck_assert (memcmp (before, packed, sizeof (packed)) == 0);
  /* The 64th slot's bit is the top one. */
  dovekie_retention_record_clear (&record);
  dovekie_retention_record_client (&record, "c63", TRUE)->downloaded = 5;
  ck_assert (dovekie_retention_record_pack (&table, &record, packed, &changed, NULL));
  ck_assert_uint_eq (dovekie_retention_packed_downloaded (packed), G_GUINT64_CONSTANT (1) << 63);
}
END_TEST

static Suite *
record_suite (void)
{
  Suite *s = suite_create ("retention-record");
  TCase *tc;

  tc = tcase_create ("parse");
  tcase_add_loop_test (tc, test_parse_table, 0, G_N_ELEMENTS (parse_cases));
  tcase_add_test (tc, test_parse_nul_and_length);
  suite_add_tcase (s, tc);
  tc = tcase_create ("format");
  tcase_add_test (tc, test_roundtrip_random);
  suite_add_tcase (s, tc);
  tc = tcase_create ("client");
  tcase_add_test (tc, test_client);
  tcase_add_test (tc, test_id_valid);
  tcase_add_test (tc, test_longest_record);
  suite_add_tcase (s, tc);
  tc = tcase_create ("first_download");
  tcase_add_test (tc, test_first_download_and_deleted);
  suite_add_tcase (s, tc);
  tc = tcase_create ("stored");
  tcase_add_test (tc, test_table_parse_and_format);
  tcase_add_test (tc, test_pack_and_unpack);
  tcase_add_test (tc, test_pack_full_table);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *runner = srunner_create (record_suite ());
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
