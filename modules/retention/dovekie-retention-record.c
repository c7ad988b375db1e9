/* dovekie-retention: state record parser and formatter. */
#include "dovekie-config.h"

#include <string.h>

#include "dovekie/module.h"
#include "dovekie-retention-record.h"

static gboolean
id_char (gchar c)
{
  return g_ascii_isalnum (c) || c == '.' || c == '_' || c == '-';
}

gboolean
dovekie_retention_id_valid (const gchar *id)
{
  gsize len;

  if (id == NULL)
    return FALSE;
  if (strcmp (id, DOVEKIE_RETENTION_SHARED_ID) == 0)
    return TRUE;
  len = strlen (id);
  if (len == 0 || len > DOVEKIE_RETENTION_ID_MAX)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!id_char (id[i]))
      return FALSE;
  return TRUE;
}

void
dovekie_retention_record_clear (DovekieRetentionRecord *record)
{
  g_clear_pointer (&record->clients, g_free);
  record->n_clients = 0;
}

void
dovekie_retention_record_free (DovekieRetentionRecord *record)
{
  if (record == NULL)
    return;
  dovekie_retention_record_clear (record);
  g_free (record);
}

/* Room for one more entry; FALSE when the record is full. */
static DovekieRetentionClient *
record_append (DovekieRetentionRecord *record)
{
  DovekieRetentionClient *c;

  if (record->n_clients == DOVEKIE_RETENTION_CLIENTS_MAX)
    return NULL;
  record->clients = g_renew (DovekieRetentionClient, record->clients, record->n_clients + 1);
  c = &record->clients[record->n_clients++];
  memset (c, 0, sizeof (*c));
  return c;
}

static gboolean
fail (DovekieRetentionRecord *record, GError **error, gsize pos, const gchar *what)
{
  dovekie_retention_record_clear (record);
  g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
               "bad retention record at byte %" G_GSIZE_FORMAT ": %s", pos, what);
  return FALSE;
}

/* A whole decimal number of [p, end) without sign or leading zero. */
static gboolean
parse_time (const gchar *p, const gchar *end, gint64 *value_r)
{
  gint64 value = 0;

  if (p == end || end - p > 12 || (*p == '0' && end - p > 1))
    return FALSE;
  for (; p < end; p++)
    {
      if (!g_ascii_isdigit (*p))
        return FALSE;
      value = value * 10 + (*p - '0');
    }
  if (value > DOVEKIE_RETENTION_TIME_MAX)
    return FALSE;
  *value_r = value;
  return TRUE;
}

gboolean
dovekie_retention_record_parse (const gchar *text, gsize len, DovekieRetentionRecord *record,
                                GError **error)
{
  const gchar *p = text, *end = text + len;

  dovekie_retention_record_clear (record);
  if (len > DOVEKIE_RETENTION_RECORD_MAX)
    return fail (record, error, DOVEKIE_RETENTION_RECORD_MAX, "too long");
  if (len < 1 || text[0] != '1')
    return fail (record, error, 0, "unknown version");
  p++;
  while (p < end)
    {
      DovekieRetentionClient entry = { { 0 }, 0, FALSE };
      const gchar *id, *colon, *colon2;
      gsize id_len;

      if (*p != ' ')
        return fail (record, error, p - text, "expected a space");
      p++;
      id = p;
      colon = memchr (p, ':', end - p);
      if (colon == NULL)
        return fail (record, error, p - text, "entry without ':'");
      id_len = colon - id;
      if (id_len == 0 || id_len > DOVEKIE_RETENTION_ID_MAX)
        return fail (record, error, id - text, "bad identity length");
      memcpy (entry.id, id, id_len);
      entry.id[id_len] = '\0';
      if (strlen (entry.id) != id_len || !dovekie_retention_id_valid (entry.id))
        return fail (record, error, id - text, "bad identity");
      p = colon + 1;
      colon2 = memchr (p, ':', end - p);
      if (colon2 == NULL || !parse_time (p, colon2, &entry.downloaded))
        return fail (record, error, p - text, "bad time");
      p = colon2 + 1;
      if (p >= end || (*p != '-' && *p != 'd'))
        return fail (record, error, p - text, "bad flag");
      entry.deleted = *p == 'd';
      p++;
      if (entry.downloaded == 0 && !entry.deleted)
        return fail (record, error, id - text, "empty entry");
      if (dovekie_retention_record_client (record, entry.id, FALSE) != NULL)
        return fail (record, error, id - text, "identity listed twice");
      if (record->n_clients == DOVEKIE_RETENTION_CLIENTS_MAX)
        return fail (record, error, id - text, "too many identities");
      *record_append (record) = entry;
    }
  return TRUE;
}

gchar *
dovekie_retention_record_format (const DovekieRetentionRecord *record)
{
  GString *out = g_string_new ("1");

  for (guint i = 0; i < record->n_clients; i++)
    {
      const DovekieRetentionClient *c = &record->clients[i];
      /* An entry that says nothing is dropped, so the output parses. */
      if (c->downloaded == 0 && !c->deleted)
        continue;
      g_string_append_printf (out, " %s:%" G_GINT64_FORMAT ":%c", c->id,
                              CLAMP (c->downloaded, 0, DOVEKIE_RETENTION_TIME_MAX),
                              c->deleted ? 'd' : '-');
    }
  return g_string_free (out, FALSE);
}

DovekieRetentionClient *
dovekie_retention_record_client (DovekieRetentionRecord *record, const gchar *id, gboolean create)
{
  DovekieRetentionClient *c;

  for (guint i = 0; i < record->n_clients; i++)
    if (strcmp (record->clients[i].id, id) == 0)
      return &record->clients[i];
  if (!create || !dovekie_retention_id_valid (id) || (c = record_append (record)) == NULL)
    return NULL;
  g_strlcpy (c->id, id, sizeof (c->id));
  return c;
}

gint64
dovekie_retention_record_first_download (const DovekieRetentionRecord *record)
{
  gint64 first = 0;

  for (guint i = 0; i < record->n_clients; i++)
    {
      gint64 t = record->clients[i].downloaded;
      if (t > 0 && (first == 0 || t < first))
        first = t;
    }
  return first;
}

gboolean
dovekie_retention_record_deleted (const DovekieRetentionRecord *record)
{
  for (guint i = 0; i < record->n_clients; i++)
    if (record->clients[i].deleted)
      return TRUE;
  return FALSE;
}
