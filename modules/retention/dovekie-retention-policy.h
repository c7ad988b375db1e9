/* dovekie-retention: the policy, as pure functions of settings, records
 * and the clock. No I/O, so it is tested exhaustively without a host. */
#ifndef DOVEKIE_RETENTION_POLICY_H
#define DOVEKIE_RETENTION_POLICY_H

#include <glib.h>

#include "dovekie/retention.h"
#include "dovekie-retention-record.h"

G_BEGIN_DECLS

#define DOVEKIE_RETENTION_DAY G_GINT64_CONSTANT (86400)
#define DOVEKIE_RETENTION_DAYS_MAX 36500

typedef enum {
  DOVEKIE_RETENTION_DELE_HIDE,    /* keep for IMAP, gone from POP3 */
  DOVEKIE_RETENTION_DELE_EXPUNGE, /* classic POP3 */
  DOVEKIE_RETENTION_DELE_IGNORE,  /* accepted, no effect */
} DovekieRetentionDele;

typedef enum {
  DOVEKIE_RETENTION_VIEW_SHARED,
  DOVEKIE_RETENTION_VIEW_PER_CLIENT,
} DovekieRetentionView;

typedef enum {
  DOVEKIE_RETENTION_EXPIRE_DELETED,    /* only messages some client DELEd */
  DOVEKIE_RETENTION_EXPIRE_DOWNLOADED, /* every downloaded message */
} DovekieRetentionExpire;

typedef struct {
  gint64 keep;              /* seconds after the first download; -1 = never */
  DovekieRetentionDele dele;
  DovekieRetentionView view;
  DovekieRetentionExpire expire;
  gint64 max_age;           /* seconds since saved; 0 = off */
  gboolean max_age_all;     /* max_age also applies to undownloaded mail */
  guint quota_percent;      /* 1..100; 0 = off */
} DovekieRetentionPolicy;

/* Parses dovekie_retention_days: "never" or a whole number of days in
 * 0..DOVEKIE_RETENTION_DAYS_MAX. Sets *keep_r in seconds (-1 for never). */
gboolean dovekie_retention_parse_days (const gchar *text, gint64 *keep_r, GError **error);

/* The client identity of a login name, in *id_r (g_free it): the shared
 * identity "*" with the shared view, or when the login has no `separator`;
 * else the text after the first `separator`, which must be a client name
 * (1..DOVEKIE_RETENTION_ID_MAX of [A-Za-z0-9._-]). Anything else (empty,
 * too long, another character, a second separator) is FALSE with `error`
 * naming the name and the rule: such a login is refused, never merged
 * into the shared identity. */
gboolean dovekie_retention_identity (const DovekieRetentionPolicy *policy, const gchar *login,
                                     gchar separator, gchar **id_r, GError **error);

/* TRUE if a POP3 DELE changes nothing (dele = ignore, with days > 0):
 * the message stays in every view. */
gboolean dovekie_retention_dele_ignored (const DovekieRetentionPolicy *policy);

/* What a POP3 DELE does at QUIT: TRUE if the message is really expunged
 * (dele=expunge, or keep == 0). */
gboolean dovekie_retention_dele_expunges (const DovekieRetentionPolicy *policy);

/* Whether `id` no longer sees the message in its POP3 listing. With the
 * shared view, hiding is done by the hide keyword, so this is FALSE. */
gboolean dovekie_retention_hidden (const DovekieRetentionPolicy *policy,
                                   const DovekieRetentionRecord *record, const gchar *id);

/* The reason one message may go now (quota aside). `record` may be NULL
 * (no POP3 client ever touched it). A message no identity downloaded is
 * only ever expunged by max_age with max_age_all. */
DovekieRetentionReason dovekie_retention_decide (const DovekieRetentionPolicy *policy,
                                                 const DovekieRetentionRecord *record,
                                                 gint64 saved, gint64 now);

/* The plan for a mailbox: reasons[i] for messages[i] with records[i]
 * (NULL = none). Then, if quota_percent and quota_limit are set and the
 * rest still uses more than quota_percent of quota_limit, the downloaded
 * messages are added oldest first download first, until it fits.
 * `waiting` (NULL: none) marks messages that a client active within the
 * retention period has neither downloaded nor DELEd: neither the timer
 * nor the quota rule takes them, only max_age. */
void dovekie_retention_plan (const DovekieRetentionPolicy *policy,
                             const DovekieRetentionMessage *messages,
                             const DovekieRetentionRecord *const *records,
                             const gboolean *waiting, guint n,
                             guint64 quota_used, guint64 quota_limit, gint64 now,
                             DovekieRetentionReason *reasons);

G_END_DECLS

#endif
