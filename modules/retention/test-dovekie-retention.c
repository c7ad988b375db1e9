/* Unit tests for the retention module through its hooks and service, with
 * a fake host (settings, clock, kv store for the migration, and a
 * per-message record store with transactions, as Dovecot's index keeps
 * them), including a property test over random POP3 sessions, clients,
 * DELEs, IMAP changes and clock steps. */
#include "dovekie-config.h"

#include <stdlib.h>
#include <string.h>

#include "dovekie-test.h"
#include "dovekie-retention.h"
#include "dovekie-retention-record.h"

#define DAY G_GINT64_CONSTANT (86400)
#define T0 G_GINT64_CONSTANT (1700000000)

static TestHost host;
static GHashTable *settings; /* overrides of the declared defaults */

TEST_FAKE_HOST_BASICS (dovekie_module, "retention", host, settings)

static gboolean
fake_kv_get (DovekieContext *ctx, const gchar *key, gchar **value_r, GError **error)
{
  (void) ctx;
  return test_host_kv_get (&host, "retention", key, value_r, error);
}

static gboolean
fake_kv_set (DovekieContext *ctx, const gchar *key, const gchar *value, GError **error)
{
  (void) ctx;
  ck_assert (dovekie_kv_key_valid (key));
  return test_host_kv_set (&host, "retention", key, value, error);
}

static gboolean
fake_kv_foreach (DovekieContext *ctx, const gchar *prefix,
                 gboolean (*func) (const gchar *key, const gchar *value, gpointer data),
                 gpointer data, GError **error)
{
  (void) ctx;
  return test_host_kv_foreach (&host, "retention", prefix, func, data, error);
}

static void
fake_emit (DovekieContext *ctx, const gchar *name, const gchar *const *fields)
{
  (void) ctx;
  test_host_emit (&host, "retention", name, fields);
}

static const DovekieHostApi fake_api = {
  .get_string = fake_get_string,
  .get_uint = fake_get_uint,
  .get_bool = fake_get_bool,
  .log = fake_log,
  .now = fake_now,
  .kv_get = fake_kv_get,
  .kv_set = fake_kv_set,
  .kv_foreach = fake_kv_foreach,
  .emit = fake_emit,
};

static const DovekieRetentionService *svc;

/* ---- the fake record store ----
 *
 * Committed state: uid -> PACKED_SIZE bytes, and the table. A Txn
 * collects puts; txn_commit applies them (the host commits them with its
 * mailbox change), a Txn simply dropped is a rollback. */
static GHashTable *records;
static guint8 table_bytes[DOVEKIE_RETENTION_TABLE_SIZE];
static gboolean store_down;
static GPtrArray *garbage;

typedef struct {
  DovekieRetentionStore store;
  GHashTable *pending; /* uid -> bytes */
  guint8 table[DOVEKIE_RETENTION_TABLE_SIZE];
  gboolean table_set;
  /* The Dovecot host keeps a transaction's record updates sorted by
   * sequence: puts in UID order append, any other order moves memory. */
  guint32 last_put;
  gboolean put_unordered;
} Txn;

static gboolean
fake_get (DovekieRetentionStore *store, guint32 uid, guint8 *packed, GError **error)
{
  Txn *txn = (Txn *) store;
  const guint8 *data;

  if (store_down)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "store down");
      return FALSE;
    }
  data = g_hash_table_lookup (txn->pending, GUINT_TO_POINTER (uid));
  if (data == NULL)
    data = g_hash_table_lookup (records, GUINT_TO_POINTER (uid));
  if (data != NULL)
    memcpy (packed, data, DOVEKIE_RETENTION_PACKED_SIZE);
  else
    memset (packed, 0, DOVEKIE_RETENTION_PACKED_SIZE);
  return TRUE;
}

static gboolean
fake_put (DovekieRetentionStore *store, guint32 uid, const guint8 *packed, GError **error)
{
  Txn *txn = (Txn *) store;

  if (store_down)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "store down");
      return FALSE;
    }
  if (uid <= txn->last_put)
    txn->put_unordered = TRUE;
  txn->last_put = uid;
  g_hash_table_insert (txn->pending, GUINT_TO_POINTER (uid),
                       g_memdup2 (packed, DOVEKIE_RETENTION_PACKED_SIZE));
  return TRUE;
}

static gboolean
fake_put_table (DovekieRetentionStore *store, const guint8 *table, GError **error)
{
  Txn *txn = (Txn *) store;

  (void) error;
  memcpy (txn->table, table, sizeof (txn->table));
  txn->table_set = TRUE;
  txn->store.table = txn->table;
  return TRUE;
}

static void
txn_begin (Txn *txn)
{
  memset (txn, 0, sizeof (*txn));
  txn->pending = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  memcpy (txn->table, table_bytes, sizeof (table_bytes));
  txn->store.table = txn->table;
  txn->store.get = fake_get;
  txn->store.put = fake_put;
  txn->store.put_table = fake_put_table;
}

static void
txn_end (Txn *txn, gboolean commit)
{
  GHashTableIter iter;
  gpointer key, value;

  if (commit)
    {
      g_hash_table_iter_init (&iter, txn->pending);
      while (g_hash_table_iter_next (&iter, &key, &value))
        {
          if (dovekie_retention_packed_empty (value))
            g_hash_table_remove (records, key);
          else
            g_hash_table_insert (records, key, g_memdup2 (value, DOVEKIE_RETENTION_PACKED_SIZE));
        }
      if (txn->table_set)
        memcpy (table_bytes, txn->table, sizeof (table_bytes));
    }
  g_hash_table_unref (txn->pending);
}

/* uid's committed record in text form, or NULL. */
static const gchar *
rec (guint32 uid)
{
  const guint8 *packed = g_hash_table_lookup (records, GUINT_TO_POINTER (uid));
  DovekieRetentionTable table;
  g_auto (DovekieRetentionRecord) record = { 0 };
  gchar *text;

  if (packed == NULL)
    return NULL;
  ck_assert (dovekie_retention_table_parse (table_bytes, &table, NULL));
  if (!dovekie_retention_record_unpack (&table, packed, &record, NULL))
    return "corrupt";
  text = dovekie_retention_record_format (&record);
  g_ptr_array_add (garbage, text);
  return text;
}

/* Stores uid's record from its text form, as committed state. */
static void
rec_set (guint32 uid, const gchar *text)
{
  DovekieRetentionTable table;
  g_auto (DovekieRetentionRecord) record = { 0 };
  guint8 packed[DOVEKIE_RETENTION_PACKED_SIZE];
  gboolean changed = FALSE;

  ck_assert (dovekie_retention_table_parse (table_bytes, &table, NULL));
  ck_assert (dovekie_retention_record_parse (text, strlen (text), &record, NULL));
  ck_assert (dovekie_retention_record_pack (&table, &record, packed, &changed, NULL));
  if (changed)
    dovekie_retention_table_format (&table, table_bytes);
  g_hash_table_insert (records, GUINT_TO_POINTER (uid),
                       g_memdup2 (packed, DOVEKIE_RETENTION_PACKED_SIZE));
}

/* Fills msgs[i].packed from the committed records. */
static void
fill (DovekieRetentionMessage *msgs, guint n)
{
  for (guint i = 0; i < n; i++)
    {
      const guint8 *packed = g_hash_table_lookup (records, GUINT_TO_POINTER (msgs[i].uid));
      if (packed != NULL)
        memcpy (msgs[i].packed, packed, DOVEKIE_RETENTION_PACKED_SIZE);
      else
        memset (msgs[i].packed, 0, DOVEKIE_RETENTION_PACKED_SIZE);
    }
}

/* The POP3 listing of uids (the host's keyword filter already applied). */
static void
listing (DovekieContext *ctx)
{
  svc->pop3_listing (ctx, table_bytes);
}

static gboolean
hidden (DovekieContext *ctx, guint32 uid)
{
  static const guint8 none[DOVEKIE_RETENTION_PACKED_SIZE];
  const guint8 *packed = g_hash_table_lookup (records, GUINT_TO_POINTER (uid));

  return svc->pop3_hidden (ctx, uid, packed != NULL ? packed : none);
}

/* The host's question after a QUIT: the committed table. */
static gboolean
expire_at_quit (DovekieContext *ctx)
{
  return svc->expire_at_quit (ctx, table_bytes);
}

/* plan over a store transaction, committed unless the plan failed. */
static gboolean
plan (DovekieContext *ctx, DovekieRetentionMessage *msgs, guint n, guint64 used, guint64 limit,
      DovekieRetentionReason *reasons, GArray *unhide, DovekieRetentionSummary *summary,
      GError **error)
{
  Txn txn;
  gboolean ok;

  fill (msgs, n);
  txn_begin (&txn);
  ok = svc->plan (ctx, &txn.store, msgs, n, used, limit, reasons, unhide, summary, error);
  ck_assert_msg (!txn.put_unordered, "plan: records not put in UID order");
  txn_end (&txn, ok);
  return ok;
}

static gboolean
pop3_quit (DovekieContext *ctx, const guint32 *retr, guint n_retr, const guint32 *del,
           guint n_del, GArray *hide, GError **error)
{
  Txn txn;
  gboolean ok;

  txn_begin (&txn);
  ok = svc->pop3_quit (ctx, &txn.store, retr, n_retr, del, n_del, hide, error);
  ck_assert_msg (!txn.put_unordered, "pop3_quit: records not put in UID order");
  txn_end (&txn, ok);
  return ok;
}

static void
setup (void)
{
  host.lines = g_ptr_array_new_with_free_func (g_free);
  host.kv = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  host.now = T0;
  records = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  memset (table_bytes, 0, sizeof (table_bytes));
  store_down = FALSE;
  garbage = g_ptr_array_new_with_free_func (g_free);
  settings = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  svc = dovekie_module.services[0].vtable;
  ck_assert_str_eq (dovekie_module.services[0].name, DOVEKIE_RETENTION_SERVICE);
}

static void
teardown (void)
{
  g_ptr_array_unref (host.lines);
  if (host.kv != NULL)
    g_hash_table_unref (host.kv);
  host.kv = NULL;
  g_hash_table_unref (records);
  g_ptr_array_unref (garbage);
  g_hash_table_unref (settings);
}

static void
set (const gchar *key, const gchar *value)
{
  g_hash_table_insert (settings, g_strdup (key), g_strdup (value));
}

/* One user session: a context from init to deinit. */
static DovekieContext *
session_new (const gchar *login)
{
  DovekieContext *ctx = g_new0 (DovekieContext, 1);
  g_autoptr (GError) error = NULL;

  ctx->api = &fake_api;
  set ("dovekie_retention_login", login);
  ck_assert_msg (dovekie_module.init (ctx, &error), "init: %s", error ? error->message : "");
  return ctx;
}

static void
session_free (DovekieContext *ctx)
{
  dovekie_module.deinit (ctx);
  g_free (ctx);
}

static DovekieMessageInfo
inbox (guint32 uid)
{
  DovekieMessageInfo info = { "INBOX", uid, 100 };
  return info;
}

/* ---- init ---- */

typedef struct {
  const gchar *key, *value, *error;
} BadSetting;

static const BadSetting bad_settings[] = {
  { "dovekie_retention_days", "seven", "dovekie_retention_days" },
  { "dovekie_retention_days", "-1", "dovekie_retention_days" },
  { "dovekie_retention_separator", "", "dovekie_retention_separator" },
  { "dovekie_retention_separator", "a", "dovekie_retention_separator" },
  { "dovekie_retention_keyword", "", "dovekie_retention_keyword" },
  { "dovekie_retention_keyword", "\\Deleted", "dovekie_retention_keyword" },
  { "dovekie_retention_keyword", "two words", "dovekie_retention_keyword" },
};

START_TEST (test_init_rejects)
{
  const BadSetting *c = &bad_settings[_i];
  DovekieContext ctx = { &fake_api, NULL };
  g_autoptr (GError) error = NULL;

  set (c->key, c->value);
  ck_assert (!dovekie_module.init (&ctx, &error));
  ck_assert_msg (strstr (error->message, c->error) != NULL, "%s", error->message);
  ck_assert (ctx.module_data == NULL);
}
END_TEST

START_TEST (test_init_identity)
{
  DovekieContext *ctx;

  ctx = session_new ("alice#laptop");
  ck_assert_str_eq (dovekie_retention_current_identity (ctx), "*"); /* shared view */
  session_free (ctx);
  set ("dovekie_retention_view", "per-client");
  ctx = session_new ("alice#laptop");
  ck_assert_str_eq (dovekie_retention_current_identity (ctx), "laptop");
  ck_assert_str_eq (svc->hide_keyword (ctx), "$PopHidden");
  ck_assert (!expire_at_quit (ctx)); /* no records */
  session_free (ctx);
}
END_TEST

START_TEST (test_key)
{
  guint32 uid = 0;
  g_autofree gchar *key = dovekie_retention_key (4294967295u);

  ck_assert_str_eq (key, "uid/4294967295");
  ck_assert (dovekie_kv_key_valid (key));
  ck_assert (dovekie_retention_key_uid (key, &uid) && uid == 4294967295u);
  ck_assert (!dovekie_retention_key_uid ("uid/0", &uid));
  ck_assert (!dovekie_retention_key_uid ("uid/01", &uid));
  ck_assert (!dovekie_retention_key_uid ("uid/4294967296", &uid));
  ck_assert (!dovekie_retention_key_uid ("uid/", &uid));
  ck_assert (!dovekie_retention_key_uid ("uid/-1", &uid));
  ck_assert (!dovekie_retention_key_uid ("other/1", &uid));
}
END_TEST

/* ---- expunge ---- */

START_TEST (test_expunge)
{
  DovekieContext *ctx = session_new ("alice");
  DovekieMessageInfo info = inbox (5);

  ck_assert_int_eq (dovekie_module.expunge (ctx, &info, TRUE), DOVEKIE_EXPUNGE_KEEP);
  ck_assert_int_eq (dovekie_module.expunge (ctx, &info, FALSE), DOVEKIE_EXPUNGE_ALLOW);
  session_free (ctx);

  set ("dovekie_retention_dele", "expunge");
  ctx = session_new ("alice");
  ck_assert_int_eq (dovekie_module.expunge (ctx, &info, TRUE), DOVEKIE_EXPUNGE_ALLOW);
  session_free (ctx);

  set ("dovekie_retention_dele", "ignore");
  ctx = session_new ("alice");
  ck_assert_int_eq (dovekie_module.expunge (ctx, &info, TRUE), DOVEKIE_EXPUNGE_KEEP);
  session_free (ctx);

  set ("dovekie_retention_dele", "hide");
  set ("dovekie_retention_days", "0");
  ctx = session_new ("alice");
  ck_assert_int_eq (dovekie_module.expunge (ctx, &info, TRUE), DOVEKIE_EXPUNGE_ALLOW);
  session_free (ctx);
}
END_TEST

/* ---- sessions ---- */

static void
quit (DovekieContext *ctx, const guint32 *retr, guint n_retr, const guint32 *del, guint n_del,
      GArray *hide)
{
  g_autoptr (GError) error = NULL;

  listing (ctx);
  for (guint i = 0; i < n_del; i++)
    {
      DovekieMessageInfo m = inbox (del[i]);
      (void) dovekie_module.expunge (ctx, &m, TRUE);
    }
  ck_assert_msg (pop3_quit (ctx, retr, n_retr, del, n_del, hide, &error), "%s",
                 error ? error->message : "");
}

START_TEST (test_quit_records_downloads_and_dele)
{
  DovekieContext *ctx = session_new ("alice");
  g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
  const guint32 retr[] = { 1, 2 }, del[] = { 2, 3 };

  quit (ctx, retr, 2, del, 2, hide);
  ck_assert_str_eq (rec (1), "1 *:1700000000:-");
  ck_assert_str_eq (rec (2), "1 *:1700000000:d");
  ck_assert_str_eq (rec (3), "1 *:0:d");
  ck_assert_uint_eq (hide->len, 2);
  ck_assert_uint_eq (g_array_index (hide, guint32, 0), 2);
  ck_assert_uint_eq (test_host_count (&host, "V retention: dovekie_retention_downloaded mailbox=INBOX"), 2);
  ck_assert_uint_eq (test_host_count (&host, "V retention: dovekie_retention_hidden mailbox=INBOX view=shared"), 2);
  ck_assert_uint_eq (test_host_count (&host, "dovekie_retention_expunged"), 0);
  session_free (ctx);

  /* A second download keeps the first time. */
  host.now += DAY;
  ctx = session_new ("alice");
  g_array_set_size (hide, 0);
  quit (ctx, retr, 1, NULL, 0, hide);
  ck_assert_str_eq (rec (1), "1 *:1700000000:-");
  ck_assert_uint_eq (hide->len, 0);
  ck_assert_uint_eq (test_host_count (&host, "dovekie_retention_downloaded"), 2); /* not again */
  session_free (ctx);
}
END_TEST

/* A session at `now` that fetches nothing and QUITs: does the host run
 * the plan? */
static gboolean
idle_quit_asks_plan (gint64 now)
{
  g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
  DovekieContext *ctx;
  gboolean due;

  host.now = now;
  ctx = session_new ("alice");
  quit (ctx, NULL, 0, NULL, 0, hide);
  due = expire_at_quit (ctx);
  session_free (ctx);
  return due;
}

/* The plan at QUIT runs only when some message can be due. */
START_TEST (test_expire_at_quit_only_when_due)
{
  DovekieContext *ctx;
  g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
  const guint32 retr[] = { 1, 2 }, del[] = { 1 };

  set ("dovekie_retention_days", "7");
  ctx = session_new ("alice");
  quit (ctx, NULL, 0, NULL, 0, hide);
  ck_assert (!expire_at_quit (ctx)); /* no records */
  quit (ctx, retr, 2, del, 1, hide);
  ck_assert (!expire_at_quit (ctx)); /* downloaded just now */
  session_free (ctx);

  ck_assert (!idle_quit_asks_plan (host.now + 7 * DAY - 1));
  ck_assert (idle_quit_asks_plan (host.now + 1)); /* uid 1: DELEd, 7 days over */

  set ("dovekie_retention_expire_at_quit", "no");
  ck_assert (!idle_quit_asks_plan (host.now));

  /* max_age needs the save dates: any downloaded message may be due. */
  set ("dovekie_retention_expire_at_quit", "yes");
  set ("dovekie_retention_max_age", "30");
  ck_assert (idle_quit_asks_plan (host.now - 7 * DAY));
}
END_TEST

/* expire_at_quit answers from the table's floors: unknown floors (the
 * records of an older version) make it ask for a plan, which sets them;
 * a QUIT lowers them; a plan that expunges the earliest raises them. */
START_TEST (test_expire_at_quit_floors)
{
  DovekieContext *ctx;
  g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GArray) unhide = g_array_new (FALSE, FALSE, sizeof (guint32));
  const guint32 one[] = { 1 }, two[] = { 2 }, three[] = { 3 };
  DovekieRetentionMessage msgs[] = { { 1, T0, 10, TRUE, { 0 } }, { 2, T0, 10, TRUE, { 0 } },
                                     { 3, T0, 10, FALSE, { 0 } } };
  DovekieRetentionReason reasons[3];
  DovekieRetentionTable table;
  const guint32 gone[] = { 1 };

  set ("dovekie_retention_days", "7");
  ctx = session_new ("alice");
  quit (ctx, one, 1, one, 1, hide); /* uid 1: downloaded and DELEd at T0 */
  session_free (ctx);
  /* As an older version left it: records, no floors. */
  ck_assert (dovekie_retention_table_parse (table_bytes, &table, NULL));
  ck_assert (table.flags & DOVEKIE_RETENTION_TABLE_FLOORS);
  ck_assert_int_eq (table.floor_deleted, T0);
  table.flags &= ~DOVEKIE_RETENTION_TABLE_FLOORS;
  table.floor_downloaded = table.floor_deleted = 0;
  dovekie_retention_table_format (&table, table_bytes);

  host.now = T0 + 3 * DAY;
  ctx = session_new ("alice");
  quit (ctx, two, 1, two, 1, hide); /* uid 2: at T0 + 3 days */
  quit (ctx, three, 1, NULL, 0, hide); /* uid 3: downloaded only */
  ck_assert (expire_at_quit (ctx)); /* floors unknown */
  ck_assert (plan (ctx, msgs, 3, 0, 0, reasons, unhide, NULL, NULL));
  svc->done (ctx, NULL, 0);
  ck_assert (dovekie_retention_table_parse (table_bytes, &table, NULL));
  ck_assert (table.flags & DOVEKIE_RETENTION_TABLE_FLOORS);
  ck_assert_int_eq (table.floor_downloaded, T0);
  ck_assert_int_eq (table.floor_deleted, T0);
  ck_assert (!expire_at_quit (ctx));
  session_free (ctx);

  ck_assert (!idle_quit_asks_plan (T0 + 7 * DAY - 1));

  host.now = T0 + 7 * DAY;
  ctx = session_new ("alice");
  quit (ctx, NULL, 0, NULL, 0, hide);
  ck_assert (expire_at_quit (ctx));
  ck_assert (plan (ctx, msgs, 3, 0, 0, reasons, unhide, NULL, NULL));
  ck_assert_int_eq (reasons[0], DOVEKIE_RETENTION_EXPIRED);
  ck_assert_int_eq (reasons[1], DOVEKIE_RETENTION_KEEP);
  svc->done (ctx, gone, 1);
  g_hash_table_remove (records, GUINT_TO_POINTER (1)); /* expunged with its record */
  /* What stays: uid 2 DELEd at T0 + 3 days, uid 3 downloaded at T0 + 3 days. */
  ck_assert (dovekie_retention_table_parse (table_bytes, &table, NULL));
  ck_assert_int_eq (table.floor_downloaded, T0 + 3 * DAY);
  ck_assert_int_eq (table.floor_deleted, T0 + 3 * DAY);
  ck_assert (!expire_at_quit (ctx));
  session_free (ctx);

  /* With expire = downloaded every downloaded record counts, not only
   * the DELEd ones: both floors are T0 + 3 days here, due at T0 + 10. */
  set ("dovekie_retention_expire", "downloaded");
  ck_assert (!idle_quit_asks_plan (T0 + 10 * DAY - 1));
  ck_assert (idle_quit_asks_plan (T0 + 10 * DAY));
}
END_TEST

/* The floors are part of the table's strict layout. */
START_TEST (test_table_floors_layout)
{
  DovekieRetentionTable table = { 0 }, back;
  guint8 bytes[DOVEKIE_RETENTION_TABLE_SIZE];
  g_autoptr (GError) error = NULL;

  ck_assert_int_ge (dovekie_retention_table_slot (&table, "*", TRUE), 0);
  ck_assert (dovekie_retention_table_unwritten ((guint8[DOVEKIE_RETENTION_TABLE_SIZE]){ 0 }));
  table.flags = DOVEKIE_RETENTION_TABLE_FLOORS;
  dovekie_retention_table_cover (&table, T0 + 5, FALSE);
  dovekie_retention_table_cover (&table, T0 + 9, TRUE);
  dovekie_retention_table_cover (&table, 0, TRUE); /* a DELE with no download */
  ck_assert_int_eq (table.floor_downloaded, T0 + 5);
  ck_assert_int_eq (table.floor_deleted, T0 + 9);
  dovekie_retention_table_format (&table, bytes);
  ck_assert (!dovekie_retention_table_unwritten (bytes));
  ck_assert (dovekie_retention_table_parse (bytes, &back, NULL));
  ck_assert_int_eq (back.floor_downloaded, T0 + 5);
  ck_assert_int_eq (back.floor_deleted, T0 + 9);
  /* Without the flag, cover keeps nothing and the floors must be 0. */
  table.flags = 0;
  dovekie_retention_table_cover (&table, 1, TRUE);
  ck_assert_int_eq (table.floor_downloaded, T0 + 5);
  bytes[4] = 0; /* flag cleared, floors still set */
  ck_assert (!dovekie_retention_table_parse (bytes, &back, &error));
  ck_assert_msg (strstr (error->message, "floors") != NULL, "%s", error->message);
  g_clear_error (&error);
  bytes[4] = DOVEKIE_RETENTION_TABLE_FLOORS;
  bytes[DOVEKIE_RETENTION_TABLE_SIZE - 1] = 0xff; /* deleted floor past the time range */
  ck_assert (!dovekie_retention_table_parse (bytes, &back, &error));
}
END_TEST

START_TEST (test_per_client_views)
{
  DovekieContext *ctx;
  g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
  const guint32 retr[] = { 1 }, del[] = { 2 };

  set ("dovekie_retention_view", "per-client");
  ctx = session_new ("alice#laptop");
  quit (ctx, retr, 1, del, 1, hide);
  ck_assert_uint_eq (hide->len, 0); /* per-client: no global keyword */
  session_free (ctx);

  ctx = session_new ("alice#laptop");
  listing (ctx);
  ck_assert (hidden (ctx, 1));
  ck_assert (hidden (ctx, 2));
  ck_assert (!hidden (ctx, 3));
  session_free (ctx);

  ctx = session_new ("alice#desktop");
  listing (ctx);
  ck_assert (!hidden (ctx, 1));
  ck_assert (!hidden (ctx, 2));
  session_free (ctx);
}
END_TEST

/* Issue 17: expiry never removes a message that a client active within
 * the retention period has not downloaded (nor DELEd) yet; once that
 * client has been away longer than the period, the timer applies. */
START_TEST (test_active_client_keeps_what_it_waits_for)
{
  DovekieContext *ctx;
  g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GArray) unhide = g_array_new (FALSE, FALSE, sizeof (guint32));
  const guint32 one[] = { 1 }, two[] = { 2 };
  DovekieRetentionMessage msgs[] = { { 1, T0, 10, FALSE, { 0 } }, { 2, T0, 10, FALSE, { 0 } } };
  DovekieRetentionReason reasons[2];
  DovekieRetentionTable table;

  set ("dovekie_retention_days", "7");
  set ("dovekie_retention_view", "per-client");
  set ("dovekie_retention_quota_percent", "50");
  ctx = session_new ("alice#laptop");
  quit (ctx, one, 1, one, 1, hide);       /* laptop: RETR + DELE 1 at T0 */
  session_free (ctx);
  host.now = T0 + 5 * DAY;
  ctx = session_new ("alice#desktop");
  quit (ctx, two, 1, two, 1, hide);       /* desktop polls, takes only 2 */
  session_free (ctx);
  ck_assert (dovekie_retention_table_parse (table_bytes, &table, NULL));
  ck_assert_int_eq (table.last_quit[dovekie_retention_table_slot (&table, "desktop", FALSE)],
                    T0 + 5 * DAY);

  /* Day 8: 1 is due for laptop, but desktop (active) has not fetched it. */
  host.now = T0 + 8 * DAY;
  ctx = session_new ("");
  ck_assert (plan (ctx, msgs, 2, 0, 0, reasons, unhide, NULL, NULL));
  ck_assert_int_eq (reasons[0], DOVEKIE_RETENTION_KEEP);
  ck_assert_int_eq (reasons[1], DOVEKIE_RETENTION_KEEP); /* 2: 7 days from day 5 */
  /* Nor does the quota rule take it. */
  ck_assert (plan (ctx, msgs, 2, 2000, 1000, reasons, unhide, NULL, NULL));
  ck_assert_int_eq (reasons[0], DOVEKIE_RETENTION_KEEP);
  svc->done (ctx, NULL, 0);
  session_free (ctx);

  /* Day 13: desktop's last QUIT (day 5) is more than 7 days ago. Laptop's
   * (day 0) too; 2 was fetched by desktop, laptop is not active. */
  host.now = T0 + 13 * DAY;
  ctx = session_new ("");
  ck_assert (plan (ctx, msgs, 2, 0, 0, reasons, unhide, NULL, NULL));
  ck_assert_int_eq (reasons[0], DOVEKIE_RETENTION_EXPIRED);
  ck_assert_int_eq (reasons[1], DOVEKIE_RETENTION_EXPIRED);
  svc->done (ctx, NULL, 0);
  session_free (ctx);
}
END_TEST

/* Issue 17: a client name that is not valid is refused (login_error), never
 * merged into the shared identity; IMAP and doveadm still load the module. */
START_TEST (test_invalid_client_name_is_refused)
{
  static const gchar *const bad[] = {
    "alice#lap top", "alice#a#b", "alice#", "alice#*",
    "alice#abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz0123456",
  };
  g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
  const guint32 retr[] = { 1 };

  set ("dovekie_retention_view", "per-client");
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      DovekieContext *ctx = session_new (bad[i]);
      g_autoptr (GError) error = NULL;

      ck_assert (dovekie_retention_current_identity (ctx) == NULL);
      ck_assert_msg (svc->login_error (ctx) != NULL &&
                     strstr (svc->login_error (ctx), "client name") != NULL, "%s", bad[i]);
      listing (ctx);
      ck_assert (hidden (ctx, 1));
      ck_assert (!pop3_quit (ctx, retr, 1, NULL, 0, hide, &error));
      ck_assert (g_hash_table_size (records) == 0); /* nothing recorded as "*" */
      session_free (ctx);
    }
  {
    DovekieContext *ctx = session_new ("alice#abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz012345");
    ck_assert (svc->login_error (ctx) == NULL);
    quit (ctx, retr, 1, NULL, 0, hide);
    ck_assert_str_eq (rec (1),
                      "1 abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz012345:1700000000:-");
    session_free (ctx);
  }
  /* The shared view ignores the suffix. */
  set ("dovekie_retention_view", "shared");
  {
    DovekieContext *ctx = session_new ("alice#lap top");
    ck_assert (svc->login_error (ctx) == NULL);
    ck_assert_str_eq (dovekie_retention_current_identity (ctx), "*");
    session_free (ctx);
  }
}
END_TEST

START_TEST (test_dele_ignored)
{
  DovekieContext *ctx = session_new ("alice");

  ck_assert (!svc->dele_ignored (ctx)); /* hide */
  session_free (ctx);
  set ("dovekie_retention_dele", "ignore");
  ctx = session_new ("alice");
  ck_assert (svc->dele_ignored (ctx));
  session_free (ctx);
  set ("dovekie_retention_days", "0"); /* DELE deletes */
  ctx = session_new ("alice");
  ck_assert (!svc->dele_ignored (ctx));
  session_free (ctx);
}
END_TEST

/* Issue 17: the user's IMAP action wins. A message whose hide keyword was
 * removed is listed again in the shared view; its DELE history is dropped
 * at the next QUIT (or plan), so it does not expire. */
START_TEST (test_restored_message_does_not_expire)
{
  DovekieContext *ctx = session_new ("alice");
  g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GArray) unhide = g_array_new (FALSE, FALSE, sizeof (guint32));
  const guint32 retr[] = { 1, 2 }, del[] = { 1, 2 };
  DovekieRetentionMessage msgs[] = { { 1, T0, 10, FALSE, { 0 } }, { 2, T0, 10, TRUE, { 0 } } };
  DovekieRetentionReason reasons[2];

  set ("dovekie_retention_days", "7");
  session_free (ctx);
  ctx = session_new ("alice");
  quit (ctx, retr, 2, del, 2, hide);
  session_free (ctx);

  /* At QUIT: uid 1 is listed (keyword removed over IMAP). */
  host.now += DAY;
  ctx = session_new ("alice");
  listing (ctx);
  ck_assert (!hidden (ctx, 1));
  g_array_set_size (hide, 0);
  ck_assert (pop3_quit (ctx, NULL, 0, NULL, 0, hide, NULL));
  ck_assert (rec (1) == NULL);
  ck_assert (rec (2) != NULL);
  ck_assert_uint_eq (test_host_count (&host, "uid=1: $PopHidden was removed over IMAP"), 1);
  session_free (ctx);

  /* By the plan: uid 2 loses its keyword and expires nevertheless not. */
  host.now = T0 + 8 * DAY;
  msgs[1].hidden = FALSE;
  ctx = session_new ("alice");
  ck_assert (plan (ctx, msgs, 2, 0, 0, reasons, unhide, NULL, NULL));
  ck_assert_int_eq (reasons[0], DOVEKIE_RETENTION_KEEP);
  ck_assert_int_eq (reasons[1], DOVEKIE_RETENTION_KEEP);
  ck_assert (rec (2) == NULL);
  ck_assert_uint_eq (unhide->len, 0);
  svc->done (ctx, NULL, 0);
  session_free (ctx);

  /* Still hidden with its DELE: it expires (the control). */
  rec_set (2, "1 *:1700000000:d");
  msgs[1].hidden = TRUE;
  ctx = session_new ("alice");
  ck_assert (plan (ctx, msgs, 2, 0, 0, reasons, unhide, NULL, NULL));
  ck_assert_int_eq (reasons[1], DOVEKIE_RETENTION_EXPIRED);
  svc->done (ctx, NULL, 0);
  session_free (ctx);
}
END_TEST

/* Issue 17: hidden with no DELE on record (moved out of INBOX and back):
 * the plan unhides it, so it is never hidden for ever. */
START_TEST (test_hidden_without_record_is_unhidden)
{
  DovekieContext *ctx;
  g_autoptr (GArray) unhide = g_array_new (FALSE, FALSE, sizeof (guint32));
  DovekieRetentionMessage msgs[] = {
    { 7, T0, 10, TRUE, { 0 } },   /* no record */
    { 8, T0, 10, TRUE, { 0 } },   /* downloaded, never DELEd */
    { 9, T0, 10, TRUE, { 0 } },   /* DELEd: stays hidden */
    { 10, T0, 10, FALSE, { 0 } },
  };
  DovekieRetentionReason reasons[4];

  rec_set (8, "1 *:1700000000:-");
  rec_set (9, "1 *:1700000000:d");
  ctx = session_new ("alice");
  ck_assert (plan (ctx, msgs, 4, 0, 0, reasons, unhide, NULL, NULL));
  ck_assert_uint_eq (unhide->len, 2);
  ck_assert_uint_eq (g_array_index (unhide, guint32, 0), 7);
  ck_assert_uint_eq (g_array_index (unhide, guint32, 1), 8);
  for (guint i = 0; i < 4; i++)
    ck_assert_int_eq (reasons[i], DOVEKIE_RETENTION_KEEP);
  svc->done (ctx, NULL, 0);
  session_free (ctx);
}
END_TEST

START_TEST (test_plan_and_done)
{
  DovekieContext *ctx = session_new ("alice");
  g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
  const guint32 retr[] = { 1, 2 }, del[] = { 1, 2, 3 };
  /* 1..3 were DELEd, so they carry the hide keyword (shared view). */
  DovekieRetentionMessage msgs[] = { { 1, T0, 10, TRUE, { 0 } }, { 2, T0, 10, TRUE, { 0 } },
                                           { 3, T0, 10, TRUE, { 0 } }, { 4, T0, 10, FALSE, { 0 } } };
  g_autoptr (GArray) unhide = g_array_new (FALSE, FALSE, sizeof (guint32));
  DovekieRetentionReason reasons[4];
  DovekieMessageInfo m1 = inbox (1), m3 = inbox (3);
  const guint32 gone[] = { 1, 2 };

  set ("dovekie_retention_days", "7");
  session_free (ctx);
  ctx = session_new ("alice");
  quit (ctx, retr, 2, del, 3, hide);

  host.now = T0 + 7 * DAY - 1;
  ck_assert (plan (ctx, msgs, 4, 0, 0, reasons, unhide, NULL, NULL));
  for (guint i = 0; i < 4; i++)
    ck_assert_int_eq (reasons[i], DOVEKIE_RETENTION_KEEP);
  ck_assert_uint_eq (unhide->len, 0);
  svc->done (ctx, NULL, 0);

  host.now = T0 + 7 * DAY;
  ck_assert (plan (ctx, msgs, 4, 0, 0, reasons, unhide, NULL, NULL));
  ck_assert_int_eq (reasons[0], DOVEKIE_RETENTION_EXPIRED);
  ck_assert_int_eq (reasons[1], DOVEKIE_RETENTION_EXPIRED);
  ck_assert_int_eq (reasons[2], DOVEKIE_RETENTION_KEEP); /* DELE, never downloaded */
  ck_assert_int_eq (reasons[3], DOVEKIE_RETENTION_KEEP);
  /* During the plan, the planned expunges pass even inside POP3. */
  ck_assert_int_eq (dovekie_module.expunge (ctx, &m1, TRUE), DOVEKIE_EXPUNGE_ALLOW);
  ck_assert_int_eq (dovekie_module.expunge (ctx, &m3, TRUE), DOVEKIE_EXPUNGE_KEEP);
  ck_assert_uint_eq (test_host_count (&host, "dovekie_retention_expunged"), 0);
  svc->done (ctx, gone, 2);
  ck_assert_uint_eq (test_host_count (&host, "V retention: dovekie_retention_expunged "
                                             "mailbox=INBOX reason=expired"), 2);
  ck_assert_int_eq (dovekie_module.expunge (ctx, &m1, TRUE), DOVEKIE_EXPUNGE_KEEP);
  /* The host's expunge takes the records with the messages. */
  ck_assert (rec (3) != NULL);
  session_free (ctx);
}
END_TEST

START_TEST (test_corrupt_record_is_kept)
{
  DovekieContext *ctx;
  DovekieRetentionMessage msgs[] = { { 1, T0, 10, TRUE, { 0 } } };
  g_autoptr (GArray) unhide = g_array_new (FALSE, FALSE, sizeof (guint32));
  DovekieRetentionReason reason;
  DovekieRetentionSummary summary;
  guint8 *packed;

  set ("dovekie_retention_max_age", "1");
  set ("dovekie_retention_max_age_scope", "all");
  rec_set (1, "1 *:1700000000:d");
  /* A download bit of a slot the table does not have. */
  packed = g_hash_table_lookup (records, GUINT_TO_POINTER (1));
  packed[8] |= 0x10;
  ctx = session_new ("alice");
  host.now = T0 + 10 * DAY;
  ck_assert (plan (ctx, msgs, 1, 0, 0, &reason, unhide, &summary, NULL));
  ck_assert_int_eq (reason, DOVEKIE_RETENTION_KEEP);
  ck_assert_uint_eq (unhide->len, 0); /* its DELE may be in the bad record */
  ck_assert_uint_eq (summary.corrupt, 1);
  ck_assert_uint_eq (summary.records, 0);
  ck_assert_uint_eq (test_host_count (&host, "uid=1: retention record names a client slot"), 1);
  svc->done (ctx, NULL, 0);
  session_free (ctx);
}
END_TEST

/* The store fails: QUIT records nothing (the host rolls back); a table
 * that does not parse makes the session hide nothing and every plan and
 * QUIT refuse, so that nothing is expired on records no one can read. */
START_TEST (test_store_down)
{
  DovekieContext *ctx = session_new ("alice");
  g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GArray) unhide = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GError) error = NULL;
  const guint32 retr[] = { 1 }, del[] = { 1 };
  DovekieRetentionMessage msgs[] = { { 1, T0, 10, FALSE, { 0 } } };
  DovekieRetentionReason reason;

  store_down = TRUE;
  listing (ctx);
  ck_assert (!hidden (ctx, 1));
  ck_assert (!pop3_quit (ctx, retr, 1, del, 1, hide, &error));
  ck_assert_str_eq (error->message, "store down");
  ck_assert_uint_eq (g_hash_table_size (records), 0);
  store_down = FALSE;
  g_clear_error (&error);

  rec_set (1, "1 *:1700000000:d");
  table_bytes[0] = 7; /* an unknown version */
  listing (ctx);
  ck_assert_uint_eq (test_host_count (&host, "retention table: unknown version 7"), 1);
  ck_assert (!hidden (ctx, 1));
  ck_assert (!pop3_quit (ctx, retr, 1, NULL, 0, hide, &error));
  g_clear_error (&error);
  host.now = T0 + 100 * DAY;
  ck_assert (!plan (ctx, msgs, 1, 0, 0, &reason, unhide, NULL, &error));
  ck_assert (strstr (error->message, "cannot be used") != NULL);
  session_free (ctx);
}
END_TEST

/* Records of older versions (one kv entry per UID) move into the store:
 * nothing a user had is lost, and the old entries are removed. */
START_TEST (test_migrate)
{
  DovekieContext *ctx = session_new ("alice");
  g_autoptr (GError) error = NULL;
  DovekieRetentionTable table;
  Txn txn;
  guint n = 0;

  g_hash_table_insert (host.kv, g_strdup ("retention/uid/1"), g_strdup ("1 *:1700000000:d"));
  g_hash_table_insert (host.kv, g_strdup ("retention/uid/2"),
                       g_strdup ("1 laptop:1700000100:- desk:0:d"));
  g_hash_table_insert (host.kv, g_strdup ("retention/uid/3"), g_strdup ("junk"));
  g_hash_table_insert (host.kv, g_strdup ("retention/other"), g_strdup ("x"));
  txn_begin (&txn);
  ck_assert_msg (svc->migrate (ctx, &txn.store, &n, &error), "%s", error ? error->message : "");
  txn_end (&txn, TRUE);
  ck_assert_uint_eq (n, 2);
  ck_assert_str_eq (rec (1), "1 *:1700000000:d");
  ck_assert_str_eq (rec (2), "1 laptop:1700000100:- desk:0:d");
  ck_assert (rec (3) == NULL);
  ck_assert (dovekie_retention_table_migrated (table_bytes));
  ck_assert (dovekie_retention_table_parse (table_bytes, &table, NULL));
  ck_assert_uint_eq (table.n_ids, 3);
  ck_assert (!g_hash_table_contains (host.kv, "retention/uid/1"));
  ck_assert (!g_hash_table_contains (host.kv, "retention/uid/3"));
  ck_assert (g_hash_table_contains (host.kv, "retention/other"));
  ck_assert_uint_eq (test_host_count (&host, "uid=3: old record not migrated"), 1);
  /* Records moved: the next plan sets the floors over them. */
  ck_assert_uint_eq (table.flags & DOVEKIE_RETENTION_TABLE_FLOORS, 0);
  session_free (ctx);

  /* Nothing to move into a table never written: marked, and its floors
   * are known (no record), so a QUIT makes no plan. */
  g_hash_table_remove_all (records);
  memset (table_bytes, 0, sizeof (table_bytes));
  g_hash_table_remove_all (host.kv);
  ctx = session_new ("alice");
  txn_begin (&txn);
  ck_assert (svc->migrate (ctx, &txn.store, &n, &error));
  txn_end (&txn, TRUE);
  ck_assert_uint_eq (n, 0);
  ck_assert (dovekie_retention_table_migrated (table_bytes));
  ck_assert (dovekie_retention_table_parse (table_bytes, &table, NULL));
  ck_assert_uint_ne (table.flags & DOVEKIE_RETENTION_TABLE_FLOORS, 0);
  ck_assert (!svc->expire_at_quit (ctx, table_bytes));
  session_free (ctx);

  /* The kv store fails: FALSE, nothing moved, the mark not set. */
  g_hash_table_remove_all (records);
  memset (table_bytes, 0, sizeof (table_bytes));
  g_hash_table_unref (host.kv);
  host.kv = NULL;
  ctx = session_new ("alice");
  g_clear_error (&error);
  txn_begin (&txn);
  ck_assert (!svc->migrate (ctx, &txn.store, &n, &error));
  txn_end (&txn, FALSE);
  ck_assert_uint_eq (g_hash_table_size (records), 0);
  ck_assert (!dovekie_retention_table_migrated (table_bytes));
  session_free (ctx);
}
END_TEST

/* ---- property test ----
 *
 * A simulated host runs random steps over one INBOX: POP3 sessions of
 * clients that poll at different rates, RETR and DELE random messages and
 * end with QUIT or drop (a killed process: every session is a new module
 * context, so each one is also a restart); IMAP keyword removals and
 * additions, expunges, and MOVEs out of INBOX and back (a new UID without
 * a record, the keyword kept, as Dovecot does); clock steps; expiry runs.
 * It tracks the truth independently of the module (what each identity
 * really downloaded, at QUIT, and when it last said QUIT) and checks after
 * every step:
 *   - no message is expunged by the policy before `days` after its first
 *     real download, none that no one really downloaded, none no one DELEd;
 *   - none that an identity active within `days` (a QUIT since) has
 *     neither downloaded nor DELEd (issue 17);
 *   - a POP3 DELE never expunges (dele=hide, days > 0);
 *   - per-client: each identity sees exactly the messages it has not
 *     downloaded or DELEd (shared: those without the hide keyword);
 *   - a message whose keyword the user removed is new for POP3: it expires
 *     only after a new download and DELE (issue 17);
 *   - the plan never unhides a message that a DELE hid, and after every
 *     expiry run no message carries the keyword without a DELE (nothing is
 *     hidden for ever);
 *   - nothing is lost for IMAP: a message leaves INBOX only by the user's
 *     own expunge or MOVE, or by a plan that the checks above allow.
 */

#define SIM_MESSAGES 24
#define SIM_DAYS 7

typedef struct {
  gboolean exists;
  gboolean keyword;
  gboolean ever_deleted;            /* some DELE+QUIT, ever (not reset by a restore) */
  gint64 saved;
  gint64 first_download;            /* truth: first RETR+QUIT by anyone */
  gboolean deleted_by_any;          /* truth: some DELE+QUIT */
  GHashTable *seen_by;              /* identities that RETRed or DELEd (with QUIT) */
} SimMessage;

static const gchar *const sim_logins[] = { "alice", "alice#laptop", "alice#desktop", "alice#phone" };
/* How often each login polls, relative to the others: out of 10. */
static const gint sim_weights[] = { 4, 3, 2, 1 };
static GHashTable *sim_last_quit; /* identity -> gint64* */

static const gchar *
sim_pick_login (GRand *rand)
{
  gint k = g_rand_int_range (rand, 0, 10);

  for (guint i = 0; i < G_N_ELEMENTS (sim_logins); i++)
    {
      if (k < sim_weights[i])
        return sim_logins[i];
      k -= sim_weights[i];
    }
  g_assert_not_reached ();
}

static const gchar *
sim_identity (const gchar *login, gboolean per_client)
{
  const gchar *sep = strchr (login, '#');
  return per_client && sep != NULL ? sep + 1 : "*";
}

static void
sim_expire (DovekieContext *ctx, SimMessage *box, guint n, gboolean pop3)
{
  DovekieRetentionMessage msgs[SIM_MESSAGES] = { { 0, 0, 0, FALSE, { 0 } } };
  DovekieRetentionReason reasons[SIM_MESSAGES] = { 0 };
  g_autoptr (GArray) unhide = g_array_new (FALSE, FALSE, sizeof (guint32));
  guint32 uids[SIM_MESSAGES], gone[SIM_MESSAGES];
  guint count = 0, n_gone = 0;
  GHashTableIter iter;
  gpointer id, last;

  for (guint i = 0; i < n; i++)
    if (box[i].exists)
      {
        msgs[count] = (DovekieRetentionMessage) { i + 1, box[i].saved, 1000, box[i].keyword, { 0 } };
        uids[count++] = i + 1;
      }
  ck_assert (plan (ctx, msgs, count, 0, 0, reasons, unhide, NULL, NULL));
  for (guint k = 0; k < count; k++)
    {
      SimMessage *m = &box[uids[k] - 1];
      DovekieMessageInfo info = inbox (uids[k]);
      if (reasons[k] == DOVEKIE_RETENTION_KEEP)
        continue;
      ck_assert_msg (m->first_download > 0, "uid %u expunged but never downloaded", uids[k]);
      ck_assert_msg (host.now >= m->first_download + SIM_DAYS * DAY,
                     "uid %u expunged %" G_GINT64_FORMAT "s early", uids[k],
                     m->first_download + SIM_DAYS * DAY - host.now);
      ck_assert_msg (m->deleted_by_any, "uid %u expunged but never DELEd", uids[k]);
      g_hash_table_iter_init (&iter, sim_last_quit);
      while (g_hash_table_iter_next (&iter, &id, &last))
        ck_assert_msg (*(gint64 *) last < host.now - SIM_DAYS * DAY ||
                       g_hash_table_contains (m->seen_by, id),
                       "uid %u expunged, but %s (active) never fetched it", uids[k],
                       (const gchar *) id);
      ck_assert_int_eq (dovekie_module.expunge (ctx, &info, pop3), DOVEKIE_EXPUNGE_ALLOW);
      m->exists = FALSE;
      /* The index drops the record with the message. */
      g_hash_table_remove (records, GUINT_TO_POINTER (uids[k]));
      gone[n_gone++] = uids[k];
    }
  svc->done (ctx, gone, n_gone);
  /* The host removes the keyword from what the plan unhides: never a
   * message that a DELE hid. */
  for (guint k = 0; k < unhide->len; k++)
    {
      SimMessage *m = &box[g_array_index (unhide, guint32, k) - 1];
      ck_assert_msg (m->keyword && !m->deleted_by_any, "uid %u unhidden after its DELE",
                     g_array_index (unhide, guint32, k));
      m->keyword = FALSE;
    }
  for (guint i = 0; i < n; i++)
    ck_assert_msg (!box[i].exists || !box[i].keyword || box[i].deleted_by_any,
                   "uid %u hidden without a DELE after a run", i + 1);
}

static void
sim_run (guint32 seed, gboolean per_client)
{
  GRand *rand = g_rand_new_with_seed (seed);
  SimMessage box[SIM_MESSAGES] = { { 0 } };
  guint n = 0;

  set ("dovekie_retention_days", G_STRINGIFY (SIM_DAYS));
  set ("dovekie_retention_view", per_client ? "per-client" : "shared");
  for (guint i = 0; i < SIM_MESSAGES; i++)
    box[i].seen_by = g_hash_table_new (g_str_hash, g_str_equal);
  sim_last_quit = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);

  for (guint step = 0; step < 300; step++)
    {
      gint what = g_rand_int_range (rand, 0, 100);

      if (what < 15 && n < SIM_MESSAGES)
        {
          box[n].exists = TRUE;
          box[n].saved = host.now;
          n++;
        }
      else if (what < 65)
        {
          const gchar *login = sim_pick_login (rand);
          const gchar *id = sim_identity (login, per_client);
          DovekieContext *ctx = session_new (login);
          guint32 retr[SIM_MESSAGES], del[SIM_MESSAGES];
          guint n_retr = 0, n_del = 0;
          gboolean quit_seen = g_rand_int_range (rand, 0, 4) != 0;

          listing (ctx);
          for (guint i = 0; i < n; i++)
            {
              gboolean visible;
              if (!box[i].exists)
                continue;
              /* What the host lists: the keyword filter (the session's
               * pop3_deleted_flag, in both views), then the module. */
              visible = !box[i].keyword && !hidden (ctx, i + 1);
              if (per_client)
                ck_assert_msg (visible == (!box[i].keyword &&
                                           !g_hash_table_contains (box[i].seen_by, id)),
                               "seed %u step %u: uid %u visibility for %s", seed, step, i + 1, id);
              else
                ck_assert (visible == !box[i].keyword);
              if (!visible)
                continue;
              if (g_rand_int_range (rand, 0, 2) == 0)
                retr[n_retr++] = i + 1;
              if (g_rand_int_range (rand, 0, 3) == 0)
                del[n_del++] = i + 1;
            }
          if (quit_seen)
            {
              g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
              for (guint k = 0; k < n_del; k++)
                {
                  DovekieMessageInfo m = inbox (del[k]);
                  ck_assert_int_eq (dovekie_module.expunge (ctx, &m, TRUE), DOVEKIE_EXPUNGE_KEEP);
                }
              ck_assert (pop3_quit (ctx, retr, n_retr, del, n_del, hide, NULL));
              for (guint k = 0; k < n_retr; k++)
                {
                  SimMessage *m = &box[retr[k] - 1];
                  if (m->first_download == 0)
                    m->first_download = host.now;
                  g_hash_table_add (m->seen_by, (gpointer) id);
                }
              for (guint k = 0; k < n_del; k++)
                {
                  box[del[k] - 1].deleted_by_any = TRUE;
                  box[del[k] - 1].ever_deleted = TRUE;
                  g_hash_table_add (box[del[k] - 1].seen_by, (gpointer) id);
                }
              g_hash_table_insert (sim_last_quit, (gpointer) id, g_memdup2 (&host.now, sizeof (gint64)));
              for (guint k = 0; k < hide->len; k++)
                box[g_array_index (hide, guint32, k) - 1].keyword = TRUE;
              if (expire_at_quit (ctx))
                sim_expire (ctx, box, n, TRUE);
            }
          session_free (ctx);
        }
      else if (what < 72 && n > 0)
        {
          /* IMAP: the user removes the keyword (the message comes back to
           * POP3 in the shared view), sets it by hand, or expunges the
           * message. */
          SimMessage *m = &box[g_rand_int_range (rand, 0, n)];
          gint action = g_rand_int_range (rand, 0, 3);
          if (action == 0)
            {
              /* The user's restore wins: the message is new for POP3,
               * with no download and no DELE on record. */
              if (m->keyword)
                {
                  m->first_download = 0;
                  m->deleted_by_any = FALSE;
                  g_hash_table_remove_all (m->seen_by);
                }
              m->keyword = FALSE;
            }
          else if (action == 1)
            {
              /* By hand, on a message POP3 never touched: the next run
               * takes it off again. */
              if (!m->ever_deleted && g_hash_table_size (m->seen_by) == 0)
                m->keyword = TRUE;
            }
          else if (m->exists)
            {
              DovekieContext *ctx = session_new ("alice");
              DovekieMessageInfo info = inbox ((guint32) (m - box) + 1);
              ck_assert_int_eq (dovekie_module.expunge (ctx, &info, FALSE), DOVEKIE_EXPUNGE_ALLOW);
              m->exists = FALSE;
              g_hash_table_remove (records, GUINT_TO_POINTER (info.uid));
              session_free (ctx);
            }
        }
      else if (what < 76 && n > 0 && n < SIM_MESSAGES)
        {
          /* IMAP MOVE out of INBOX and back: a new UID, the keywords kept,
           * no record (Dovecot copies no index extension record). It is a
           * new message for POP3. */
          SimMessage *m = &box[g_rand_int_range (rand, 0, n)];
          if (m->exists)
            {
              DovekieContext *ctx = session_new ("alice");
              DovekieMessageInfo info = inbox ((guint32) (m - box) + 1);
              ck_assert_int_eq (dovekie_module.expunge (ctx, &info, FALSE), DOVEKIE_EXPUNGE_ALLOW);
              session_free (ctx);
              m->exists = FALSE;
              g_hash_table_remove (records, GUINT_TO_POINTER (info.uid));
              box[n].exists = TRUE;
              box[n].keyword = m->keyword;
              box[n].saved = m->saved;
              n++;
            }
        }
      else if (what < 92)
        host.now += g_rand_int_range (rand, 0, 3 * 86400);
      else
        {
          DovekieContext *ctx = session_new ("");
          sim_expire (ctx, box, n, FALSE);
          session_free (ctx);
        }
    }
  for (guint i = 0; i < SIM_MESSAGES; i++)
    g_hash_table_unref (box[i].seen_by);
  g_clear_pointer (&sim_last_quit, g_hash_table_unref);
  g_rand_free (rand);
}

START_TEST (test_property_shared)
{
  sim_run (1000 + _i, FALSE);
}
END_TEST

START_TEST (test_property_per_client)
{
  sim_run (5000 + _i, TRUE);
}
END_TEST

static Suite *
retention_suite (void)
{
  Suite *s = suite_create ("retention");
  TCase *tc;

  tc = tcase_create ("init");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_init_rejects, 0, G_N_ELEMENTS (bad_settings));
  tcase_add_test (tc, test_init_identity);
  tcase_add_test (tc, test_key);
  suite_add_tcase (s, tc);
  tc = tcase_create ("expunge");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_expunge);
  suite_add_tcase (s, tc);
  tc = tcase_create ("pop3_quit");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_quit_records_downloads_and_dele);
  tcase_add_test (tc, test_per_client_views);
  tcase_add_test (tc, test_active_client_keeps_what_it_waits_for);
  tcase_add_test (tc, test_invalid_client_name_is_refused);
  tcase_add_test (tc, test_dele_ignored);
  tcase_add_test (tc, test_restored_message_does_not_expire);
  tcase_add_test (tc, test_expire_at_quit_only_when_due);
  tcase_add_test (tc, test_expire_at_quit_floors);
  tcase_add_test (tc, test_table_floors_layout);
  tcase_add_test (tc, test_store_down);
  tcase_add_test (tc, test_migrate);
  suite_add_tcase (s, tc);
  tc = tcase_create ("plan");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_plan_and_done);
  tcase_add_test (tc, test_corrupt_record_is_kept);
  tcase_add_test (tc, test_hidden_without_record_is_unhidden);
  suite_add_tcase (s, tc);
  tc = tcase_create ("property");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 120);
  tcase_add_loop_test (tc, test_property_shared, 0, 40);
  tcase_add_loop_test (tc, test_property_per_client, 0, 40);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *runner = srunner_create (retention_suite ());
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
