/* dovekie-retention: policy decisions. */
#include "dovekie-config.h"

#include <string.h>

#include "dovekie/module.h"
#include "dovekie/log-quote.h"
#include "dovekie-retention-policy.h"

gboolean
dovekie_retention_parse_days (const gchar *text, gint64 *keep_r, GError **error)
{
  guint64 days = 0;

  if (text != NULL && strcmp (text, "never") == 0)
    {
      *keep_r = -1;
      return TRUE;
    }
  if (text == NULL || *text == '\0' || strlen (text) > 5 ||
      !g_ascii_string_to_unsigned (text, 10, 0, DOVEKIE_RETENTION_DAYS_MAX, &days, NULL))
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                   "dovekie_retention_days: '%s' is not 'never' or a number of days in 0..%d",
                   text != NULL ? text : "", DOVEKIE_RETENTION_DAYS_MAX);
      return FALSE;
    }
  *keep_r = (gint64) days * DOVEKIE_RETENTION_DAY;
  return TRUE;
}

gboolean
dovekie_retention_identity (const DovekieRetentionPolicy *policy, const gchar *login,
                            gchar separator, gchar **id_r, GError **error)
{
  const gchar *sep;

  *id_r = NULL;
  if (policy->view == DOVEKIE_RETENTION_VIEW_SHARED || login == NULL || separator == '\0' ||
      (sep = strchr (login, separator)) == NULL)
    {
      *id_r = g_strdup (DOVEKIE_RETENTION_SHARED_ID);
      return TRUE;
    }
  /* "*" is the shared identity's own name, not a client's. */
  if (strcmp (sep + 1, DOVEKIE_RETENTION_SHARED_ID) == 0 || !dovekie_retention_id_valid (sep + 1))
    {
      g_autofree gchar *name = dovekie_log_quote (sep + 1);
      g_autofree gchar *quoted = dovekie_log_quote (login);
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                   "client name %s of login %s is not valid: a client name is 1 to %d "
                   "characters of A-Z a-z 0-9 . _ -",
                   name, quoted, DOVEKIE_RETENTION_ID_MAX);
      return FALSE;
    }
  *id_r = g_strdup (sep + 1);
  return TRUE;
}

gboolean
dovekie_retention_dele_ignored (const DovekieRetentionPolicy *policy)
{
  return policy->dele == DOVEKIE_RETENTION_DELE_IGNORE && !dovekie_retention_dele_expunges (policy);
}

gboolean
dovekie_retention_dele_expunges (const DovekieRetentionPolicy *policy)
{
  return policy->dele == DOVEKIE_RETENTION_DELE_EXPUNGE || policy->keep == 0;
}

gboolean
dovekie_retention_hidden (const DovekieRetentionPolicy *policy,
                          const DovekieRetentionRecord *record, const gchar *id)
{
  const DovekieRetentionClient *c;

  if (policy->view != DOVEKIE_RETENTION_VIEW_PER_CLIENT || record == NULL)
    return FALSE;
  c = dovekie_retention_record_client ((DovekieRetentionRecord *) record, id, FALSE);
  return c != NULL && (c->downloaded > 0 || c->deleted);
}

static gboolean
older_than (gint64 since, gint64 age, gint64 now)
{
  return since > 0 && now >= since && now - since >= age;
}

DovekieRetentionReason
dovekie_retention_decide (const DovekieRetentionPolicy *policy,
                          const DovekieRetentionRecord *record, gint64 saved, gint64 now)
{
  gint64 first = record != NULL ? dovekie_retention_record_first_download (record) : 0;

  if (first == 0)
    {
      if (policy->max_age > 0 && policy->max_age_all && older_than (saved, policy->max_age, now))
        return DOVEKIE_RETENTION_MAX_AGE;
      return DOVEKIE_RETENTION_KEEP;
    }
  if (policy->keep >= 0 &&
      (policy->expire == DOVEKIE_RETENTION_EXPIRE_DOWNLOADED ||
       dovekie_retention_record_deleted (record)) &&
      older_than (first, policy->keep, now))
    return DOVEKIE_RETENTION_EXPIRED;
  if (policy->max_age > 0 && older_than (saved, policy->max_age, now))
    return DOVEKIE_RETENTION_MAX_AGE;
  return DOVEKIE_RETENTION_KEEP;
}

typedef struct {
  guint index;
  gint64 first;
} Candidate;

static gint
candidate_compare (gconstpointer a, gconstpointer b)
{
  const Candidate *ca = a, *cb = b;

  if (ca->first != cb->first)
    return ca->first < cb->first ? -1 : 1;
  return ca->index < cb->index ? -1 : (ca->index > cb->index);
}

void
dovekie_retention_plan (const DovekieRetentionPolicy *policy,
                        const DovekieRetentionMessage *messages,
                        const DovekieRetentionRecord *const *records,
                        const gboolean *waiting, guint n, guint64 quota_used, guint64 quota_limit, gint64 now,
                        DovekieRetentionReason *reasons)
{
  g_autoptr (GArray) candidates = NULL;
  guint64 used = quota_used, threshold;

  for (guint i = 0; i < n; i++)
    {
      reasons[i] = dovekie_retention_decide (policy, records[i], messages[i].saved, now);
      if (waiting != NULL && waiting[i] && reasons[i] == DOVEKIE_RETENTION_EXPIRED)
        reasons[i] = DOVEKIE_RETENTION_KEEP;
      if (reasons[i] != DOVEKIE_RETENTION_KEEP && messages[i].size > 0)
        used -= MIN (used, (guint64) messages[i].size);
    }
  if (policy->quota_percent == 0 || quota_limit == 0)
    return;
  threshold = quota_limit / 100 * policy->quota_percent +
              quota_limit % 100 * policy->quota_percent / 100;
  if (used <= threshold)
    return;

  candidates = g_array_new (FALSE, FALSE, sizeof (Candidate));
  for (guint i = 0; i < n; i++)
    {
      Candidate c = { i, records[i] != NULL ? dovekie_retention_record_first_download (records[i]) : 0 };
      /* Never one that no identity downloaded, nor one an active
       * client still waits for. */
      if (reasons[i] == DOVEKIE_RETENTION_KEEP && c.first > 0 &&
          (waiting == NULL || !waiting[i]))
        g_array_append_val (candidates, c);
    }
  g_array_sort (candidates, candidate_compare);
  for (guint k = 0; k < candidates->len && used > threshold; k++)
    {
      guint i = g_array_index (candidates, Candidate, k).index;
      reasons[i] = DOVEKIE_RETENTION_QUOTA;
      if (messages[i].size > 0)
        used -= MIN (used, (guint64) messages[i].size);
    }
}
