/* dovekie retention module: POP3 leave-on-server policy.
 *
 * POP3 DELE is kept (hide / ignore) or let through (expunge) by the
 * expunge hook; what a session downloaded and DELEd is recorded only when
 * it ends with QUIT (RFC 1939), through the "retention" service that the
 * host's POP3 code calls. The expiry plan, run by the host at the end of
 * a POP3 session and by doveadm, expunges only downloaded messages whose
 * time is over. State: one fixed-size record per INBOX message and one
 * client table per INBOX in the host's per-message store (see
 * dovekie-retention-record.h for the layout), read and written only
 * through the DovekieRetentionStore a service call brings; the records
 * of older versions (one kv entry per UID) are moved there by `migrate`.
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
/* A client's last QUIT is recorded to this many seconds. */
#define LAST_QUIT_PRECISION 3600
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
  /* The POP3 listing's table (pop3_listing) and this identity's slot in
   * it (-1: none yet); table_bad when it did not parse. */
  DovekieRetentionTable table;
  gint slot;
  gboolean table_bad;
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
  r->slot = -1;
  r->approved = g_hash_table_new (g_direct_hash, g_direct_equal);
  r->restored = g_hash_table_new (g_direct_hash, g_direct_equal);
  ctx->module_data = g_steal_pointer (&r);
  return TRUE;
}

static void
retention_deinit (DovekieContext *ctx)
{
  Retention *r = retention (ctx);

  g_hash_table_unref (r->approved);
  g_hash_table_unref (r->restored);
  g_free (r->identity);
  g_free (r->login_error);
  g_free (r->keyword);
  g_free (r);
  ctx->module_data = NULL;
}

/* ---- records ---- */

/* The table of `store`; FALSE with `error` if it does not parse. */
static gboolean
store_table (DovekieRetentionStore *store, DovekieRetentionTable *table, GError **error)
{
  g_autoptr (GError) local = NULL;

  if (dovekie_retention_table_parse (store->table, table, &local))
    return TRUE;
  g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
               "the retention records cannot be used: %s", local->message);
  return FALSE;
}

/* Writes `record` of `uid` (NULL or empty: drops it). */
static gboolean
store_put (DovekieRetentionStore *store, DovekieRetentionTable *table, guint32 uid,
           const DovekieRetentionRecord *record, gboolean *table_changed, GError **error)
{
  guint8 packed[DOVEKIE_RETENTION_PACKED_SIZE] = { 0 };

  if (record != NULL &&
      !dovekie_retention_record_pack (table, record, packed, table_changed, error))
    return FALSE;
  return store->put (store, uid, packed, error);
}

/* Writes `table` if it differs from what the store holds. */
static gboolean
store_put_table (DovekieRetentionStore *store, const DovekieRetentionTable *table, GError **error)
{
  guint8 bytes[DOVEKIE_RETENTION_TABLE_SIZE];

  dovekie_retention_table_format (table, bytes);
  if (memcmp (bytes, store->table, sizeof (bytes)) == 0)
    return TRUE;
  return store->put_table (store, bytes, error);
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

/* ---- the "retention" service ---- */

static const gchar *
service_hide_keyword (DovekieContext *ctx)
{
  return retention (ctx)->keyword;
}

static void
service_pop3_listing (DovekieContext *ctx, const guint8 *table)
{
  Retention *r = retention (ctx);
  g_autoptr (GError) error = NULL;

  g_hash_table_remove_all (r->restored);
  r->slot = -1;
  r->table_bad = !dovekie_retention_table_parse (table, &r->table, &error);
  if (r->table_bad)
    dovekie_log (ctx, DOVEKIE_LOG_ERROR, "%s; this session hides nothing and "
                 "no message is expired", error->message);
  else if (r->identity != NULL)
    r->slot = dovekie_retention_table_slot (&r->table, r->identity, FALSE);
}

static gboolean
service_pop3_hidden (DovekieContext *ctx, guint32 uid, const guint8 *packed)
{
  Retention *r = retention (ctx);
  guint64 down, del, bit;

  /* The host refuses such a login; should a listing run anyway, it is empty. */
  if (r->identity == NULL)
    return TRUE;
  if (r->table_bad || dovekie_retention_packed_empty (packed))
    return FALSE;
  down = dovekie_retention_packed_downloaded (packed);
  del = dovekie_retention_packed_deleted (packed);
  /* The shared view lists only messages without the hide keyword: one
   * that a view DELEd is listed because the user removed the keyword over
   * IMAP. It is a new message for POP3 from now on; its record is dropped
   * at QUIT (or by the next plan). */
  if (r->policy.view == DOVEKIE_RETENTION_VIEW_SHARED)
    {
      if (del != 0)
        g_hash_table_add (r->restored, GUINT_TO_POINTER (uid));
      return FALSE;
    }
  if (r->slot < 0)
    return FALSE;
  /* As dovekie_retention_hidden, on the slot's bits. */
  bit = G_GUINT64_CONSTANT (1) << r->slot;
  return ((down | del) & bit) != 0;
}

/* A touched message's record, read once from the store (a corrupt one
 * is replaced: this session's actions are what is known of it now). */
static DovekieRetentionRecord *
quit_record (DovekieContext *ctx, DovekieRetentionStore *store, const DovekieRetentionTable *table,
             GHashTable *touched, guint32 uid, GError **error)
{
  g_autoptr (DovekieRetentionRecord) record = NULL;
  g_autoptr (GError) local = NULL;
  guint8 packed[DOVEKIE_RETENTION_PACKED_SIZE];

  record = g_hash_table_lookup (touched, GUINT_TO_POINTER (uid));
  if (record != NULL)
    return g_steal_pointer (&record);
  if (!store->get (store, uid, packed, error))
    return NULL;
  record = g_new0 (DovekieRetentionRecord, 1);
  if (!dovekie_retention_record_unpack (table, packed, record, &local))
    dovekie_log (ctx, DOVEKIE_LOG_WARNING, "uid=%u: %s; replaced by this session's", uid,
                 local->message);
  g_hash_table_insert (touched, GUINT_TO_POINTER (uid), record);
  return g_steal_pointer (&record);
}

static gint
compare_uid (gconstpointer a, gconstpointer b)
{
  guint32 x = *(const guint32 *) a, y = *(const guint32 *) b;

  return x < y ? -1 : x > y;
}

static gboolean
service_pop3_quit (DovekieContext *ctx, DovekieRetentionStore *store,
                   const guint32 *retrieved, guint n_retrieved,
                   const guint32 *deleted, guint n_deleted, GArray *hide_uids, GError **error)
{
  Retention *r = retention (ctx);
  g_autoptr (GHashTable) touched = g_hash_table_new_full (
      g_direct_hash, g_direct_equal, NULL, (GDestroyNotify) dovekie_retention_record_free);
  g_autoptr (GHashTable) dirty = g_hash_table_new (g_direct_hash, g_direct_equal);
  g_autoptr (GArray) dirty_uids = NULL;
  DovekieRetentionTable table;
  gint64 now = ctx->api->now (ctx);
  guint n_downloaded = 0, n_hidden = 0, n_expunged = 0;
  gint slot;
  GHashTableIter iter;
  gpointer key, value;

  if (r->identity == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, r->login_error);
      return FALSE;
    }
  if (!store_table (store, &table, error))
    return FALSE;
  /* A table never written: no record exists, so the floors start here. */
  if (dovekie_retention_table_unwritten (store->table))
    table.flags |= DOVEKIE_RETENTION_TABLE_FLOORS;
  /* Restored by the user (see service_pop3_hidden): history dropped
   * before this session's downloads and DELEs are recorded. */
  g_hash_table_iter_init (&iter, r->restored);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      DovekieRetentionRecord *record =
          quit_record (ctx, store, &table, touched, GPOINTER_TO_UINT (key), error);
      if (record == NULL)
        return FALSE;
      if (dovekie_retention_record_deleted (record))
        {
          dovekie_log (ctx, DOVEKIE_LOG_INFO, "uid=%u: %s was removed over IMAP; "
                       "its POP3 history is dropped and it does not expire",
                       GPOINTER_TO_UINT (key), r->keyword);
          dovekie_retention_record_clear (record);
          g_hash_table_add (dirty, key);
        }
    }
  for (guint i = 0; i < n_retrieved; i++)
    {
      DovekieRetentionRecord *record =
          quit_record (ctx, store, &table, touched, retrieved[i], error);
      DovekieRetentionClient *c;

      if (record == NULL)
        return FALSE;
      c = dovekie_retention_record_client (record, r->identity, TRUE);
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
      DovekieRetentionRecord *record;
      DovekieRetentionClient *c;

      if (dovekie_retention_dele_expunges (&r->policy))
        {
          /* The message goes, and its record with it. */
          n_expunged++;
          continue;
        }
      if (r->policy.dele != DOVEKIE_RETENTION_DELE_HIDE)
        continue;
      record = quit_record (ctx, store, &table, touched, deleted[i], error);
      if (record == NULL)
        return FALSE;
      c = dovekie_retention_record_client (record, r->identity, TRUE);
      if (c != NULL && !c->deleted)
        {
          c->deleted = TRUE;
          g_hash_table_add (dirty, GUINT_TO_POINTER (deleted[i]));
          n_hidden++;
        }
      if (r->policy.view == DOVEKIE_RETENTION_VIEW_SHARED)
        g_array_append_val (hide_uids, deleted[i]);
    }

  /* In UID order, which is the mailbox's order: the Dovecot host keeps
   * a transaction's record updates in an array sorted by sequence, and
   * one inserted before the end moves the rest (in hash order, a QUIT
   * after 60,000 RETRs spent a quarter of its time in memmove). */
  dirty_uids = g_array_sized_new (FALSE, FALSE, sizeof (guint32), g_hash_table_size (dirty));
  g_hash_table_iter_init (&iter, dirty);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      guint32 uid = GPOINTER_TO_UINT (key);

      g_array_append_val (dirty_uids, uid);
    }
  g_array_sort (dirty_uids, compare_uid);
  for (guint i = 0; i < dirty_uids->len; i++)
    {
      guint32 uid = g_array_index (dirty_uids, guint32, i);

      value = g_hash_table_lookup (touched, GUINT_TO_POINTER (uid));
      if (!store_put (store, &table, uid, value, NULL, error))
        return FALSE;
      dovekie_retention_table_cover (&table, dovekie_retention_record_first_download (value),
                                     dovekie_retention_record_deleted (value));
    }
  /* This identity is active: the plan keeps for it what it has not
   * fetched yet. Without a free slot it has no records either. To the
   * hour: a client that polls every minute does not write the index at
   * every QUIT for it. */
  slot = dovekie_retention_table_slot (&table, r->identity, TRUE);
  if (slot >= 0 && (table.last_quit[slot] > now ||
                    now - table.last_quit[slot] >= LAST_QUIT_PRECISION))
    table.last_quit[slot] = MAX (now, 1);
  /* Written when anything in it changed (a new slot, the floors too). */
  if (!store_put_table (store, &table, error))
    return FALSE;
  g_hash_table_remove_all (r->restored);
  /* Counted here, as the host commits what was put with its QUIT. */
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
service_plan (DovekieContext *ctx, DovekieRetentionStore *store,
              const DovekieRetentionMessage *messages, guint n,
              guint64 quota_used, guint64 quota_limit, DovekieRetentionReason *reasons,
              GArray *unhide_uids, DovekieRetentionSummary *summary, GError **error)
{
  Retention *r = retention (ctx);
  g_autofree DovekieRetentionRecord *records = NULL;
  g_autofree const DovekieRetentionRecord **refs = NULL;
  g_autofree gboolean *corrupt = NULL;
  g_autofree gboolean *waiting = NULL;
  DovekieRetentionTable table;
  guint n_restored = 0, n_corrupt = 0;
  gboolean ok = TRUE;
  gint64 now = ctx->api->now (ctx);
  guint64 active;

  g_hash_table_remove_all (r->approved);
  if (summary != NULL)
    memset (summary, 0, sizeof (*summary));
  if (!store_table (store, &table, error))
    return FALSE;
  records = g_new0 (DovekieRetentionRecord, MAX (n, 1));
  refs = g_new0 (const DovekieRetentionRecord *, MAX (n, 1));
  corrupt = g_new0 (gboolean, MAX (n, 1));
  waiting = g_new0 (gboolean, MAX (n, 1));
  /* Clients that ended a session within the retention period. */
  active = r->policy.keep > 0 ? dovekie_retention_table_active (&table, now - r->policy.keep) : 0;
  for (guint i = 0; i < n && ok; i++)
    {
      g_autoptr (GError) local = NULL;
      gboolean deleted;

      if (dovekie_retention_packed_empty (messages[i].packed))
        {
          /* Hidden with no DELE on record (moved out of INBOX and back,
           * or a record lost): never hidden for ever, new for POP3. */
          if (messages[i].hidden)
            g_array_append_val (unhide_uids, messages[i].uid);
          continue;
        }
      if (!dovekie_retention_record_unpack (&table, messages[i].packed, &records[i], &local))
        {
          /* Keep the message for sure: no expiry, no unhiding. */
          dovekie_log (ctx, DOVEKIE_LOG_WARNING, "uid=%u: %s; the message is kept",
                       messages[i].uid, local->message);
          corrupt[i] = TRUE;
          n_corrupt++;
          continue;
        }
      deleted = dovekie_retention_record_deleted (&records[i]);
      /* The user's IMAP action wins: the keyword was cleared, so the
       * message is new for POP3 and its expiry is cancelled. Only the
       * shared view sets the keyword at DELE. */
      if (deleted && !messages[i].hidden && r->policy.view == DOVEKIE_RETENTION_VIEW_SHARED)
        {
          dovekie_log (ctx, DOVEKIE_LOG_INFO, "uid=%u: %s was removed over IMAP; "
                       "its POP3 history is dropped and it does not expire",
                       messages[i].uid, r->keyword);
          ok = store_put (store, &table, messages[i].uid, NULL, NULL, error);
          n_restored++;
          continue;
        }
      if (messages[i].hidden && !deleted)
        g_array_append_val (unhide_uids, messages[i].uid);
      refs[i] = &records[i];
      waiting[i] = (active & ~(dovekie_retention_packed_downloaded (messages[i].packed) |
                               dovekie_retention_packed_deleted (messages[i].packed))) != 0;
      if (summary != NULL)
        {
          summary->records++;
          if (dovekie_retention_record_first_download (&records[i]) > 0)
            summary->downloaded++;
          if (deleted)
            summary->deleted++;
        }
    }
  if (ok)
    {
      dovekie_retention_plan (&r->policy, messages, refs, waiting, n, quota_used, quota_limit,
                              now, reasons);
      /* The floors of what stays, for expire_at_quit. */
      table.flags |= DOVEKIE_RETENTION_TABLE_FLOORS;
      table.floor_downloaded = table.floor_deleted = 0;
      for (guint i = 0; i < n; i++)
        if (refs[i] != NULL && reasons[i] == DOVEKIE_RETENTION_KEEP)
          dovekie_retention_table_cover (&table, dovekie_retention_record_first_download (refs[i]),
                                         dovekie_retention_record_deleted (refs[i]));
      ok = store_put_table (store, &table, error);
    }
  for (guint i = 0; i < n; i++)
    {
      dovekie_retention_record_clear (&records[i]);
      if (!ok)
        continue;
      if (corrupt[i])
        reasons[i] = DOVEKIE_RETENTION_KEEP;
      if (reasons[i] != DOVEKIE_RETENTION_KEEP)
        g_hash_table_insert (r->approved, GUINT_TO_POINTER (messages[i].uid),
                             GUINT_TO_POINTER (reasons[i]));
    }
  if (!ok)
    return FALSE;
  if (summary != NULL)
    summary->corrupt = n_corrupt;
  dovekie_log (ctx, DOVEKIE_LOG_DEBUG, "plan: %u message(s), %u to expunge, %u restored, "
               "%u to unhide, %u unreadable", n, g_hash_table_size (r->approved), n_restored,
               unhide_uids->len, n_corrupt);
  return TRUE;
}

static void
service_done (DovekieContext *ctx, const guint32 *uids, guint n)
{
  Retention *r = retention (ctx);

  for (guint i = 0; i < n; i++)
    {
      gpointer reason;

      if (g_hash_table_lookup_extended (r->approved, GUINT_TO_POINTER (uids[i]), NULL, &reason))
        dovekie_emit (ctx, "dovekie_retention_expunged", "mailbox", "INBOX", "reason",
                      dovekie_retention_reason_name (
                          (DovekieRetentionReason) GPOINTER_TO_UINT (reason)),
                      NULL);
    }
  g_hash_table_remove_all (r->approved);
}

/* The plan at QUIT lists the whole INBOX (save date and size of every
 * message): skip it when the records show that it would expunge nothing.
 * The quota rule, and max_age over all mail, need the listing anyway. */
static gboolean
service_expire_at_quit (DovekieContext *ctx, const guint8 *bytes)
{
  Retention *r = retention (ctx);
  DovekieRetentionTable table;
  gint64 now = ctx->api->now (ctx), floor;

  if (!r->expire_at_quit)
    return FALSE;
  if (r->policy.quota_percent > 0 || (r->policy.max_age > 0 && r->policy.max_age_all))
    return TRUE;
  /* A table that does not parse: pop3_quit failed on it already. Never
   * written: no record. */
  if (!dovekie_retention_table_parse (bytes, &table, NULL) ||
      dovekie_retention_table_unwritten (bytes))
    return FALSE;
  /* No plan has set the floors yet (a new mailbox, or records of an
   * older version): the plan sets them. */
  if ((table.flags & DOVEKIE_RETENTION_TABLE_FLOORS) == 0)
    return TRUE;
  /* max_age goes by the save date, which the table does not know. */
  if (r->policy.max_age > 0)
    return table.floor_downloaded > 0;
  if (r->policy.keep < 0)
    return FALSE;
  /* As dovekie_retention_decide: every downloaded message expires, or
   * only those some view DELEd. */
  floor = r->policy.expire == DOVEKIE_RETENTION_EXPIRE_DOWNLOADED ? table.floor_downloaded
                                                                   : table.floor_deleted;
  return floor > 0 && now >= floor && now - floor >= r->policy.keep;
}

/* ---- migration from the kv records of older versions ---- */

typedef struct {
  DovekieContext *ctx;
  DovekieRetentionStore *store;
  DovekieRetentionTable *table;
  gboolean table_changed;
  GPtrArray *keys;
  guint moved;
  GError *error;
} Migration;

static gboolean
migrate_one (const gchar *key, const gchar *value, gpointer data)
{
  Migration *m = data;
  g_auto (DovekieRetentionRecord) record = { 0 };
  g_autoptr (GError) local = NULL;
  guint32 uid;

  if (!dovekie_retention_key_uid (key, &uid))
    return TRUE; /* not a record: left alone */
  g_ptr_array_add (m->keys, g_strdup (key));
  if (!dovekie_retention_record_parse (value, strlen (value), &record, &local))
    {
      /* It protected nothing it could prove: its message has no record
       * now, so it is listed and never expired by the timer. */
      dovekie_log (m->ctx, DOVEKIE_LOG_WARNING, "uid=%u: old record not migrated: %s",
                   uid, local->message);
      return TRUE;
    }
  if (!store_put (m->store, m->table, uid, &record, &m->table_changed, &m->error))
    return FALSE;
  m->moved++;
  return TRUE;
}

static gboolean
service_migrate (DovekieContext *ctx, DovekieRetentionStore *store, guint *n_r, GError **error)
{
  DovekieRetentionTable table;
  g_autoptr (GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
  Migration m = { ctx, store, &table, FALSE, keys, 0, NULL };
  guint8 bytes[DOVEKIE_RETENTION_TABLE_SIZE];

  *n_r = 0;
  if (!store_table (store, &table, error))
    return FALSE;
  /* All keys: with a prefix, the Dovecot host's iteration (file dict)
   * returned nothing; migrate_one skips what is not a record. */
  if (!ctx->api->kv_foreach (ctx, "", migrate_one, &m, error))
    {
      g_clear_error (&m.error);
      return FALSE;
    }
  if (m.error != NULL)
    {
      g_propagate_error (error, m.error);
      return FALSE;
    }
  /* The moved records keep their download times: the next plan sets the
   * floors over them. Nothing moved: the floors stay what they were, and
   * a table never written has no record, so its floors are known (else
   * every new mailbox's first QUIT on Dovecot 2.3, where this runs at
   * every open until marked, would make a plan for nothing). */
  if (m.moved > 0)
    {
      table.flags &= ~DOVEKIE_RETENTION_TABLE_FLOORS;
      table.floor_downloaded = table.floor_deleted = 0;
    }
  else if (dovekie_retention_table_unwritten (store->table))
    table.flags |= DOVEKIE_RETENTION_TABLE_FLOORS;
  table.flags |= DOVEKIE_RETENTION_TABLE_MIGRATED;
  dovekie_retention_table_format (&table, bytes);
  if (!store->put_table (store, bytes, error))
    return FALSE;
  for (guint i = 0; i < keys->len; i++)
    if (!ctx->api->kv_set (ctx, g_ptr_array_index (keys, i), NULL, error))
      return FALSE;
  *n_r = m.moved;
  if (keys->len > 0)
    dovekie_log (ctx, DOVEKIE_LOG_INFO, "moved %u record(s) of %u old kv entries into the "
                 "mailbox index", m.moved, keys->len);
  return TRUE;
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

const DovekieRetentionService dovekie_retention_service = {
  .hide_keyword = service_hide_keyword,
  .pop3_listing = service_pop3_listing,
  .pop3_hidden = service_pop3_hidden,
  .pop3_quit = service_pop3_quit,
  .plan = service_plan,
  .done = service_done,
  .expire_at_quit = service_expire_at_quit,
  .migrate = service_migrate,
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
  .pop3_start = NULL,
  .pop3_end = NULL,
};

