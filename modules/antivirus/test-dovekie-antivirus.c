/* Unit tests for the antivirus module's hooks and services: a fake host API
 * (settings, log, clock, kv store) and the fake clamd of
 * test-av-fake-clamd.h, or libclamav on a DB made at run time; the rescan
 * through a fake host's mailboxes (FakeBox). */
#include "dovekie-config.h"

#include <fcntl.h>
#include <stdlib.h>

#include "dovekie-test.h"
#include "dovekie-av-engine.h"
#include "dovekie/antivirus.h"
#include "test-av-fake-clamd.h"
#include "test-av-sigs.h"

extern const DovekieModule dovekie_module;

static TestHost host;
static GHashTable *settings; /* overrides of the declared defaults */
static GHashTable *kv;       /* NULL: the kv store fails */
static FakeClamd *fake;
static gint message_fd = -1; /* what the host's fd() gives */

TEST_FAKE_HOST_BASICS (dovekie_module, "antivirus", host, settings)

static gssize
fake_read (DovekieMessage *msg, guint8 *buf, gsize len, GError **error)
{
  return test_source_read (msg, buf, len, error);
}

static gboolean
fake_rewind (DovekieMessage *msg, GError **error)
{
  return test_source_rewind (msg, error);
}

static gint
fake_fd (DovekieMessage *msg)
{
  (void) msg;
  return message_fd;
}

static gboolean
fake_kv_get (DovekieContext *ctx, const gchar *key, gchar **value_r, GError **error)
{
  (void) ctx;
  if (kv == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "kv is down");
      return FALSE;
    }
  *value_r = g_strdup (g_hash_table_lookup (kv, key));
  return TRUE;
}

static gboolean
fake_kv_set (DovekieContext *ctx, const gchar *key, const gchar *value, GError **error)
{
  (void) ctx;
  if (kv == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "kv is down");
      return FALSE;
    }
  ck_assert_uint_le (strlen (key), 200);
  if (value == NULL)
    g_hash_table_remove (kv, key);
  else
    g_hash_table_insert (kv, g_strdup (key), g_strdup (value));
  return TRUE;
}

/* The fake host commits at once: held writes are the real host's business
 * (tests/integration and hosts/dovecot). */
static gboolean
fake_kv_defer (DovekieContext *ctx, const gchar *key, const gchar *value, GError **error)
{
  return fake_kv_set (ctx, key, value, error);
}

/* Verdict records in the fake kv. */
static guint
verdicts (void)
{
  GHashTableIter iter;
  gpointer key;
  guint n = 0;

  g_hash_table_iter_init (&iter, kv);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (g_str_has_prefix (key, "v/"))
      n++;
  return n;
}

static gboolean
fake_kv_foreach (DovekieContext *ctx, const gchar *prefix,
                 gboolean (*func) (const gchar *key, const gchar *value, gpointer data),
                 gpointer data, GError **error)
{
  GHashTableIter iter;
  gpointer key, value;

  (void) ctx;
  if (kv == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "kv is down");
      return FALSE;
    }
  g_hash_table_iter_init (&iter, kv);
  while (g_hash_table_iter_next (&iter, &key, &value))
    if (g_str_has_prefix (key, prefix) && !func (key, value, data))
      break;
  return TRUE;
}

/* Events are logged as "event NAME k=v k=v". */
static void
fake_emit (DovekieContext *ctx, const gchar *name, const gchar *const *fields)
{
  GString *line = g_string_new ("event ");
  (void) ctx;
  g_string_append (line, name);
  for (guint i = 0; fields[i] != NULL && fields[i + 1] != NULL; i += 2)
    g_string_append_printf (line, " %s=%s", fields[i], fields[i + 1]);
  test_host_log (&host, DOVEKIE_LOG_DEBUG, "antivirus", line->str);
  g_string_free (line, TRUE);
}

static const DovekieHostApi fake_api = {
  .get_string = fake_get_string,
  .get_uint = fake_get_uint,
  .get_bool = fake_get_bool,
  .log = fake_log,
  .now = fake_now,
  .read = fake_read,
  .rewind = fake_rewind,
  .fd = fake_fd,
  .kv_get = fake_kv_get,
  .kv_set = fake_kv_set,
  .kv_foreach = fake_kv_foreach,
  .kv_defer = fake_kv_defer,
  .emit = fake_emit,
};

static DovekieContext ctx = { &fake_api, NULL };

static void
setup (void)
{
  host.lines = g_ptr_array_new_with_free_func (g_free);
  host.now = 1000000;
  settings = g_hash_table_new (g_str_hash, g_str_equal);
  kv = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  fake = fake_clamd_start (FALSE, FAKE_OK);
  message_fd = -1;
  g_hash_table_insert (settings, "dovekie_av_clamd", fake->address);
  g_hash_table_insert (settings, "dovekie_av_scan_timeout_msecs", "2000");
}

static void
teardown (void)
{
  if (ctx.module_data != NULL)
    dovekie_module.deinit (&ctx);
  fake_clamd_stop (fake);
  g_clear_pointer (&settings, g_hash_table_unref);
  g_clear_pointer (&kv, g_hash_table_unref);
  g_clear_pointer (&host.lines, g_ptr_array_unref);
  dovekie_av_engine_shutdown ();
}

static void
init_module (void)
{
  g_autoptr (GError) error = NULL;
  ck_assert_msg (dovekie_module.init (&ctx, &error), "%s", error != NULL ? error->message : "");
}

/* Runs the save (or read) hook on `text` and fills `verdict` (the caller
 * clears it). */
static void
run_hook_verdict (gboolean save, gint origin, const gchar *text, DovekieVerdict *verdict)
{
  TestSource src = { (const guint8 *) text, strlen (text), 0, 0, FALSE };
  DovekieMessageInfo info = { "INBOX", 7, (gint64) strlen (text) };
  g_autoptr (GError) error = NULL;
  gboolean ok;

  if (save)
    ok = dovekie_module.save (&ctx, (DovekieSaveOrigin) origin, &info, (DovekieMessage *) &src,
                              verdict, &error);
  else
    ok = dovekie_module.read (&ctx, (DovekieReadOrigin) origin, &info, (DovekieMessage *) &src,
                              verdict, &error);
  ck_assert_msg (ok, "hook failed: %s", error != NULL ? error->message : "");
}

/* Runs the save (or read) hook on `text`; returns the verdict kind and
 * leaves the reason in *reason_r (g_free). */
static DovekieVerdictKind
run_hook (gboolean save, gint origin, const gchar *text, gchar **reason_r)
{
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;
  DovekieVerdictKind kind;

  run_hook_verdict (save, origin, text, &verdict);
  kind = verdict.kind;
  if (reason_r != NULL)
    *reason_r = g_steal_pointer (&verdict.reason);
  dovekie_verdict_clear (&verdict);
  return kind;
}

static void
assert_logged (const gchar *needle, guint times)
{
  g_autofree gchar *dump = test_host_dump (&host);
  ck_assert_msg (test_host_count (&host, needle) == times, "'%s' not %u times in:\n%s", needle,
                 times, dump);
}

START_TEST (test_contract)
{
  ck_assert_uint_eq (dovekie_module.abi, DOVEKIE_MODULE_ABI);
  ck_assert_str_eq (dovekie_module.name, "antivirus");
  for (guint i = 0; dovekie_module.settings[i].name != NULL; i++)
    {
      const DovekieSettingDef *def = &dovekie_module.settings[i];
      ck_assert (g_str_has_prefix (def->name, "dovekie_av_"));
      ck_assert_msg (dovekie_setting_validate (def, def->default_value, NULL, NULL), "%s", def->name);
      ck_assert_ptr_nonnull (def->help);
    }
}
END_TEST

START_TEST (test_bad_server_list_refuses_module)
{
  g_autoptr (GError) error = NULL;
  g_hash_table_insert (settings, "dovekie_av_clamd", "tcp:nowhere");
  ck_assert (!dovekie_module.init (&ctx, &error));
  ck_assert_ptr_nonnull (strstr (error->message, "dovekie_av_clamd"));
  ck_assert_ptr_null (ctx.module_data);
}
END_TEST

/* Bug: dovekie_av_quarantine_mailbox = inbox (any case, as IMAP treats
 * INBOX) was taken, and "quarantined" infected deliveries landed in
 * INBOX. */
typedef struct {
  const gchar *mailbox;
  gboolean ok;
} QuarantineCase;

static const QuarantineCase quarantine_cases[] = {
  { "INBOX", FALSE },
  { "inbox", FALSE },
  { "Inbox", FALSE },
  { "iNbOx", FALSE },
  { "Quarantine", TRUE },
  { "INBOX.Quarantine", TRUE },
  { "INBOX/Quarantine", TRUE },
  { "INBOXES", TRUE },
  { "Junk inbox", TRUE },
};

START_TEST (test_quarantine_mailbox_not_inbox)
{
  const QuarantineCase *c = &quarantine_cases[_i];
  g_autoptr (GError) error = NULL;
  g_autofree gchar *want = NULL;

  g_hash_table_insert (settings, "dovekie_av_quarantine_mailbox", (gpointer) c->mailbox);
  ck_assert_msg (dovekie_module.init (&ctx, &error) == c->ok, "case %d '%s'", _i, c->mailbox);
  if (c->ok)
    return;
  ck_assert_ptr_null (ctx.module_data);
  want = g_strdup_printf ("dovekie_av_quarantine_mailbox: \"%s\" would deliver infected mail "
                          "into INBOX", c->mailbox);
  ck_assert_msg (g_str_has_prefix (error->message, want), "%s", error->message);
}
END_TEST

/* Bug: the clamd list took spaces only (a passwd-file userdb field has
 * none), and a bad item was only refused with the clamd engine. */
typedef struct {
  const gchar *engine;
  const gchar *clamd;
  const gchar *error; /* NULL: init succeeds */
} ClamdListCase;

static const ClamdListCase clamd_list_cases[] = {
  { "clamd", "unix:/a,tcp:127.0.0.1:3310", NULL },
  { "clamd", "unix:/a tcp:127.0.0.1:3310", NULL },
  { "clamd", " unix:/a, tcp:b:1 ,,tcp:[::1]:2 ", NULL },
  { "clamd", "", "dovekie_av_clamd: \"\" names no clamd server" },
  { "clamd", " , ", "dovekie_av_clamd: \" , \" names no clamd server" },
  { "clamd", "unix:/a,tcp:nowhere", "dovekie_av_clamd: \"tcp:nowhere\" is neither" },
  { "clamd", "unix:/a relative", "dovekie_av_clamd: \"relative\" is neither" },
  { "libclamav", "unix:/a,tcp:b:1", NULL },
  { "libclamav", "unix:/a,tcp:nowhere", "dovekie_av_clamd: \"tcp:nowhere\" is neither" },
};

START_TEST (test_clamd_list_checked_at_init)
{
  const ClamdListCase *c = &clamd_list_cases[_i];
  g_autoptr (GError) error = NULL;
  gboolean ok;

  g_hash_table_insert (settings, "dovekie_av_engine", (gpointer) c->engine);
  g_hash_table_insert (settings, "dovekie_av_clamd", (gpointer) c->clamd);
  ok = dovekie_module.init (&ctx, &error);
  ck_assert_msg (ok == (c->error == NULL), "case %d '%s': %s", _i, c->clamd,
                 error != NULL ? error->message : "ok");
  if (ok)
    return;
  ck_assert_ptr_null (ctx.module_data);
  ck_assert_msg (g_str_has_prefix (error->message, c->error), "case %d: %s", _i, error->message);
}
END_TEST

/* Bug: a mailbox named "x result=clean" forged a result field in the
 * scan log line. */
START_TEST (test_log_quotes_mailbox)
{
  TestSource src = { (const guint8 *) "hello", 5, 0, 0, FALSE };
  DovekieMessageInfo info = { "x result=clean\nforged=1", 3, 5 };
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;
  g_autoptr (GError) error = NULL;

  init_module ();
  ck_assert (dovekie_module.save (&ctx, DOVEKIE_ORIGIN_APPEND, &info, (DovekieMessage *) &src,
                                  &verdict, &error));
  dovekie_verdict_clear (&verdict);
  assert_logged ("scan origin=append mailbox=\"x result=clean\\nforged=1\" uid=3 ", 1);
  assert_logged ("forged=1\n", 0);
}
END_TEST

START_TEST (test_clean_and_infected)
{
  gchar *reason = NULL;

  g_hash_table_insert (settings, "dovekie_av_action", "reject");
  init_module ();
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "clean mail\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  assert_logged ("scan origin=append mailbox=\"INBOX\" uid=7 size=12", 1);
  assert_logged ("result=clean engine=unix:", 1);

  fake->mode = FAKE_FOUND;
  for (gint origin = DOVEKIE_ORIGIN_APPEND; origin <= DOVEKIE_ORIGIN_DELIVERY; origin++)
    {
      ck_assert_int_eq (run_hook (TRUE, origin, "bad mail\r\n", &reason), DOVEKIE_VERDICT_REJECT);
      ck_assert_str_eq (reason, "Message rejected: virus Fake.Test.Virus found");
      g_free (reason);
    }
  assert_logged ("result=infected signature=Fake.Test.Virus", 3);
  /* Scanned once, then served from the cache. */
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 2);
  assert_logged ("engine=cache cached=yes", 2);
}
END_TEST

/* Writes `text` to a file in `dir` and makes it what the host's fd()
 * gives; returns the fd (the caller closes it). */
static gint
offer_fd (const gchar *dir, const gchar *text)
{
  g_autofree gchar *path = g_build_filename (dir, "msg", NULL);

  ck_assert (g_file_set_contents (path, text, -1, NULL));
  message_fd = open (path, O_RDONLY | O_CLOEXEC);
  ck_assert_int_ge (message_fd, 0);
  return message_fd;
}

/* With the host offering an fd, a unix: clamd reads the file (FILDES),
 * and the log line says so; dovekie_av_clamd_fildes = no streams it. */
START_TEST (test_clamd_fildes)
{
  g_autofree gchar *dir = test_make_dir ();
  gchar *reason = NULL;
  gint fd;

  g_hash_table_insert (settings, "dovekie_av_cache", "no");
  init_module ();
  fd = offer_fd (dir, "fildes mail\r\n");
  fake->mode = FAKE_FOUND;
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "fildes mail\r\n", &reason),
                    DOVEKIE_VERDICT_REJECT);
  ck_assert_str_eq (reason, "Message rejected: virus Fake.Test.Virus found");
  g_free (reason);
  ck_assert_int_eq (g_atomic_int_get (&fake->fildes), 1);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 0);
  assert_logged ("result=infected signature=Fake.Test.Virus engine=unix:", 1);
  assert_logged (" mode=fildes cached=no", 1);
  fake->mode = FAKE_OK;
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "fildes mail\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  assert_logged (" mode=fildes cached=no", 2);
  dovekie_module.deinit (&ctx);

  g_hash_table_insert (settings, "dovekie_av_clamd_fildes", "no");
  init_module ();
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "fildes mail\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->fildes), 2);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 1);
  assert_logged (" mode=instream cached=no", 1);
  close (fd);
  test_remove_dir (dir);
}
END_TEST

START_TEST (test_delivery_actions)
{
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;

  init_module ();
  fake->mode = FAKE_FOUND;
  /* The default: quarantine. */
  run_hook_verdict (TRUE, DOVEKIE_ORIGIN_DELIVERY, "bad mail\r\n", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_DIVERT);
  ck_assert_str_eq (verdict.mailbox, "Quarantine");
  ck_assert_str_eq (verdict.reason, "Message quarantined: virus Fake.Test.Virus found");
  /* The quarantined message names its signature (issue 16, invariant 4). */
  ck_assert_str_eq (verdict.keyword, "$Virus:Fake.Test.Virus");
  dovekie_verdict_clear (&verdict);
  assert_logged ("result=infected signature=Fake.Test.Virus engine=unix:", 1);
  assert_logged ("action=quarantine", 2); /* the log line and the event */
  assert_logged ("event dovekie_av_scan_finished origin=delivery result=infected engine=clamd "
                 "cached=no action=quarantine", 1);

  g_hash_table_insert (settings, "dovekie_av_quarantine_mailbox", "Junk/Virus");
  run_hook_verdict (TRUE, DOVEKIE_ORIGIN_DELIVERY, "bad mail\r\n", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_DIVERT);
  ck_assert_str_eq (verdict.mailbox, "Junk/Virus");
  dovekie_verdict_clear (&verdict);
  assert_logged ("event dovekie_av_scan_finished origin=delivery result=infected engine=clamd "
                 "cached=yes action=quarantine", 1);

  g_hash_table_insert (settings, "dovekie_av_action", "tag");
  run_hook_verdict (TRUE, DOVEKIE_ORIGIN_DELIVERY, "bad mail\r\n", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_ACCEPT);
  ck_assert_str_eq (verdict.keyword, "$Infected");
  ck_assert_ptr_null (verdict.reason);
  dovekie_verdict_clear (&verdict);
  assert_logged ("action=tag", 2);

  g_hash_table_insert (settings, "dovekie_av_action", "discard");
  run_hook_verdict (TRUE, DOVEKIE_ORIGIN_DELIVERY, "bad mail\r\n", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_DISCARD);
  ck_assert_str_eq (verdict.reason, "Message discarded: virus Fake.Test.Virus found");
  dovekie_verdict_clear (&verdict);

  /* APPEND and COPY are refused whatever the delivery action. */
  for (gint origin = DOVEKIE_ORIGIN_APPEND; origin <= DOVEKIE_ORIGIN_COPY; origin++)
    {
      run_hook_verdict (TRUE, origin, "bad mail\r\n", &verdict);
      ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_REJECT);
      ck_assert_ptr_null (verdict.keyword);
      ck_assert_ptr_null (verdict.mailbox);
      dovekie_verdict_clear (&verdict);
    }
  assert_logged ("event dovekie_av_scan_finished origin=copy result=infected engine=clamd "
                 "cached=yes action=reject", 1);

  fake->mode = FAKE_OK;
  run_hook_verdict (TRUE, DOVEKIE_ORIGIN_DELIVERY, "clean mail\r\n", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_ACCEPT);
  ck_assert_ptr_null (verdict.keyword);
  dovekie_verdict_clear (&verdict);
  assert_logged ("event dovekie_av_scan_finished origin=delivery result=clean engine=clamd "
                 "cached=no action=accept", 1);
}
END_TEST

static void
count_status (const gchar *version, const gchar *verdict, gpointer data)
{
  g_autofree gchar *key = g_strdup_printf ("%s %s", version, verdict);
  GHashTable *counts = data;
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (counts, key));
  g_hash_table_replace (counts, g_steal_pointer (&key), GUINT_TO_POINTER (n + 1));
}

START_TEST (test_status_service)
{
  const DovekieAntivirusService *svc = NULL;
  g_autoptr (GHashTable) counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GError) error = NULL;

  for (guint i = 0; dovekie_module.services[i].name != NULL; i++)
    if (g_str_equal (dovekie_module.services[i].name, DOVEKIE_ANTIVIRUS_SERVICE))
      svc = dovekie_module.services[i].vtable;
  ck_assert_ptr_nonnull (svc);
  init_module ();
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "clean one\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "clean two\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  fake->mode = FAKE_FOUND;
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "bad\r\n", NULL),
                    DOVEKIE_VERDICT_REJECT);
  g_hash_table_insert (kv, g_strdup ("v/0000"), g_strdup ("garbage"));
  g_hash_table_insert (kv, g_strdup ("other"), g_strdup ("not a verdict"));
  ck_assert (svc->foreach_verdict (&ctx, count_status, counts, &error));
  ck_assert_uint_eq (g_hash_table_size (counts), 3);
  ck_assert_uint_eq (GPOINTER_TO_UINT (g_hash_table_lookup (counts, "1.4.6/27000 clean")), 2);
  ck_assert_uint_eq (GPOINTER_TO_UINT (g_hash_table_lookup (counts, "1.4.6/27000 infected")), 1);
  ck_assert_uint_eq (GPOINTER_TO_UINT (g_hash_table_lookup (counts, " malformed")), 1);

  g_clear_pointer (&kv, g_hash_table_unref);
  ck_assert (!svc->foreach_verdict (&ctx, count_status, counts, &error));
}
END_TEST

START_TEST (test_scanner_down)
{
  gchar *reason = NULL;
  g_autofree gchar *dir = test_make_dir ();
  g_autofree gchar *nowhere = g_strdup_printf ("unix:%s/none.sock", dir);

  g_hash_table_insert (settings, "dovekie_av_clamd", nowhere);
  init_module ();
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_DELIVERY, "mail\r\n", &reason),
                    DOVEKIE_VERDICT_TEMPFAIL);
  ck_assert_str_eq (reason, "Virus scanner unavailable, try again later");
  g_free (reason);
  assert_logged ("E antivirus: scan origin=delivery mailbox=\"INBOX\" uid=7 result=error action=tempfail", 1);

  dovekie_module.deinit (&ctx);
  g_hash_table_insert (settings, "dovekie_av_on_error", "accept");
  init_module ();
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "mail\r\n", NULL), DOVEKIE_VERDICT_ACCEPT);
  assert_logged ("W antivirus: scan origin=append mailbox=\"INBOX\" uid=7 result=error action=accept", 1);
  test_remove_dir (dir);
}
END_TEST

START_TEST (test_garbage_reply_tempfails)
{
  g_hash_table_insert (settings, "dovekie_av_cache", "no");
  init_module ();
  fake->mode = FAKE_GARBAGE;
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_COPY, "mail\r\n", NULL), DOVEKIE_VERDICT_TEMPFAIL);
  assert_logged ("not one line of text", 1);
}
END_TEST

START_TEST (test_cache_and_db_version)
{
  init_module ();
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "same mail\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_COPY, "same mail\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (run_hook (FALSE, DOVEKIE_READ_FETCH, "same mail\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 1);
  ck_assert_uint_eq (verdicts (), 1);

  /* A new DB: not seen before the check interval ends, then exactly one
   * rescan, then cached again. */
  fake->version = "ClamAV 1.4.6/27001/Tue Jan  2 00:00:00 2024";
  ck_assert_int_eq (run_hook (FALSE, DOVEKIE_READ_FETCH, "same mail\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 1);
  host.now += 60;
  fake->mode = FAKE_FOUND;
  ck_assert_int_eq (run_hook (FALSE, DOVEKIE_READ_SYNC, "same mail\r\n", NULL),
                    DOVEKIE_VERDICT_DIVERT);
  g_hash_table_insert (settings, "dovekie_av_read_action", "refuse");
  ck_assert_int_eq (run_hook (FALSE, DOVEKIE_READ_POP3, "same mail\r\n", NULL),
                    DOVEKIE_VERDICT_REJECT);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 2);
  assert_logged ("signature DB version changed: 1.4.6/27000 -> 1.4.6/27001", 1);
  ck_assert_uint_eq (verdicts (), 1);
}
END_TEST

/* Issue 17: the verdict cache was never pruned. Past
 * dovekie_av_cache_entries, one pass drops other versions' records, then
 * others down to three quarters; a released record stays. */
START_TEST (test_cache_bound)
{
  g_autofree gchar *released_key = g_strdup_printf ("v/%064d", 1);

  g_hash_table_insert (settings, "dovekie_av_cache_entries", "100");
  /* 10 records of an old version, and an admin's release of the current
   * one (as `quarantine release` writes it). */
  for (guint i = 0; i < 10; i++)
    g_hash_table_insert (kv, g_strdup_printf ("v/%064u", 1000 + i), g_strdup ("1.4.6/26999 clean"));
  g_hash_table_insert (kv, g_strdup (released_key), g_strdup ("1.4.6/27000 released Evil"));
  init_module ();
  for (guint i = 0; i < 100; i++)
    {
      g_autofree gchar *text = g_strdup_printf ("mail number %u\r\n", i);
      ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, text, NULL),
                        DOVEKIE_VERDICT_ACCEPT);
    }
  /* The counter started at 0 (records of an older release are not
   * counted): 100 new ones reach the bound, not past it. */
  ck_assert_uint_eq (verdicts (), 111);
  assert_logged ("verdict cache pruned", 0);
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "one more\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  assert_logged ("verdict cache pruned: 10 of other DB versions, 27 more over the bound of 100; "
                 "75 left", 1);
  ck_assert_uint_eq (verdicts (), 75);
  ck_assert_str_eq (g_hash_table_lookup (kv, released_key), "1.4.6/27000 released Evil");
  ck_assert_str_eq (g_hash_table_lookup (kv, "cache-count"), "75");
  /* Overwriting a record adds none. */
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "one more\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  ck_assert_str_eq (g_hash_table_lookup (kv, "cache-count"), "75");
}
END_TEST

/* A new DB version retires the old version's records at once. */
START_TEST (test_cache_retired_on_new_version)
{
  init_module ();
  for (guint i = 0; i < 5; i++)
    {
      g_autofree gchar *text = g_strdup_printf ("mail number %u\r\n", i);
      run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, text, NULL);
    }
  ck_assert_uint_eq (verdicts (), 5);
  fake->version = "ClamAV 1.4.6/27001/Tue Jan  2 00:00:00 2024";
  host.now += 60;
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "mail number 0\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  assert_logged ("verdict cache pruned: 5 of other DB versions", 1);
  ck_assert_uint_eq (verdicts (), 1);
  ck_assert_str_eq (g_hash_table_lookup (kv, "cache-count"), "1");
}
END_TEST

/* Issue: one message to 20 LMTP recipients was scanned 20 times, and with
 * a hung clamd the transaction took 20 scan timeouts. Each recipient is a
 * user of its own (a context and a verdict cache of its own); the same
 * bytes delivered right after reuse the first scan's result, and each
 * recipient's own action applies to it. */
static void
next_recipient (const gchar *action)
{
  dovekie_module.deinit (&ctx);
  g_hash_table_remove_all (kv);
  if (action != NULL)
    g_hash_table_insert (settings, "dovekie_av_action", (gpointer) action);
  init_module ();
}

START_TEST (test_transaction_scanned_once)
{
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;
  gint connections;

  init_module ();
  fake->mode = FAKE_FOUND;
  run_hook_verdict (TRUE, DOVEKIE_ORIGIN_DELIVERY, "one transaction\r\n", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_DIVERT);
  dovekie_verdict_clear (&verdict);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 1);
  connections = g_atomic_int_get (&fake->connections);

  for (guint rcpt = 2; rcpt <= 20; rcpt++)
    {
      next_recipient (rcpt % 2 == 0 ? "reject" : "tag");
      run_hook_verdict (TRUE, DOVEKIE_ORIGIN_DELIVERY, "one transaction\r\n", &verdict);
      if (rcpt % 2 == 0)
        {
          ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_REJECT);
          ck_assert_str_eq (verdict.reason, "Message rejected: virus Fake.Test.Virus found");
        }
      else
        {
          ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_ACCEPT);
          ck_assert_str_eq (verdict.keyword, "$Infected");
        }
      dovekie_verdict_clear (&verdict);
    }
  /* Not even a VERSION: clamd was not asked again. */
  ck_assert_int_eq (g_atomic_int_get (&fake->connections), connections);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 1);
  assert_logged ("W antivirus: scan origin=delivery", 1);
  assert_logged ("W antivirus: scan reused origin=delivery", 19);
  assert_logged ("event dovekie_av_scan_finished origin=delivery result=infected engine=clamd "
                 "cached=yes action=reject", 10);

  /* Other bytes, an APPEND, other scanner settings: scanned again. */
  fake->mode = FAKE_OK;
  next_recipient (NULL);
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_DELIVERY, "another one\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 2);
  next_recipient (NULL);
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "another one\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 3);
  g_hash_table_insert (settings, "dovekie_av_scan_timeout_msecs", "2001");
  next_recipient (NULL);
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_DELIVERY, "another one\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 4);
}
END_TEST

START_TEST (test_transaction_hung_clamd)
{
  gint64 start;
  gint connections;

  g_hash_table_insert (settings, "dovekie_av_scan_timeout_msecs", "300");
  fake->mode = FAKE_SLOW;
  fake->slow_ms = 1500;
  init_module ();
  start = g_get_monotonic_time ();
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_DELIVERY, "hung\r\n", NULL),
                    DOVEKIE_VERDICT_TEMPFAIL);
  connections = g_atomic_int_get (&fake->connections);
  for (guint rcpt = 2; rcpt <= 20; rcpt++)
    {
      next_recipient (NULL);
      ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_DELIVERY, "hung\r\n", NULL),
                        DOVEKIE_VERDICT_TEMPFAIL);
    }
  /* One timeout for the transaction, not twenty. */
  ck_assert_int_lt (g_get_monotonic_time () - start, 1200 * 1000);
  ck_assert_int_eq (g_atomic_int_get (&fake->connections), connections);
  assert_logged ("E antivirus: scan origin=delivery", 1);
  assert_logged ("E antivirus: scan reused origin=delivery", 19);
  /* Each recipient's own dovekie_av_on_error applies to the reused failure. */
  g_hash_table_insert (settings, "dovekie_av_on_error", "accept");
  next_recipient (NULL);
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_DELIVERY, "hung\r\n", NULL),
                    DOVEKIE_VERDICT_ACCEPT);
  assert_logged ("W antivirus: scan reused origin=delivery", 1);
}
END_TEST

START_TEST (test_read_modes)
{
  g_hash_table_insert (settings, "dovekie_av_scan_on_read", "off");
  init_module ();
  ck_assert_int_eq (run_hook (FALSE, DOVEKIE_READ_FETCH, "read me\r\n", NULL), DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->connections), 0);

  g_hash_table_insert (settings, "dovekie_av_scan_on_read", "always");
  ck_assert_int_eq (run_hook (FALSE, DOVEKIE_READ_FETCH, "read me\r\n", NULL), DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (run_hook (FALSE, DOVEKIE_READ_FETCH, "read me\r\n", NULL), DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 2);

  g_hash_table_insert (settings, "dovekie_av_scan_on_read", "unscanned");
  ck_assert_int_eq (run_hook (FALSE, DOVEKIE_READ_POP3, "read me\r\n", NULL), DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 2);
  assert_logged ("scan origin=pop3", 1);
}
END_TEST

/* Issue 16, invariant 2: infected mail found new at a sync with replace
 * (the default) diverts into the quarantine mailbox, naming the signature
 * and with its keyword; a client's read is refused, whatever the read
 * action, and never diverted; refuse rejects at a sync too, and so does
 * any read with dovekie_av_action = tag. */
START_TEST (test_read_actions)
{
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;

  g_hash_table_insert (settings, "dovekie_av_quarantine_mailbox", "Virus");
  init_module ();
  fake->mode = FAKE_FOUND;
  run_hook_verdict (FALSE, DOVEKIE_READ_SYNC, "bad\r\n", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_DIVERT);
  ck_assert_str_eq (verdict.mailbox, "Virus");
  ck_assert_str_eq (verdict.keyword, "$Virus:Fake.Test.Virus");
  ck_assert_ptr_nonnull (strstr (verdict.reason, "Fake.Test.Virus"));
  dovekie_verdict_clear (&verdict);
  assert_logged ("origin=sync", 2); /* the log line and the event */
  for (gint origin = DOVEKIE_READ_FETCH; origin <= DOVEKIE_READ_OTHER; origin++)
    {
      run_hook_verdict (FALSE, origin, "bad\r\n", &verdict);
      ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_REJECT);
      ck_assert_ptr_null (verdict.mailbox);
      ck_assert_ptr_nonnull (strstr (verdict.reason, "Fake.Test.Virus"));
      dovekie_verdict_clear (&verdict);
    }

  g_hash_table_insert (settings, "dovekie_av_read_action", "refuse");
  run_hook_verdict (FALSE, DOVEKIE_READ_SYNC, "bad\r\n", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_REJECT);
  ck_assert_ptr_null (verdict.mailbox);
  ck_assert_ptr_nonnull (strstr (verdict.reason, "Fake.Test.Virus"));
  dovekie_verdict_clear (&verdict);
  assert_logged ("action=refuse", 2 * 4);
  /* Issue 16, invariant 5: with action = tag a read never moves the
   * message, whatever the read action says; it refuses it. */
  g_hash_table_insert (settings, "dovekie_av_read_action", "replace");
  g_hash_table_insert (settings, "dovekie_av_action", "tag");
  run_hook_verdict (FALSE, DOVEKIE_READ_SYNC, "bad\r\n", &verdict);
  ck_assert_int_eq (verdict.kind, DOVEKIE_VERDICT_REJECT);
  ck_assert_ptr_null (verdict.mailbox);
  ck_assert_ptr_nonnull (strstr (verdict.reason, "Fake.Test.Virus"));
  dovekie_verdict_clear (&verdict);
  g_hash_table_insert (settings, "dovekie_av_action", "quarantine");
  /* Saves are refused whatever the read action is. */
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "bad\r\n", NULL),
                    DOVEKIE_VERDICT_REJECT);
}
END_TEST

START_TEST (test_over_size)
{
  static const gchar *const policies[] = { "accept-and-log", "tempfail", "reject" };
  static const DovekieVerdictKind kinds[] = {
    DOVEKIE_VERDICT_ACCEPT, DOVEKIE_VERDICT_TEMPFAIL, DOVEKIE_VERDICT_REJECT,
  };
  g_hash_table_insert (settings, "dovekie_av_max_size", "10");
  init_module ();
  for (guint i = 0; i < G_N_ELEMENTS (policies); i++)
    {
      gchar *reason = NULL;
      g_hash_table_insert (settings, "dovekie_av_over_size", (gpointer) policies[i]);
      ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_DELIVERY, "eleven bytes", &reason), kinds[i]);
      if (kinds[i] != DOVEKIE_VERDICT_ACCEPT)
        ck_assert_str_eq (reason, "Message too large to be scanned for viruses");
      g_free (reason);
    }
  assert_logged ("result=too-big size>10", 3);
  ck_assert_int_eq (g_atomic_int_get (&fake->connections), 0);
  /* Exactly at the limit is scanned. */
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_DELIVERY, "ten bytes!", NULL), DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 1);
}
END_TEST

START_TEST (test_kv_down)
{
  g_clear_pointer (&kv, g_hash_table_unref);
  init_module ();
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "m\r\n", NULL), DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "m\r\n", NULL), DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 2);
  assert_logged ("verdict cache unavailable", 1);
}
END_TEST

START_TEST (test_malformed_cache_record)
{
  init_module ();
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "m\r\n", NULL), DOVEKIE_VERDICT_ACCEPT);
  GList *keys = g_hash_table_get_keys (kv);
  for (GList *k = keys; k != NULL; k = k->next)
    if (g_str_has_prefix (k->data, "v/"))
      g_hash_table_insert (kv, g_strdup (k->data), g_strdup ("1.4.6/27000 infected"));
  g_list_free (keys);
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "m\r\n", NULL), DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (g_atomic_int_get (&fake->scans), 2);
  assert_logged ("ignoring malformed cache record v/", 1);
}
END_TEST

START_TEST (test_message_read_error)
{
  TestSource src = { (const guint8 *) "x", 1, 0, 0, TRUE };
  DovekieMessageInfo info = { "INBOX", 1, 1 };
  DovekieVerdict verdict = DOVEKIE_VERDICT_INIT;
  g_autoptr (GError) error = NULL;

  init_module ();
  ck_assert (!dovekie_module.save (&ctx, DOVEKIE_ORIGIN_APPEND, &info, (DovekieMessage *) &src,
                                   &verdict, &error));
  ck_assert (g_error_matches (error, DOVEKIE_ERROR, DOVEKIE_ERROR_IO));
}
END_TEST

/* Issue "fail closed": a libclamav DB directory that is missing or not a
 * directory was found only at the first scan, every scan then tempfailed
 * and no line named the setting. The module does not start now. */
START_TEST (test_libclamav_db_checked_at_init)
{
  g_autofree gchar *dir = test_make_dir ();
  g_autofree gchar *missing = g_build_filename (dir, "nothing-here", NULL);
  g_autofree gchar *file = g_build_filename (dir, "a-file", NULL);
  const gchar *const bad[][2] = { { missing, "no such directory" }, { file, "not a directory" } };

  ck_assert (g_file_set_contents (file, "x", 1, NULL));
  g_hash_table_insert (settings, "dovekie_av_engine", "libclamav");
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree gchar *want = g_strdup_printf ("dovekie_av_libclamav_db = %s: %s",
                                                bad[i][0], bad[i][1]);
      g_hash_table_insert (settings, "dovekie_av_libclamav_db", (gpointer) bad[i][0]);
      ck_assert (!dovekie_module.init (&ctx, &error));
      ck_assert_ptr_null (ctx.module_data);
      ck_assert_str_eq (error->message, want);
    }
  /* With clamd the directory is not used, so not checked. */
  g_hash_table_insert (settings, "dovekie_av_engine", "clamd");
  init_module ();
  test_remove_dir (dir);
}
END_TEST

START_TEST (test_libclamav_engine)
{
  g_autofree gchar *dir = test_make_dir ();
  gchar *reason = NULL;

  test_av_write_sigs (dir);
  g_hash_table_insert (settings, "dovekie_av_engine", "libclamav");
  g_hash_table_insert (settings, "dovekie_av_libclamav_db", dir);
  init_module ();
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "clean\r\n", NULL), DOVEKIE_VERDICT_ACCEPT);
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "x\r\n" TEST_EICAR "\r\n", &reason),
                    DOVEKIE_VERDICT_REJECT);
  ck_assert_ptr_nonnull (strstr (reason, "Test.Eicar"));
  g_free (reason);
  assert_logged ("libclamav engine ready", 1);
  assert_logged ("engine=libclamav cached=no", 4); /* 2 scans: each logged and emitted */
  ck_assert_int_eq (g_atomic_int_get (&fake->connections), 0);

  /* No DB: tempfail, not a crash. */
  dovekie_av_engine_shutdown ();
  g_hash_table_insert (settings, "dovekie_av_libclamav_db", "/nonexistent");
  ck_assert_int_eq (run_hook (TRUE, DOVEKIE_ORIGIN_APPEND, "other\r\n", NULL),
                    DOVEKIE_VERDICT_TEMPFAIL);
  test_remove_dir (dir);
}
END_TEST

static const DovekieAntivirusService *
av_service (void)
{
  for (guint i = 0; dovekie_module.services[i].name != NULL; i++)
    if (g_str_equal (dovekie_module.services[i].name, DOVEKIE_ANTIVIRUS_SERVICE))
      return dovekie_module.services[i].vtable;
  ck_abort_msg ("no antivirus service");
  return NULL;
}

/* A fake host's mailbox for rescan_mailbox: UIDs 1..n, each its own text
 * (no other box has it), the infected ones with EICAR in it. Moves wait in the batch and happen
 * at its commit, as the Dovecot host's transactions do. */
typedef struct {
  const gchar *name;
  guint n;
  gboolean infected[300];
  gboolean gone[300];      /* expunged: moved, or by someone else */
  guint32 expunged_at_read; /* reads as expunged meanwhile */
  guint32 fail_read;        /* its read fails */
  gboolean fail_commit;     /* batch_end cannot commit */
  GArray *listed;           /* what the last list gave */
  guint32 listed_after;
  gboolean in_batch;
  guint batches, commits, rollbacks;
  GArray *pending;          /* moved in the open batch */
  GArray *quarantined;      /* moves committed */
} FakeBox;

static FakeBox *
fake_box_new (const gchar *name, guint n)
{
  FakeBox *box = g_new0 (FakeBox, 1);

  ck_assert_uint_lt (n, G_N_ELEMENTS (box->gone));
  box->name = name;
  box->n = n;
  box->listed = g_array_new (FALSE, FALSE, sizeof (guint32));
  box->pending = g_array_new (FALSE, FALSE, sizeof (guint32));
  box->quarantined = g_array_new (FALSE, FALSE, sizeof (guint32));
  return box;
}

static void
fake_box_free (FakeBox *box)
{
  g_array_unref (box->listed);
  g_array_unref (box->pending);
  g_array_unref (box->quarantined);
  g_free (box);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (FakeBox, fake_box_free)

static gboolean
fake_list (gpointer data, guint32 after, const guint32 **uids_r, guint *count_r, GError **error)
{
  FakeBox *box = data;

  (void) error;
  ck_assert (!box->in_batch);
  box->listed_after = after;
  g_array_set_size (box->listed, 0);
  for (guint32 uid = after + 1; uid <= box->n; uid++)
    if (!box->gone[uid])
      g_array_append_val (box->listed, uid);
  *uids_r = (const guint32 *) (gpointer) box->listed->data;
  *count_r = box->listed->len;
  return TRUE;
}

static gboolean
fake_batch_begin (gpointer data, GError **error)
{
  FakeBox *box = data;

  (void) error;
  ck_assert (!box->in_batch);
  box->in_batch = TRUE;
  box->batches++;
  return TRUE;
}

static gint
fake_read_uid (gpointer data, guint32 uid, DovekieAntivirusRescanReadFunc func, gpointer func_data,
               GError **error)
{
  FakeBox *box = data;
  g_autofree gchar *text = NULL;
  TestSource src = { NULL, 0, 0, 0, FALSE };
  DovekieMessageInfo info = { box->name, uid, 0 };

  ck_assert (box->in_batch);
  if (box->gone[uid] || uid == box->expunged_at_read)
    return 0;
  if (uid == box->fail_read)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_IO, "cannot read message uid=%u", uid);
      return -1;
    }
  text = box->infected[uid] ? g_strdup_printf ("infected %s %u\r\n%s\r\n", box->name, uid,
                                               TEST_EICAR)
                            : g_strdup_printf ("clean %s %u\r\n", box->name, uid);
  src.data = (const guint8 *) text;
  src.len = strlen (text);
  info.size = (gint64) src.len;
  return func (&info, (DovekieMessage *) &src, func_data, error) ? 1 : -1;
}

static gboolean
fake_move (gpointer data, guint32 uid, const gchar *mailbox, const gchar *keyword, GError **error)
{
  FakeBox *box = data;

  (void) error;
  ck_assert (box->in_batch);
  ck_assert_str_eq (mailbox, "Quarantine");
  ck_assert (g_str_has_prefix (keyword, "$Virus:Test.Eicar"));
  g_array_append_val (box->pending, uid);
  return TRUE;
}

static gboolean
fake_batch_end (gpointer data, gboolean commit, GError **error)
{
  FakeBox *box = data;
  gboolean ok = TRUE;

  ck_assert (box->in_batch);
  box->in_batch = FALSE;
  if (commit && box->fail_commit)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "cannot commit");
      commit = ok = FALSE;
    }
  if (commit)
    {
      box->commits++;
      for (guint i = 0; i < box->pending->len; i++)
        {
          guint32 uid = g_array_index (box->pending, guint32, i);
          box->gone[uid] = TRUE;
          g_array_append_val (box->quarantined, uid);
        }
    }
  else
    box->rollbacks++;
  g_array_set_size (box->pending, 0);
  return ok;
}

static void
fake_rescan_log (gpointer data, DovekieLogLevel level, const gchar *line)
{
  (void) data;
  test_host_log (&host, level, "host", line);
}

static const DovekieAntivirusRescanHost fake_rescan_host = {
  fake_list, fake_batch_begin, fake_read_uid, fake_move, fake_batch_end, fake_rescan_log,
};

/* Rescans `box` as alice's, its key "<name>.1". */
static gboolean
rescan_box (FakeBox *box, gboolean restart, guint64 *budget, DovekieAntivirusRescanCounts *counts,
            GError **error)
{
  g_autofree gchar *key = g_strconcat (box->name, ".1", NULL);
  DovekieAntivirusRescanJob job = {
    "alice", box->name, key, box->n, g_str_equal (box->name, "Quarantine"), restart, budget,
  };

  return av_service ()->rescan_mailbox (&ctx, &fake_rescan_host, box, &job, counts, error);
}

static void
rescan_box_ok (FakeBox *box, gboolean restart, guint64 *budget,
               DovekieAntivirusRescanCounts *counts)
{
  g_autoptr (GError) error = NULL;

  ck_assert_msg (rescan_box (box, restart, budget, counts, &error), "%s",
                 error != NULL ? error->message : "");
  ck_assert (counts->listed);
}

/* The mark of a fake box, as "<version> <uid>" (NULL: none). */
static const gchar *
rescan_mark (const FakeBox *box)
{
  g_autofree gchar *key = g_strconcat ("r/", box->name, ".1", NULL);

  return g_hash_table_lookup (kv, key);
}

/* The module ready for a rescan on the test DB; returns the DB's version. */
static gchar *
rescan_setup (const gchar *dir)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (FakeBox) probe = fake_box_new ("Probe", 1);
  DovekieAntivirusRescanCounts counts;
  const gchar *mark;

  test_av_write_sigs (dir);
  g_hash_table_insert (settings, "dovekie_av_libclamav_db", (gpointer) dir);
  init_module (); /* engine: clamd, the default */
  ck_assert_msg (av_service ()->rescan_begin (&ctx, &error), "%s",
                 error != NULL ? error->message : "");
  /* The version the marks carry: the in-process engine's. */
  rescan_box_ok (probe, FALSE, NULL, &counts);
  mark = rescan_mark (probe);
  ck_assert_ptr_nonnull (mark);
  return g_strndup (mark, (gsize) (strrchr (mark, ' ') - mark));
}

/* The rescan job's service: in-process libclamav even for a clamd user,
 * the verdict cache under that engine's version, the keyword and the
 * marks per mailbox and DB version. */
START_TEST (test_rescan_service)
{
  const DovekieAntivirusService *svc = av_service ();
  g_autofree gchar *dir = test_make_dir ();
  g_autofree gchar *version = NULL;
  g_autofree gchar *extra = g_build_filename (dir, "extra.ndb", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FakeBox) box = fake_box_new ("INBOX", 3);
  DovekieAntivirusRescanCounts counts;

  version = rescan_setup (dir);
  ck_assert_ptr_nonnull (strchr (version, '+'));
  ck_assert_str_eq (svc->quarantine_mailbox (&ctx), "Quarantine");
  ck_assert_uint_eq (svc->sync_max_messages (&ctx), 200);

  box->infected[3] = TRUE;
  rescan_box_ok (box, FALSE, NULL, &counts);
  ck_assert_uint_eq (counts.checked, 3);
  ck_assert_uint_eq (counts.scanned, 3);
  ck_assert_uint_eq (counts.infected, 1);
  ck_assert_uint_eq (counts.moved, 1);
  ck_assert_int_eq (g_atomic_int_get (&fake->connections), 0); /* clamd never asked */
  assert_logged ("scan origin=rescan mailbox=\"INBOX\" uid=", 3);
  /* The host is asked after the mark; none yet. */
  ck_assert_uint_eq (box->listed_after, 0);

  /* With --restart, the cache answers for what this version judged. */
  rescan_box_ok (box, TRUE, NULL, &counts);
  ck_assert_uint_eq (counts.checked, 2); /* uid 3 moved out */
  ck_assert_uint_eq (counts.cached, 2);
  ck_assert_uint_eq (counts.scanned, 0);

  /* A mark of another DB version, or one that cannot be read, is no mark. */
  g_hash_table_replace (kv, g_strdup ("r/INBOX.1"), g_strdup ("1.0.0/1 2"));
  rescan_box_ok (box, FALSE, NULL, &counts);
  ck_assert_uint_eq (counts.resumed_after, 0);
  g_hash_table_replace (kv, g_strdup ("r/INBOX.1"), g_strdup ("no-number-here"));
  rescan_box_ok (box, FALSE, NULL, &counts);
  ck_assert_uint_eq (counts.resumed_after, 0);
  assert_logged ("ignoring malformed rescan mark r/INBOX.1", 1);

  /* A signature update: the cached verdict is not used any more. */
  ck_assert (g_file_set_contents (extra, "Test.New:0:*:61206e657720746872656174\n", -1, NULL));
  g_hash_table_insert (settings, "dovekie_av_db_check_interval", "0");
  ck_assert (svc->rescan_begin (&ctx, &error));
  rescan_box_ok (box, FALSE, NULL, &counts);
  ck_assert_uint_eq (counts.resumed_after, 0);
  ck_assert_uint_eq (counts.scanned, 2);
  g_remove (extra);

  /* No signature DB: the job cannot start. */
  dovekie_av_engine_shutdown ();
  g_hash_table_insert (settings, "dovekie_av_libclamav_db", "/nonexistent");
  ck_assert (!svc->rescan_begin (&ctx, &error));
  ck_assert_ptr_nonnull (strstr (error->message, "/nonexistent"));
  test_remove_dir (dir);
}
END_TEST

/* Batches of DOVEKIE_ANTIVIRUS_RESCAN_BATCH, a mark after each, a resumed
 * run after the mark, --restart from the start. */
START_TEST (test_rescan_batches_and_marks)
{
  g_autofree gchar *dir = test_make_dir ();
  g_autofree gchar *version = rescan_setup (dir);
  g_autofree gchar *mark = NULL;
  g_autofree gchar *start = NULL;
  g_autoptr (FakeBox) box = fake_box_new ("INBOX", 250);
  DovekieAntivirusRescanCounts counts;

  ck_assert_int_eq (DOVEKIE_ANTIVIRUS_RESCAN_BATCH, 100);
  rescan_box_ok (box, FALSE, NULL, &counts);
  ck_assert_uint_eq (box->batches, 3);
  ck_assert_uint_eq (box->commits, 3);
  ck_assert_uint_eq (counts.checked, 250);
  ck_assert (!counts.stopped);
  mark = g_strdup_printf ("%s 250", version);
  ck_assert_str_eq (rescan_mark (box), mark);
  start = g_strdup_printf ("I host: rescan start user=alice mailbox=\"INBOX\" version=%s "
                           "messages=250 after_uid=0 to_check=250", version);
  assert_logged (start, 1);
  assert_logged ("I host: rescan progress user=alice mailbox=\"INBOX\" checked=100/250 infected=0",
                 1);
  assert_logged ("I host: rescan progress user=alice mailbox=\"INBOX\" checked=250/250 infected=0",
                 1);
  assert_logged ("I host: rescan done user=alice mailbox=\"INBOX\" checked=250 scanned=250 "
                 "cached=0 too_big=0 infected=0 moved=0", 1);

  /* Resumed: after the mark. */
  g_free (mark);
  mark = g_strdup_printf ("%s 120", version);
  g_hash_table_replace (kv, g_strdup ("r/INBOX.1"), g_strdup (mark));
  rescan_box_ok (box, FALSE, NULL, &counts);
  ck_assert_uint_eq (box->listed_after, 120);
  ck_assert_uint_eq (counts.resumed_after, 120);
  ck_assert_uint_eq (counts.checked, 130);
  ck_assert_uint_eq (counts.cached, 130);

  /* --restart: from the start, the mark not even read. */
  g_hash_table_replace (kv, g_strdup ("r/INBOX.1"), g_strdup ("not a mark"));
  rescan_box_ok (box, TRUE, NULL, &counts);
  ck_assert_uint_eq (box->listed_after, 0);
  ck_assert_uint_eq (counts.resumed_after, 0);
  ck_assert_uint_eq (counts.checked, 250);
  assert_logged ("ignoring malformed rescan mark", 0);
  test_remove_dir (dir);
}
END_TEST

/* A batch that fails stops the mailbox: its moves are rolled back, the
 * mark stays after the last good batch, and the next run does it again. */
START_TEST (test_rescan_failed_batch)
{
  g_autofree gchar *dir = test_make_dir ();
  g_autofree gchar *version = rescan_setup (dir);
  g_autofree gchar *mark = NULL;
  g_autoptr (FakeBox) box = fake_box_new ("INBOX", 250);
  g_autoptr (GError) error = NULL;
  DovekieAntivirusRescanCounts counts;

  mark = g_strdup_printf ("%s 100", version);
  box->infected[50] = TRUE;
  box->infected[120] = TRUE;
  box->fail_read = 150;
  ck_assert (!rescan_box (box, FALSE, NULL, &counts, &error));
  ck_assert_str_eq (error->message, "cannot read message uid=150");
  ck_assert (counts.listed);
  ck_assert (counts.stopped);
  ck_assert_uint_eq (counts.checked, 149);
  ck_assert_uint_eq (counts.moved, 2); /* asked for; the second rolled back */
  ck_assert_uint_eq (box->commits, 1);
  ck_assert_uint_eq (box->rollbacks, 1);
  ck_assert_uint_eq (box->quarantined->len, 1);
  ck_assert_uint_eq (g_array_index (box->quarantined, guint32, 0), 50);
  ck_assert_str_eq (rescan_mark (box), mark);
  assert_logged ("E host: rescan of \"INBOX\" of alice stopped: cannot read message uid=150", 1);
  assert_logged ("I host: rescan stopped user=alice mailbox=\"INBOX\" checked=149 ", 1);
  assert_logged ("checked=200/250", 0);

  /* A commit that fails: the same. */
  g_clear_error (&error);
  box->fail_read = 0;
  box->fail_commit = TRUE;
  ck_assert (!rescan_box (box, FALSE, NULL, &counts, &error));
  ck_assert_str_eq (error->message, "cannot commit");
  ck_assert_uint_eq (counts.resumed_after, 100);
  ck_assert_str_eq (rescan_mark (box), mark);
  ck_assert_uint_eq (box->quarantined->len, 1);

  /* The next run goes on after the mark. */
  box->fail_commit = FALSE;
  rescan_box_ok (box, FALSE, NULL, &counts);
  ck_assert_uint_eq (counts.resumed_after, 100);
  ck_assert_uint_eq (counts.checked, 150);
  ck_assert_uint_eq (box->quarantined->len, 2);
  ck_assert_uint_eq (g_array_index (box->quarantined, guint32, 1), 120);

  /* A mark that cannot be read: no row, nothing listed. */
  g_clear_error (&error);
  g_clear_pointer (&kv, g_hash_table_unref);
  ck_assert (!rescan_box (box, FALSE, NULL, &counts, &error));
  ck_assert (!counts.listed);
  assert_logged ("E host: rescan: cannot read the mark of \"INBOX\" of alice: kv is down", 1);
  test_remove_dir (dir);
}
END_TEST

/* --max-messages spans mailboxes: what one checks, the next cannot. */
START_TEST (test_rescan_budget)
{
  g_autofree gchar *dir = test_make_dir ();
  g_autofree gchar *version = rescan_setup (dir);
  g_autofree gchar *mark = NULL;
  g_autoptr (FakeBox) first = fake_box_new ("First", 120);
  g_autoptr (FakeBox) second = fake_box_new ("Second", 120);
  g_autoptr (FakeBox) third = fake_box_new ("Third", 5);
  DovekieAntivirusRescanCounts counts;
  guint64 budget = 150;

  /* An expunged message costs nothing. */
  first->expunged_at_read = 7;
  rescan_box_ok (first, FALSE, &budget, &counts);
  ck_assert_uint_eq (counts.checked, 119);
  ck_assert (!counts.stopped);
  ck_assert_uint_eq (budget, 31);
  rescan_box_ok (second, FALSE, &budget, &counts);
  ck_assert_uint_eq (counts.checked, 31);
  ck_assert (counts.stopped);
  ck_assert_uint_eq (budget, 0);
  ck_assert_uint_eq (second->batches, 1);
  mark = g_strdup_printf ("%s 31", version);
  ck_assert_str_eq (rescan_mark (second), mark);
  assert_logged ("I host: rescan stopped user=alice mailbox=\"Second\" checked=31 ", 1);
  /* Nothing left: a row that says so, and no batch. */
  rescan_box_ok (third, FALSE, &budget, &counts);
  ck_assert_uint_eq (counts.checked, 0);
  ck_assert (counts.stopped);
  ck_assert_uint_eq (third->batches, 0);
  ck_assert_ptr_null (rescan_mark (third));
  test_remove_dir (dir);
}
END_TEST

/* Infected mail in the quarantine mailbox stays; elsewhere it moves, with
 * the keyword a quarantined delivery gets. An expunged message is passed
 * over and the mark still moves on. */
START_TEST (test_rescan_quarantine_and_expunged)
{
  g_autofree gchar *dir = test_make_dir ();
  g_autofree gchar *version = rescan_setup (dir);
  g_autofree gchar *mark = NULL;
  g_autoptr (FakeBox) inbox = fake_box_new ("INBOX", 4);
  g_autoptr (FakeBox) quarantine = fake_box_new ("Quarantine", 4);
  DovekieAntivirusRescanCounts counts;

  inbox->infected[2] = quarantine->infected[2] = TRUE;
  inbox->expunged_at_read = 4;
  rescan_box_ok (inbox, FALSE, NULL, &counts);
  ck_assert_uint_eq (counts.checked, 3);
  ck_assert_uint_eq (counts.infected, 1);
  ck_assert_uint_eq (counts.moved, 1);
  ck_assert_uint_eq (inbox->quarantined->len, 1);
  assert_logged ("I host: rescan user=alice mailbox=\"INBOX\" uid=2 signature=Test.Eicar", 1);
  assert_logged ("action=quarantine mailbox=\"Quarantine\"", 1);
  mark = g_strdup_printf ("%s 4", version);
  ck_assert_str_eq (rescan_mark (inbox), mark);

  rescan_box_ok (quarantine, FALSE, NULL, &counts);
  ck_assert_uint_eq (counts.checked, 4);
  ck_assert_uint_eq (counts.infected, 1);
  ck_assert_uint_eq (counts.moved, 0);
  ck_assert_uint_eq (quarantine->quarantined->len, 0);
  assert_logged ("I host: rescan user=alice mailbox=\"Quarantine\" uid=2 signature=Test.Eicar", 1);
  assert_logged ("action=none (already in quarantine)", 1);
  assert_logged ("I host: rescan done user=alice mailbox=\"Quarantine\" checked=4 scanned=4 "
                 "cached=0 too_big=0 infected=1 moved=0", 1);
  test_remove_dir (dir);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("dovekie-antivirus");
  TCase *tc = tcase_create ("antivirus");
  TCase *tc_bound = tcase_create ("cache bound");
  SRunner *runner;
  int failed;

  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_contract);
  tcase_add_test (tc, test_bad_server_list_refuses_module);
  tcase_add_loop_test (tc, test_quarantine_mailbox_not_inbox, 0,
                       G_N_ELEMENTS (quarantine_cases));
  tcase_add_loop_test (tc, test_clamd_list_checked_at_init, 0, G_N_ELEMENTS (clamd_list_cases));
  tcase_add_test (tc, test_libclamav_db_checked_at_init);
  tcase_add_test (tc, test_log_quotes_mailbox);
  tcase_add_test (tc, test_clean_and_infected);
  tcase_add_test (tc, test_clamd_fildes);
  tcase_add_test (tc, test_delivery_actions);
  tcase_add_test (tc, test_status_service);
  tcase_add_test (tc, test_scanner_down);
  tcase_add_test (tc, test_garbage_reply_tempfails);
  tcase_add_test (tc, test_cache_and_db_version);
  tcase_add_test (tc, test_transaction_scanned_once);
  tcase_add_test (tc, test_transaction_hung_clamd);
  tcase_add_test (tc, test_read_modes);
  tcase_add_test (tc, test_read_actions);
  tcase_add_test (tc, test_over_size);
  tcase_add_test (tc, test_kv_down);
  tcase_add_test (tc, test_malformed_cache_record);
  tcase_add_test (tc, test_message_read_error);
  tcase_add_test (tc, test_libclamav_engine);
  tcase_add_test (tc, test_rescan_service);
  tcase_add_test (tc, test_rescan_batches_and_marks);
  tcase_add_test (tc, test_rescan_failed_batch);
  tcase_add_test (tc, test_rescan_budget);
  tcase_add_test (tc, test_rescan_quarantine_and_expunged);
  tcase_set_timeout (tc, 120);
  suite_add_tcase (s, tc);
  tcase_add_checked_fixture (tc_bound, setup, teardown);
  tcase_add_test (tc_bound, test_cache_bound);
  tcase_add_test (tc_bound, test_cache_retired_on_new_version);
  suite_add_tcase (s, tc_bound);
  runner = srunner_create (s);
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
