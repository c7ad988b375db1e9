/* GLib side of the retention service: plain C in, the module's vtable out. */
#include "dovekie-config.h"

#include <string.h>

#include "dovekie/loader.h"
#include "dovekie/retention.h"
#include "dovekie-bridge-private.h"
#include "dovekie-retention.h"

G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_RETENTION_QUOTA == (gint) DOVEKIE_RETENTION_QUOTA);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_RETENTION_MAX_AGE == (gint) DOVEKIE_RETENTION_MAX_AGE);
G_STATIC_ASSERT (DOVEKIE_BRIDGE_RETENTION_PACKED_SIZE == DOVEKIE_RETENTION_PACKED_SIZE);
G_STATIC_ASSERT (DOVEKIE_BRIDGE_RETENTION_TABLE_SIZE == DOVEKIE_RETENTION_TABLE_SIZE);
/* The host writes the table in 4-byte words (dovekie-retention-index.c). */
G_STATIC_ASSERT (DOVEKIE_RETENTION_TABLE_SIZE % 4 == 0);

/* The module's store over the host's: errors become GErrors. */
typedef struct {
  DovekieRetentionStore store;
  struct dovekie_bridge_retention_store *host;
} BridgeStore;

static gboolean
store_error (const char *why, GError **error)
{
  g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                       why != NULL ? why : "unknown error");
  return FALSE;
}

static gboolean
bridge_store_get (DovekieRetentionStore *store, guint32 uid, guint8 *packed, GError **error)
{
  BridgeStore *bs = (BridgeStore *) store;
  const char *why = NULL;

  return bs->host->get (bs->host, uid, packed, &why) == 0 || store_error (why, error);
}

static gboolean
bridge_store_put (DovekieRetentionStore *store, guint32 uid, const guint8 *packed, GError **error)
{
  BridgeStore *bs = (BridgeStore *) store;
  const char *why = NULL;

  return bs->host->put (bs->host, uid, packed, &why) == 0 || store_error (why, error);
}

static gboolean
bridge_store_put_table (DovekieRetentionStore *store, const guint8 *table, GError **error)
{
  BridgeStore *bs = (BridgeStore *) store;
  const char *why = NULL;

  if (bs->host->put_table (bs->host, table, &why) < 0)
    return store_error (why, error);
  /* Later calls in the same transaction see it. */
  bs->store.table = bs->host->table;
  return TRUE;
}

static void
bridge_store_init (BridgeStore *bs, struct dovekie_bridge_retention_store *host)
{
  bs->host = host;
  bs->store.table = host->table;
  bs->store.get = bridge_store_get;
  bs->store.put = bridge_store_put;
  bs->store.put_table = bridge_store_put_table;
}

static int
fail (GError *error, const char **error_r)
{
  return dovekie_bridge_fail (error, "unknown error", error_r);
}

static const DovekieRetentionService *
retention_service (struct dovekie_bridge *bridge, DovekieContext **ctx_r)
{
  DovekieLoader *loader = bridge != NULL ? dovekie_bridge_get_loader (bridge) : NULL;

  *ctx_r = NULL;
  if (loader == NULL)
    return NULL;
  return dovekie_loader_service (loader, DOVEKIE_RETENTION_SERVICE, ctx_r);
}

bool
dovekie_bridge_has_retention (struct dovekie_bridge *bridge)
{
  DovekieContext *ctx;
  return retention_service (bridge, &ctx) != NULL;
}

const char *
dovekie_bridge_retention_keyword (struct dovekie_bridge *bridge)
{
  DovekieContext *ctx;
  const DovekieRetentionService *svc = retention_service (bridge, &ctx);
  return svc != NULL ? svc->hide_keyword (ctx) : NULL;
}

bool
dovekie_bridge_retention_expire_at_quit (struct dovekie_bridge *bridge,
                                         const unsigned char *table)
{
  DovekieContext *ctx;
  const DovekieRetentionService *svc = retention_service (bridge, &ctx);
  return svc != NULL && svc->expire_at_quit (ctx, table);
}

/* The service of the bridge whose listing runs: pop3_hidden is called
 * once per message of a listing (60,000 calls for 60,000 messages), so
 * the service is looked up once, at pop3_listing, not at every call.
 * The host calls pop3_hidden only inside a listing that pop3_listing
 * began, on the same bridge. */
static struct {
  struct dovekie_bridge *bridge;
  const DovekieRetentionService *svc;
  DovekieContext *ctx;
} listing;

void
dovekie_bridge_retention_pop3_listing (struct dovekie_bridge *bridge, const unsigned char *table)
{
  listing.bridge = bridge;
  listing.svc = retention_service (bridge, &listing.ctx);
  if (listing.svc != NULL)
    listing.svc->pop3_listing (listing.ctx, table);
}

bool
dovekie_bridge_retention_pop3_hidden (struct dovekie_bridge *bridge, uint32_t uid,
                                      const unsigned char *packed)
{
  DovekieContext *ctx;
  const DovekieRetentionService *svc;

  if (bridge == listing.bridge && bridge != NULL)
    return listing.svc != NULL && listing.svc->pop3_hidden (listing.ctx, uid, packed);
  svc = retention_service (bridge, &ctx);
  return svc != NULL && svc->pop3_hidden (ctx, uid, packed);
}

bool
dovekie_bridge_retention_table_migrated (const unsigned char *table)
{
  return dovekie_retention_table_migrated (table);
}

int
dovekie_bridge_retention_migrate (struct dovekie_bridge *bridge,
                                  struct dovekie_bridge_retention_store *store,
                                  unsigned int *n_r, const char **error_r)
{
  DovekieContext *ctx;
  const DovekieRetentionService *svc = retention_service (bridge, &ctx);
  BridgeStore bs;
  GError *error = NULL;
  guint n = 0;

  *n_r = 0;
  if (svc == NULL)
    return 0;
  bridge_store_init (&bs, store);
  if (!svc->migrate (ctx, &bs.store, &n, &error))
    return fail (error, error_r);
  *n_r = n;
  return 0;
}

const char *
dovekie_bridge_retention_login_error (struct dovekie_bridge *bridge)
{
  DovekieContext *ctx;
  const DovekieRetentionService *svc = retention_service (bridge, &ctx);
  return svc != NULL ? svc->login_error (ctx) : NULL;
}

bool
dovekie_bridge_retention_dele_ignored (struct dovekie_bridge *bridge)
{
  DovekieContext *ctx;
  const DovekieRetentionService *svc = retention_service (bridge, &ctx);
  return svc != NULL && svc->dele_ignored (ctx);
}

int
dovekie_bridge_retention_pop3_quit (struct dovekie_bridge *bridge,
                                    struct dovekie_bridge_retention_store *store,
                                    const uint32_t *retrieved, unsigned int n_retrieved,
                                    const uint32_t *deleted, unsigned int n_deleted,
                                    uint32_t *hide_r, unsigned int *n_hide_r,
                                    const char **error_r)
{
  DovekieContext *ctx;
  const DovekieRetentionService *svc = retention_service (bridge, &ctx);
  g_autoptr (GArray) hide = g_array_new (FALSE, FALSE, sizeof (guint32));
  BridgeStore bs;
  GError *error = NULL;

  *n_hide_r = 0;
  if (svc == NULL)
    return 0;
  bridge_store_init (&bs, store);
  if (!svc->pop3_quit (ctx, &bs.store, retrieved, n_retrieved, deleted, n_deleted, hide, &error))
    return fail (error, error_r);
  /* The module may only hide what this session DELEd. */
  for (guint i = 0; i < hide->len && *n_hide_r < n_deleted; i++)
    hide_r[(*n_hide_r)++] = g_array_index (hide, guint32, i);
  return 0;
}

int
dovekie_bridge_retention_plan (struct dovekie_bridge *bridge,
                               struct dovekie_bridge_retention_store *store,
                               const struct dovekie_bridge_retention_message *messages,
                               unsigned int n, uint64_t quota_used, uint64_t quota_limit,
                               enum dovekie_bridge_retention_reason *reasons_r,
                               uint32_t *unhide_r, unsigned int *n_unhide_r,
                               struct dovekie_bridge_retention_summary *summary_r,
                               const char **error_r)
{
  DovekieContext *ctx;
  const DovekieRetentionService *svc = retention_service (bridge, &ctx);
  g_autoptr (GArray) unhide = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GHashTable) hidden = g_hash_table_new (g_direct_hash, g_direct_equal);
  g_autofree DovekieRetentionMessage *msgs = g_new0 (DovekieRetentionMessage, MAX (n, 1));
  g_autofree DovekieRetentionReason *reasons = g_new0 (DovekieRetentionReason, MAX (n, 1));
  DovekieRetentionSummary summary = { 0 };
  BridgeStore bs;
  GError *error = NULL;

  for (guint i = 0; i < n; i++)
    {
      msgs[i].uid = messages[i].uid;
      msgs[i].saved = messages[i].saved;
      msgs[i].size = messages[i].size;
      msgs[i].hidden = messages[i].hidden;
      memcpy (msgs[i].packed, messages[i].packed, sizeof (msgs[i].packed));
      reasons_r[i] = DOVEKIE_BRIDGE_RETENTION_KEEP;
      if (messages[i].hidden)
        g_hash_table_add (hidden, GUINT_TO_POINTER (messages[i].uid));
    }
  *n_unhide_r = 0;
  if (summary_r != NULL)
    memset (summary_r, 0, sizeof (*summary_r));
  if (svc == NULL)
    return 0;
  bridge_store_init (&bs, store);
  if (!svc->plan (ctx, &bs.store, msgs, n, quota_used, quota_limit, reasons, unhide,
                  &summary, &error))
    return fail (error, error_r);
  if (summary_r != NULL)
    {
      summary_r->records = summary.records;
      summary_r->downloaded = summary.downloaded;
      summary_r->deleted = summary.deleted;
      summary_r->corrupt = summary.corrupt;
    }
  for (guint i = 0; i < n; i++)
    reasons_r[i] = (enum dovekie_bridge_retention_reason) reasons[i];
  /* Only hidden messages of the listing, each once. */
  for (guint i = 0; i < unhide->len && *n_unhide_r < n; i++)
    {
      guint32 uid = g_array_index (unhide, guint32, i);
      if (g_hash_table_remove (hidden, GUINT_TO_POINTER (uid)))
        unhide_r[(*n_unhide_r)++] = uid;
    }
  return 0;
}

void
dovekie_bridge_retention_done (struct dovekie_bridge *bridge, const uint32_t *uids, unsigned int n)
{
  DovekieContext *ctx;
  const DovekieRetentionService *svc = retention_service (bridge, &ctx);

  if (svc != NULL)
    svc->done (ctx, uids, n);
}

const char *
dovekie_bridge_retention_reason_name (enum dovekie_bridge_retention_reason reason)
{
  return dovekie_retention_reason_name ((DovekieRetentionReason) reason);
}

void
dovekie_bridge_retention_log (struct dovekie_bridge *bridge, const char *message)
{
  DovekieContext *ctx;
  const DovekieRetentionService *svc = retention_service (bridge, &ctx);

  if (svc != NULL)
    ctx->api->log (ctx, DOVEKIE_LOG_INFO, message);
}
