/* dovekie retention module: POP3 leave-on-server policy.
 *
 * POP3 DELE is kept (hide / ignore) or let through (expunge) by the
 * expunge hook; what a session downloaded and DELEd is recorded only when
 * it ends with QUIT (RFC 1939), through the "retention" service that the
 * host's POP3 code calls. The expiry plan, run by the host at the end of
 * a POP3 session and by doveadm, expunges only downloaded messages whose
 * time is over. State: one record per INBOX UID in the host's per-user kv
 * store (see dovekie-retention-record.h for its grammar).
 *
 * Counters, as host events (dovekie_emit), one per message:
 *   dovekie_retention_downloaded  mailbox          first download by this identity
 *   dovekie_retention_hidden      mailbox, view    first DELE by this identity, kept
 *   dovekie_retention_expunged    mailbox, reason  expired, max-age or quota (the
 *                                                  expiry run), or dele (a DELE
 *                                                  that really expunged)
 */
#include "dovekie-config.h"

#include <string.h>

#include <gmodule.h>

#include "dovekie/module.h"
#include "dovekie/log-quote.h"
#include "dovekie/retention.h"
#include "dovekie-retention.h"
#include "dovekie-retention-policy.h"
#include "dovekie-retention-record.h"

#define KEY_PREFIX "uid/"
#define KEYWORD_MAX 64

static const gchar *const dele_choices[] = { "hide", "expunge", "ignore", NULL };
static const gchar *const view_choices[] = { "shared", "per-client", NULL };
static const gchar *const expire_choices[] = { "deleted", "downloaded", NULL };
static const gchar *const scope_choices[] = { "downloaded", "all", NULL };

static const DovekieSettingDef retention_settings[] = {
  { "dovekie_retention_days", DOVEKIE_SETTING_STRING, "30", 0, 16, NULL,
    "days a POP3-downloaded message stays after its first download; 0: DELE deletes; never" },
  { "dovekie_retention_dele", DOVEKIE_SETTING_ENUM, "hide", 0, 0, dele_choices,
    "POP3 DELE: hide (keep for IMAP), expunge (classic POP3) or ignore" },
  { "dovekie_retention_view", DOVEKIE_SETTING_ENUM, "shared", 0, 0, view_choices,
    "shared: one POP3 view; per-client: one view per login-name suffix" },
  { "dovekie_retention_separator", DOVEKIE_SETTING_STRING, "#", 0, 1, NULL,
    "character between user and client identity in a POP3 login name (alice#laptop)" },
  { "dovekie_retention_login", DOVEKIE_SETTING_STRING, "", 0, 512, NULL,
    "the login name as the client typed it; set it from userdb as %{orig_user}" },
  { "dovekie_retention_expire", DOVEKIE_SETTING_ENUM, "deleted", 0, 0, expire_choices,
    "which downloaded messages expire: deleted (DELEd by a client) or downloaded (all)" },
  { "dovekie_retention_max_age", DOVEKIE_SETTING_UINT, "0", 0, DOVEKIE_RETENTION_DAYS_MAX, NULL,
    "expunge downloaded messages older than this many days since delivery; 0: off" },
  { "dovekie_retention_max_age_scope", DOVEKIE_SETTING_ENUM, "downloaded", 0, 0, scope_choices,
    "max_age applies to downloaded messages only, or to all messages" },
  { "dovekie_retention_quota_percent", DOVEKIE_SETTING_UINT, "0", 0, 100, NULL,
    "above this % of quota, expunge downloaded messages oldest first; 0: off" },
  { "dovekie_retention_keyword", DOVEKIE_SETTING_STRING, "$PopHidden", 0, KEYWORD_MAX, NULL,
    "IMAP keyword of messages hidden from POP3 (the session's pop3_deleted_flag)" },
  { "dovekie_retention_expire_at_quit", DOVEKIE_SETTING_BOOL, "yes", 0, 0, NULL,
    "run the expiry check at the end of each POP3 session (QUIT)" },
  { NULL, 0, NULL, 0, 0, NULL, NULL },
};

typedef struct {
  DovekieRetentionPolicy policy;
  gchar *identity;       /* NULL when the login's client name is not valid */
  gchar *login_error;    /* why, then */
  gchar *keyword;
  gboolean expire_at_quit;
  gboolean loaded;
  GHashTable *records;  /* uid -> DovekieRetentionRecord* */
  GHashTable *corrupt;  /* uids whose record did not parse: never expunged */
  GHashTable *approved; /* uid -> reason, of the current plan: may be expunged */
  GHashTable *restored; /* uids this POP3 listing showed although DELEd (shared view) */
} Retention;

gchar *
dovekie_retention_key (guint32 uid)
{
  return g_strdup_printf (KEY_PREFIX "%u", uid);
}

gboolean
dovekie_retention_key_uid (const gchar *key, guint32 *uid_r)
{
  guint64 uid;
  const gchar *digits;

  if (!g_str_has_prefix (key, KEY_PREFIX))
    return FALSE;
  digits = key + strlen (KEY_PREFIX);
  /* Exactly what dovekie_retention_key writes: no sign, no leading zero. */
  if (*digits == '0' || strlen (digits) > 10 ||
      !g_ascii_string_to_unsigned (digits, 10, 1, G_MAXUINT32, &uid, NULL))
    return FALSE;
  *uid_r = (guint32) uid;
  return TRUE;
}

static Retention *
retention (DovekieContext *ctx)
{
  return ctx->module_data;
}

const gchar *
dovekie_retention_current_identity (DovekieContext *ctx)
{
  return retention (ctx)->identity;
}

static gboolean
keyword_valid (const gchar *keyword)
{
  /* An IMAP atom without the flag prefix '\'. */
  if (keyword == NULL || *keyword == '\0' || *keyword == '\\')
    return FALSE;
  for (const gchar *p = keyword; *p != '\0'; p++)
    if ((guchar) *p <= 0x20 || (guchar) *p >= 0x7f || strchr ("(){%*\"\\]", *p) != NULL)
      return FALSE;
  return TRUE;
}

static gboolean
retention_init (DovekieContext *ctx, GError **error)
{
  const DovekieHostApi *api = ctx->api;
  g_autofree Retention *r = g_new0 (Retention, 1);
  const gchar *separator = api->get_string (ctx, "dovekie_retention_separator");
  const gchar *keyword = api->get_string (ctx, "dovekie_retention_keyword");

  if (!dovekie_retention_parse_days (api->get_string (ctx, "dovekie_retention_days"),
                                     &r->policy.keep, error))
    return FALSE;
  r->policy.dele = g_str_equal (api->get_string (ctx, "dovekie_retention_dele"), "hide")
                       ? DOVEKIE_RETENTION_DELE_HIDE
                   : g_str_equal (api->get_string (ctx, "dovekie_retention_dele"), "expunge")
                       ? DOVEKIE_RETENTION_DELE_EXPUNGE
                       : DOVEKIE_RETENTION_DELE_IGNORE;
  r->policy.view = g_str_equal (api->get_string (ctx, "dovekie_retention_view"), "per-client")
                       ? DOVEKIE_RETENTION_VIEW_PER_CLIENT
                       : DOVEKIE_RETENTION_VIEW_SHARED;
  r->policy.expire = g_str_equal (api->get_string (ctx, "dovekie_retention_expire"), "downloaded")
                         ? DOVEKIE_RETENTION_EXPIRE_DOWNLOADED
                         : DOVEKIE_RETENTION_EXPIRE_DELETED;
  r->policy.max_age = (gint64) api->get_uint (ctx, "dovekie_retention_max_age") * DOVEKIE_RETENTION_DAY;
  r->policy.max_age_all = g_str_equal (api->get_string (ctx, "dovekie_retention_max_age_scope"), "all");
  r->policy.quota_percent = (guint) api->get_uint (ctx, "dovekie_retention_quota_percent");
  r->expire_at_quit = api->get_bool (ctx, "dovekie_retention_expire_at_quit");

  if (separator == NULL || strlen (separator) != 1 || g_ascii_isalnum (separator[0]))
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                   "dovekie_retention_separator: '%s' must be one character that is not a letter or digit",
                   separator != NULL ? separator : "");
      return FALSE;
    }
  if (!keyword_valid (keyword))
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                   "dovekie_retention_keyword: '%s' is not a valid IMAP keyword",
                   keyword != NULL ? keyword : "");
      return FALSE;
    }
  r->keyword = g_strdup (keyword);
  {
    g_autoptr (GError) local = NULL;
    /* Not a failed module: IMAP and doveadm do not use the identity. The
     * host refuses this login for POP3 (login_error). */
    if (!dovekie_retention_identity (&r->policy, api->get_string (ctx, "dovekie_retention_login"),
                                     separator[0], &r->identity, &local))
      r->login_error = g_strdup (local->message);
  }
  r->records = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                      (GDestroyNotify) dovekie_retention_record_free);
  r->corrupt = g_hash_table_new (g_direct_hash, g_direct_equal);
  r->approved = g_hash_table_new (g_direct_hash, g_direct_equal);
  r->restored = g_hash_table_new (g_direct_hash, g_direct_equal);
  ctx->module_data = g_steal_pointer (&r);
  return TRUE;
}

static void
retention_deinit (DovekieContext *ctx)
{
  Retention *r = retention (ctx);

  g_hash_table_unref (r->records);
  g_hash_table_unref (r->corrupt);
  g_hash_table_unref (r->approved);
  g_hash_table_unref (r->restored);
  g_free (r->identity);
  g_free (r->login_error);
  g_free (r->keyword);
  g_free (r);
  ctx->module_data = NULL;
}

/* ---- state ---- */

typedef struct {
  DovekieContext *ctx;
  Retention *r;
} LoadData;

static gboolean
load_one (const gchar *key, const gchar *value, gpointer data)
{
  LoadData *ld = data;
  g_autoptr (DovekieRetentionRecord) record = g_new0 (DovekieRetentionRecord, 1);
  g_autoptr (GError) error = NULL;
  guint32 uid;

  if (!dovekie_retention_key_uid (key, &uid))
    {
      g_autofree gchar *quoted = dovekie_log_quote (key);
      dovekie_log (ld->ctx, DOVEKIE_LOG_WARNING, "ignoring state key %s", quoted);
      return TRUE;
    }
  if (!dovekie_retention_record_parse (value, strlen (value), record, &error))
    {
      /* Keep the message for sure: no expiry, no hiding. */
      dovekie_log (ld->ctx, DOVEKIE_LOG_WARNING, "uid=%u: %s; the message is kept", uid,
                   error->message);
      g_hash_table_add (ld->r->corrupt, GUINT_TO_POINTER (uid));
      return TRUE;
    }
  g_hash_table_insert (ld->r->records, GUINT_TO_POINTER (uid), g_steal_pointer (&record));
  return TRUE;
}

static gboolean
ensure_loaded (DovekieContext *ctx, GError **error)
{
  Retention *r = retention (ctx);
  LoadData ld = { ctx, r };

  if (r->loaded)
    return TRUE;
  g_hash_table_remove_all (r->records);
  g_hash_table_remove_all (r->corrupt);
  /* All keys, not KEY_PREFIX: with a prefix, the Dovecot host's
   * iteration (file dict) returned nothing in our tests; every key of this
   * module is a record key anyway, and load_one checks each one. */
  if (!ctx->api->kv_foreach (ctx, "", load_one, &ld, error))
    {
      g_hash_table_remove_all (r->records);
      g_hash_table_remove_all (r->corrupt);
      return FALSE;
    }
  r->loaded = TRUE;
  return TRUE;
}

static gboolean
store (DovekieContext *ctx, guint32 uid, const DovekieRetentionRecord *record, GError **error)
{
  g_autofree gchar *key = dovekie_retention_key (uid);
  g_autofree gchar *value = NULL;

  if (record != NULL && record->n_clients > 0)
    value = dovekie_retention_record_format (record);
  return ctx->api->kv_set (ctx, key, value, error);
}

static DovekieRetentionRecord *
record_for (Retention *r, guint32 uid)
{
  DovekieRetentionRecord *record = g_hash_table_lookup (r->records, GUINT_TO_POINTER (uid));

  if (record == NULL)
    {
      record = g_new0 (DovekieRetentionRecord, 1);
      g_hash_table_insert (r->records, GUINT_TO_POINTER (uid), record);
    }
  return record;
}

/* ---- hooks ---- */

static DovekieExpungeAction
retention_expunge (DovekieContext *ctx, const DovekieMessageInfo *info, gboolean pop3)
{
  Retention *r = retention (ctx);

  if (g_str_equal (info->mailbox, "INBOX") &&
      g_hash_table_contains (r->approved, GUINT_TO_POINTER (info->uid)))
    return DOVEKIE_EXPUNGE_ALLOW;
  /* IMAP, doveadm and other expunges are the user's or the admin's own. */
  if (!pop3 || dovekie_retention_dele_expunges (&r->policy))
    return DOVEKIE_EXPUNGE_ALLOW;
  dovekie_log (ctx, DOVEKIE_LOG_DEBUG, "DELE of uid=%u kept (%s)", info->uid,
               r->policy.dele == DOVEKIE_RETENTION_DELE_HIDE ? "hide" : "ignore");
  return DOVEKIE_EXPUNGE_KEEP;
}

static void
retention_pop3_start (DovekieContext *ctx, const DovekiePop3Info *info)
{
  Retention *r = retention (ctx);
  g_autoptr (GError) error = NULL;

  (void) info;
  /* Re-read: another session may have changed the state since. */
  r->loaded = FALSE;
  g_hash_table_remove_all (r->restored);
  if (!ensure_loaded (ctx, &error))
    dovekie_log (ctx, DOVEKIE_LOG_ERROR, "cannot read the retention state: %s; "
                 "this session hides nothing", error->message);
}

/* ---- the "retention" service ---- */

static const gchar *
service_hide_keyword (DovekieContext *ctx)
{
  return retention (ctx)->keyword;
}

static gboolean
service_pop3_hidden (DovekieContext *ctx, guint32 uid)
{
  Retention *r = retention (ctx);
  const DovekieRetentionRecord *record;

  /* The host refuses such a login; should a listing run anyway, it is empty. */
  if (r->identity == NULL)
    return TRUE;
  if (!r->loaded)
    return FALSE;
  record = g_hash_table_lookup (r->records, GUINT_TO_POINTER (uid));
  /* The shared view lists only messages without the hide keyword: one
   * that a view DELEd is listed because the user removed the keyword over
   * IMAP. It is a new message for POP3 from now on; its record is dropped
   * at QUIT (or by the next plan). */
  if (r->policy.view == DOVEKIE_RETENTION_VIEW_SHARED && record != NULL &&
      dovekie_retention_record_deleted (record))
    g_hash_table_add (r->restored, GUINT_TO_POINTER (uid));
  return dovekie_retention_hidden (&r->policy, record, r->identity);
}

static gboolean
service_pop3_quit (DovekieContext *ctx, const guint32 *retrieved, guint n_retrieved,
                   const guint32 *deleted, guint n_deleted, GArray *hide_uids, GError **error)
{
  Retention *r = retention (ctx);
  g_autoptr (GHashTable) dirty = g_hash_table_new (g_direct_hash, g_direct_equal);
  gint64 now = ctx->api->now (ctx);
  guint n_downloaded = 0, n_hidden = 0, n_expunged = 0;
  GHashTableIter iter;
  gpointer key;

  if (r->identity == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, r->login_error);
      return FALSE;
    }
  if (!ensure_loaded (ctx, error))
    return FALSE;
  /* Restored by the user (see service_pop3_hidden): history dropped
   * before this session's downloads and DELEs are recorded. */
  g_hash_table_iter_init (&iter, r->restored);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      if (g_hash_table_remove (r->records, key))
        {
          dovekie_log (ctx, DOVEKIE_LOG_INFO, "uid=%u: %s was removed over IMAP; "
                       "its POP3 history is dropped and it does not expire",
                       GPOINTER_TO_UINT (key), r->keyword);
          g_hash_table_add (dirty, key);
        }
    }
  g_hash_table_remove_all (r->restored);
  for (guint i = 0; i < n_retrieved; i++)
    {
      DovekieRetentionClient *c = dovekie_retention_record_client (
          record_for (r, retrieved[i]), r->identity, TRUE);
      if (c == NULL)
        {
          g_autofree gchar *client = dovekie_log_quote (r->identity);
          dovekie_log (ctx, DOVEKIE_LOG_WARNING, "uid=%u: too many client identities; "
                       "download by client=%s not recorded", retrieved[i], client);
          continue;
        }
      if (c->downloaded == 0)
        {
          c->downloaded = MAX (now, 1);
          g_hash_table_add (dirty, GUINT_TO_POINTER (retrieved[i]));
          n_downloaded++;
        }
    }
  for (guint i = 0; i < n_deleted; i++)
    {
      DovekieRetentionClient *c;

      if (dovekie_retention_dele_expunges (&r->policy))
        {
          /* The message is gone; so is its record. */
          g_hash_table_remove (r->records, GUINT_TO_POINTER (deleted[i]));
          g_hash_table_add (dirty, GUINT_TO_POINTER (deleted[i]));
          n_expunged++;
          continue;
        }
      if (r->policy.dele != DOVEKIE_RETENTION_DELE_HIDE)
        continue;
      c = dovekie_retention_record_client (record_for (r, deleted[i]), r->identity, TRUE);
      if (c != NULL && !c->deleted)
        {
          c->deleted = TRUE;
          g_hash_table_add (dirty, GUINT_TO_POINTER (deleted[i]));
          n_hidden++;
        }
      if (r->policy.view == DOVEKIE_RETENTION_VIEW_SHARED)
        g_array_append_val (hide_uids, deleted[i]);
    }

  g_hash_table_iter_init (&iter, dirty);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      guint32 uid = GPOINTER_TO_UINT (key);
      if (!store (ctx, uid, g_hash_table_lookup (r->records, key), error))
        {
          /* What is in memory may now differ from what is stored. */
          r->loaded = FALSE;
          return FALSE;
        }
      g_hash_table_remove (r->corrupt, key);
    }
  /* Counted once the state is stored. */
  for (guint i = 0; i < n_downloaded; i++)
    dovekie_emit (ctx, "dovekie_retention_downloaded", "mailbox", "INBOX", NULL);
  for (guint i = 0; i < n_hidden; i++)
    dovekie_emit (ctx, "dovekie_retention_hidden", "mailbox", "INBOX", "view",
                  r->policy.view == DOVEKIE_RETENTION_VIEW_SHARED ? "shared" : "per-client",
                  NULL);
  for (guint i = 0; i < n_expunged; i++)
    dovekie_emit (ctx, "dovekie_retention_expunged", "mailbox", "INBOX", "reason", "dele", NULL);
  return TRUE;
}

static gboolean
service_plan (DovekieContext *ctx, const DovekieRetentionMessage *messages, guint n,
              guint64 quota_used, guint64 quota_limit, DovekieRetentionReason *reasons,
              GArray *unhide_uids, GError **error)
{
  Retention *r = retention (ctx);
  g_autofree const DovekieRetentionRecord **records = NULL;
  guint n_restored = 0;
  g_autoptr (GHashTable) present = g_hash_table_new (g_direct_hash, g_direct_equal);
  g_autoptr (GPtrArray) stale = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;

  g_hash_table_remove_all (r->approved);
  r->loaded = FALSE;
  if (!ensure_loaded (ctx, error))
    return FALSE;
  records = g_new0 (const DovekieRetentionRecord *, MAX (n, 1));
  for (guint i = 0; i < n; i++)
    {
      gpointer uid = GUINT_TO_POINTER (messages[i].uid);
      gboolean deleted;

      records[i] = g_hash_table_lookup (r->records, uid);
      deleted = records[i] != NULL && dovekie_retention_record_deleted (records[i]);
      /* The user's IMAP action wins: the keyword was cleared, so the
       * message is new for POP3 and its expiry is cancelled. Only the
       * shared view sets the keyword at DELE. Dropped below, as the
       * record of a vanished message is. */
      if (deleted && !messages[i].hidden && r->policy.view == DOVEKIE_RETENTION_VIEW_SHARED)
        {
          dovekie_log (ctx, DOVEKIE_LOG_INFO, "uid=%u: %s was removed over IMAP; "
                       "its POP3 history is dropped and it does not expire",
                       messages[i].uid, r->keyword);
          records[i] = NULL;
          n_restored++;
          continue;
        }
      /* Hidden with no DELE on record (moved out of INBOX and back, or a
       * record lost): never hidden for ever, a new message for POP3. */
      if (messages[i].hidden && !deleted && !g_hash_table_contains (r->corrupt, uid))
        g_array_append_val (unhide_uids, messages[i].uid);
      g_hash_table_add (present, uid);
    }
  dovekie_retention_plan (&r->policy, messages, (const DovekieRetentionRecord *const *) records,
                          n, quota_used, quota_limit, ctx->api->now (ctx), reasons);
  for (guint i = 0; i < n; i++)
    {
      if (g_hash_table_contains (r->corrupt, GUINT_TO_POINTER (messages[i].uid)))
        reasons[i] = DOVEKIE_RETENTION_KEEP;
      if (reasons[i] != DOVEKIE_RETENTION_KEEP)
        g_hash_table_insert (r->approved, GUINT_TO_POINTER (messages[i].uid),
                             GUINT_TO_POINTER (reasons[i]));
    }

  dovekie_log (ctx, DOVEKIE_LOG_DEBUG, "plan: %u message(s), %u record(s), %u to expunge, "
               "%u restored, %u to unhide", n, g_hash_table_size (r->records),
               g_hash_table_size (r->approved), n_restored, unhide_uids->len);
  /* Records of messages that are gone (expunged over IMAP, say) or that
   * the user restored. */
  g_hash_table_iter_init (&iter, r->records);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (!g_hash_table_contains (present, key))
      g_ptr_array_add (stale, key);
  for (guint i = 0; i < stale->len; i++)
    {
      g_autoptr (GError) local = NULL;
      guint32 uid = GPOINTER_TO_UINT (g_ptr_array_index (stale, i));
      if (store (ctx, uid, NULL, &local))
        g_hash_table_remove (r->records, g_ptr_array_index (stale, i));
      else
        dovekie_log (ctx, DOVEKIE_LOG_WARNING, "cannot drop the record of uid=%u: %s", uid,
                     local->message);
    }
  return TRUE;
}

static void
service_done (DovekieContext *ctx, const guint32 *uids, guint n)
{
  Retention *r = retention (ctx);

  for (guint i = 0; i < n; i++)
    {
      g_autoptr (GError) error = NULL;
      gpointer reason;

      if (g_hash_table_lookup_extended (r->approved, GUINT_TO_POINTER (uids[i]), NULL, &reason))
        dovekie_emit (ctx, "dovekie_retention_expunged", "mailbox", "INBOX", "reason",
                      dovekie_retention_reason_name (
                          (DovekieRetentionReason) GPOINTER_TO_UINT (reason)),
                      NULL);
      if (!store (ctx, uids[i], NULL, &error))
        dovekie_log (ctx, DOVEKIE_LOG_WARNING, "cannot drop the record of uid=%u: %s", uids[i],
                     error->message);
      g_hash_table_remove (r->records, GUINT_TO_POINTER (uids[i]));
    }
  g_hash_table_remove_all (r->approved);
}

/* The plan at QUIT lists the whole INBOX (save date and size of every
 * message): skip it when the records alone show that it would expunge
 * nothing. With max_age off, dovekie_retention_decide does not depend on
 * the save date, so the answer is exact; otherwise any downloaded message
 * may be due. The quota rule needs a listing too. */
static gboolean
service_expire_at_quit (DovekieContext *ctx)
{
  Retention *r = retention (ctx);
  gint64 now;
  GHashTableIter iter;
  gpointer value;

  if (!r->expire_at_quit)
    return FALSE;
  if (!r->loaded || r->policy.quota_percent > 0 ||
      (r->policy.max_age > 0 && r->policy.max_age_all))
    return TRUE;
  now = ctx->api->now (ctx);
  g_hash_table_iter_init (&iter, r->records);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      const DovekieRetentionRecord *record = value;
      if (r->policy.max_age > 0 && dovekie_retention_record_first_download (record) > 0)
        return TRUE;
      if (dovekie_retention_decide (&r->policy, record, -1, now) != DOVEKIE_RETENTION_KEEP)
        return TRUE;
    }
  return FALSE;
}

static const gchar *
service_login_error (DovekieContext *ctx)
{
  return retention (ctx)->login_error;
}

static gboolean
service_dele_ignored (DovekieContext *ctx)
{
  return dovekie_retention_dele_ignored (&retention (ctx)->policy);
}

static gboolean
service_summary (DovekieContext *ctx, DovekieRetentionSummary *summary, GError **error)
{
  Retention *r = retention (ctx);
  GHashTableIter iter;
  gpointer value;

  memset (summary, 0, sizeof (*summary));
  r->loaded = FALSE;
  if (!ensure_loaded (ctx, error))
    return FALSE;
  g_hash_table_iter_init (&iter, r->records);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      const DovekieRetentionRecord *record = value;
      summary->records++;
      if (dovekie_retention_record_first_download (record) > 0)
        summary->downloaded++;
      if (dovekie_retention_record_deleted (record))
        summary->deleted++;
    }
  summary->corrupt = g_hash_table_size (r->corrupt);
  return TRUE;
}

const DovekieRetentionService dovekie_retention_service = {
  .hide_keyword = service_hide_keyword,
  .pop3_hidden = service_pop3_hidden,
  .pop3_quit = service_pop3_quit,
  .plan = service_plan,
  .done = service_done,
  .expire_at_quit = service_expire_at_quit,
  .summary = service_summary,
  .login_error = service_login_error,
  .dele_ignored = service_dele_ignored,
};

static const DovekieService retention_services[] = {
  { DOVEKIE_RETENTION_SERVICE, &dovekie_retention_service },
  { NULL, NULL },
};

G_MODULE_EXPORT const DovekieModule dovekie_module = {
  .abi = DOVEKIE_MODULE_ABI,
  .name = "retention",
  .version = PACKAGE_VERSION,
  .description = "POP3 leave-on-server policy: DELE hides, per-client views, expiry",
  .settings = retention_settings,
  .services = retention_services,
  .init = retention_init,
  .deinit = retention_deinit,
  .save = NULL,
  .read = NULL,
  .expunge = retention_expunge,
  .pop3_start = retention_pop3_start,
  .pop3_end = NULL,
};

