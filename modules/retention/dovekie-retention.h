/* dovekie-retention: the module's per-user state, for its unit tests. */
#ifndef DOVEKIE_RETENTION_MODULE_H
#define DOVEKIE_RETENTION_MODULE_H

#include "dovekie/module.h"
#include "dovekie/retention.h"

G_BEGIN_DECLS

/* The module's vtable and its "retention" service, as exported. */
extern const DovekieModule dovekie_module;
extern const DovekieRetentionService dovekie_retention_service;

/* The kv key of a message's record: "uid/<uid>". g_free it. */
gchar *dovekie_retention_key (guint32 uid);
/* Parses a key made by dovekie_retention_key; FALSE for anything else. */
gboolean dovekie_retention_key_uid (const gchar *key, guint32 *uid_r);

/* The identity this user's POP3 session runs as ("*" = shared), or NULL
 * when the login's client name is not valid (the login is refused). */
const gchar *dovekie_retention_current_identity (DovekieContext *ctx);

G_END_DECLS

#endif
