/* GLib side of the "index" service for the Dovecot fts backend: plain C
 * in (dovekie-bridge.h), DovekieIndexVtable out (dovekie/index.h). */
#include "dovekie-config.h"

#include <string.h>

#include "dovekie/index.h"
#include "dovekie-bridge.h"
#include "dovekie-bridge-private.h"

G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_INDEX_BODY == (gint) DOVEKIE_INDEX_FIELD_BODY);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_INDEX_SUBJECT == (gint) DOVEKIE_INDEX_FIELD_SUBJECT);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_INDEX_BCC == (gint) DOVEKIE_INDEX_FIELD_BCC);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_INDEX_SCOPE_HEADER == (gint) DOVEKIE_INDEX_SCOPE_HEADER);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_INDEX_SCOPE_SUBJECT == (gint) DOVEKIE_INDEX_SCOPE_SUBJECT);
G_STATIC_ASSERT ((gint) DOVEKIE_BRIDGE_INDEX_SCOPE_BCC == (gint) DOVEKIE_INDEX_SCOPE_BCC);

struct dovekie_bridge_index {
  const DovekieIndexVtable *v;
  DovekieIndex *index;
};

static int
fail (GError *error, const char **error_r)
{
  return dovekie_bridge_fail (error, "unknown index error", error_r);
}

bool
dovekie_bridge_has_index (struct dovekie_bridge *bridge)
{
  DovekieContext *ctx = NULL;

  return dovekie_loader_service (dovekie_bridge_get_loader (bridge), DOVEKIE_INDEX_SERVICE,
                                 &ctx) != NULL;
}

int
dovekie_bridge_index_open (struct dovekie_bridge *bridge, const char *path, uint32_t uidvalidity,
                           struct dovekie_bridge_index **index_r,
                           const char **error_r)
{
  DovekieContext *ctx = NULL;
  const DovekieIndexVtable *v =
    dovekie_loader_service (dovekie_bridge_get_loader (bridge), DOVEKIE_INDEX_SERVICE, &ctx);
  GError *error = NULL;
  DovekieIndex *index;

  *index_r = NULL;
  if (v == NULL)
    {
      *error_r = "no loaded module provides the index service (dovekie_modules)";
      return -1;
    }
  index = v->open (ctx, path, uidvalidity, &error);
  if (index == NULL)
    return fail (error, error_r);
  *index_r = g_new0 (struct dovekie_bridge_index, 1);
  (*index_r)->v = v;
  (*index_r)->index = index;
  return 0;
}

void
dovekie_bridge_index_close (struct dovekie_bridge_index **index)
{
  if (*index == NULL)
    return;
  (*index)->v->close ((*index)->index);
  g_free (*index);
  *index = NULL;
}

int
dovekie_bridge_index_last_uid (struct dovekie_bridge_index *index, uint32_t *last_uid_r,
                               const char **error_r)
{
  GError *error = NULL;
  guint32 uid = 0;

  *last_uid_r = 0;
  if (!index->v->get_last_uid (index->index, &uid, &error))
    return fail (error, error_r);
  *last_uid_r = uid;
  return 0;
}

int
dovekie_bridge_index_doc_begin (struct dovekie_bridge_index *index, uint32_t uid,
                                const char **error_r)
{
  GError *error = NULL;

  return index->v->doc_begin (index->index, uid, &error) ? 0 : fail (error, error_r);
}

int
dovekie_bridge_index_doc_append (struct dovekie_bridge_index *index,
                                 enum dovekie_bridge_index_field field, const void *data,
                                 size_t size, const char **error_r)
{
  GError *error = NULL;

  return index->v->doc_append (index->index, (DovekieIndexField) field, data, size, &error)
           ? 0 : fail (error, error_r);
}

int
dovekie_bridge_index_doc_end (struct dovekie_bridge_index *index,
                              const char **error_r)
{
  GError *error = NULL;

  return index->v->doc_end (index->index, &error) ? 0 : fail (error, error_r);
}

int
dovekie_bridge_index_expunge (struct dovekie_bridge_index *index, uint32_t uid,
                              const char **error_r)
{
  GError *error = NULL;

  return index->v->expunge (index->index, uid, &error) ? 0 : fail (error, error_r);
}

int
dovekie_bridge_index_flush (struct dovekie_bridge_index *index,
                            const char **error_r)
{
  GError *error = NULL;

  return index->v->flush (index->index, &error) ? 0 : fail (error, error_r);
}

struct lookup_trampoline {
  void (*add)(void *context, uint32_t uid, bool definite);
  void *context;
};

static void
lookup_add (gpointer data, guint32 uid, gboolean definite)
{
  struct lookup_trampoline *t = data;
  t->add (t->context, uid, definite != FALSE);
}

int
dovekie_bridge_index_lookup (struct dovekie_bridge_index *index,
                             enum dovekie_bridge_index_scope scope, const char *needle,
                             void (*add)(void *context, uint32_t uid, bool definite),
                             void *context, uint32_t *last_uid_r,
                             const char **error_r)
{
  struct lookup_trampoline t = { add, context };
  GError *error = NULL;
  gboolean handled = FALSE;

  if (!index->v->lookup (index->index, (DovekieIndexScope) scope, needle, lookup_add, &t,
                         last_uid_r, &handled, &error))
    return fail (error, error_r);
  return handled ? 1 : 0;
}

int
dovekie_bridge_index_reset (struct dovekie_bridge_index *index,
                            const char **error_r)
{
  GError *error = NULL;

  return index->v->reset (index->index, &error) ? 0 : fail (error, error_r);
}

int
dovekie_bridge_index_optimize (struct dovekie_bridge_index *index,
                               const char **error_r)
{
  GError *error = NULL;

  return index->v->optimize (index->index, &error) ? 0 : fail (error, error_r);
}
