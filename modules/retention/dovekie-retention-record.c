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

/* ---- the stored form ---- */

static guint64
get_le64 (const guint8 *p)
{
  guint64 v = 0;

  for (gint i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static void
put_le64 (guint8 *p, guint64 v)
{
  for (guint i = 0; i < 8; i++, v >>= 8)
    p[i] = (guint8) (v & 0xff);
}

static guint32
get_le32 (const guint8 *p)
{
  return (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 | (guint32) p[3] << 24;
}

static void
put_le32 (guint8 *p, guint32 v)
{
  for (guint i = 0; i < 4; i++, v >>= 8)
    p[i] = (guint8) (v & 0xff);
}

#define SLOT_SIZE (DOVEKIE_RETENTION_ID_MAX + 1)
#define SLOTS_OFFSET 8
#define QUITS_OFFSET (SLOTS_OFFSET + DOVEKIE_RETENTION_CLIENTS_MAX * SLOT_SIZE)
#define FLOORS_OFFSET (QUITS_OFFSET + DOVEKIE_RETENTION_CLIENTS_MAX * 8)
G_STATIC_ASSERT (FLOORS_OFFSET + 2 * 8 == DOVEKIE_RETENTION_TABLE_SIZE);
G_STATIC_ASSERT (DOVEKIE_RETENTION_CLIENTS_MAX == 64);

gboolean
dovekie_retention_table_parse (const guint8 *bytes, DovekieRetentionTable *table, GError **error)
{
  guint32 version = get_le32 (bytes);
  gboolean ended = FALSE;

  memset (table, 0, sizeof (*table));
  if (version == 0)
    {
      for (guint i = 4; i < DOVEKIE_RETENTION_TABLE_SIZE; i++)
        if (bytes[i] != 0)
          goto bad_version;
      return TRUE;
    }
  if (version != DOVEKIE_RETENTION_TABLE_VERSION)
    goto bad_version;
  table->flags = get_le32 (bytes + 4);
  for (guint i = 0; i < DOVEKIE_RETENTION_CLIENTS_MAX; i++)
    {
      const guint8 *slot = bytes + SLOTS_OFFSET + i * SLOT_SIZE;
      gsize len = strnlen ((const gchar *) slot, SLOT_SIZE);
      gchar id[SLOT_SIZE];

      if (len == SLOT_SIZE)
        goto bad_slot;
      for (gsize k = len; k < SLOT_SIZE; k++)
        if (slot[k] != 0)
          goto bad_slot;
      if (len == 0)
        {
          if (get_le64 (bytes + QUITS_OFFSET + i * 8) != 0)
            goto bad_slot;
          ended = TRUE;
          continue;
        }
      memcpy (id, slot, len + 1);
      if (ended || !dovekie_retention_id_valid (id) ||
          dovekie_retention_table_slot (table, id, FALSE) >= 0)
        goto bad_slot;
      table->last_quit[table->n_ids] = (gint64) get_le64 (bytes + QUITS_OFFSET + i * 8);
      if (table->last_quit[table->n_ids] < 0 ||
          table->last_quit[table->n_ids] > DOVEKIE_RETENTION_TIME_MAX)
        goto bad_slot;
      memcpy (table->ids[table->n_ids++], id, len + 1);
      continue;
    bad_slot:
      memset (table, 0, sizeof (*table));
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                   "retention table: slot %u is not a valid, new client identity", i);
      return FALSE;
    }
  /* No order between the two floors is required: two sessions that
   * commit at once may each have written one of them. */
  table->floor_downloaded = (gint64) get_le64 (bytes + FLOORS_OFFSET);
  table->floor_deleted = (gint64) get_le64 (bytes + FLOORS_OFFSET + 8);
  if (table->floor_downloaded < 0 || table->floor_downloaded > DOVEKIE_RETENTION_TIME_MAX ||
      table->floor_deleted < 0 || table->floor_deleted > DOVEKIE_RETENTION_TIME_MAX ||
      ((table->flags & DOVEKIE_RETENTION_TABLE_FLOORS) == 0 &&
       (table->floor_downloaded != 0 || table->floor_deleted != 0)))
    {
      memset (table, 0, sizeof (*table));
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                           "retention table: bad download floors");
      return FALSE;
    }
  return TRUE;

bad_version:
  memset (table, 0, sizeof (*table));
  g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
               "retention table: unknown version %u", version);
  return FALSE;
}

gboolean
dovekie_retention_table_unwritten (const guint8 *bytes)
{
  return get_le32 (bytes) == 0;
}

void
dovekie_retention_table_format (const DovekieRetentionTable *table, guint8 *bytes)
{
  memset (bytes, 0, DOVEKIE_RETENTION_TABLE_SIZE);
  put_le32 (bytes, DOVEKIE_RETENTION_TABLE_VERSION);
  put_le32 (bytes + 4, table->flags);
  for (guint i = 0; i < table->n_ids; i++)
    {
      memcpy (bytes + SLOTS_OFFSET + i * SLOT_SIZE, table->ids[i], strlen (table->ids[i]));
      put_le64 (bytes + QUITS_OFFSET + i * 8,
                (guint64) CLAMP (table->last_quit[i], 0, DOVEKIE_RETENTION_TIME_MAX));
    }
  if ((table->flags & DOVEKIE_RETENTION_TABLE_FLOORS) != 0)
    {
      put_le64 (bytes + FLOORS_OFFSET,
                (guint64) CLAMP (table->floor_downloaded, 0, DOVEKIE_RETENTION_TIME_MAX));
      put_le64 (bytes + FLOORS_OFFSET + 8,
                (guint64) CLAMP (table->floor_deleted, 0, DOVEKIE_RETENTION_TIME_MAX));
    }
}

static void
lower_floor (gint64 *floor, gint64 first)
{
  if (*floor == 0 || first < *floor)
    *floor = first;
}

void
dovekie_retention_table_cover (DovekieRetentionTable *table, gint64 first, gboolean deleted)
{
  if ((table->flags & DOVEKIE_RETENTION_TABLE_FLOORS) == 0 || first <= 0)
    return;
  lower_floor (&table->floor_downloaded, first);
  if (deleted)
    lower_floor (&table->floor_deleted, first);
}

guint64
dovekie_retention_table_active (const DovekieRetentionTable *table, gint64 since)
{
  guint64 active = 0;

  for (guint i = 0; i < table->n_ids; i++)
    if (table->last_quit[i] > 0 && table->last_quit[i] >= since)
      active |= G_GUINT64_CONSTANT (1) << i;
  return active;
}

gint
dovekie_retention_table_slot (DovekieRetentionTable *table, const gchar *id, gboolean create)
{
  for (guint i = 0; i < table->n_ids; i++)
    if (strcmp (table->ids[i], id) == 0)
      return (gint) i;
  if (!create || table->n_ids == DOVEKIE_RETENTION_CLIENTS_MAX || !dovekie_retention_id_valid (id))
    return -1;
  g_strlcpy (table->ids[table->n_ids], id, SLOT_SIZE);
  table->last_quit[table->n_ids] = 0;
  return (gint) table->n_ids++;
}

gboolean
dovekie_retention_packed_empty (const guint8 *packed)
{
  for (guint i = 0; i < DOVEKIE_RETENTION_PACKED_SIZE; i++)
    if (packed[i] != 0)
      return FALSE;
  return TRUE;
}

gint64
dovekie_retention_packed_first (const guint8 *packed)
{
  return (gint64) get_le64 (packed);
}

guint64
dovekie_retention_packed_downloaded (const guint8 *packed)
{
  return get_le64 (packed + 8);
}

guint64
dovekie_retention_packed_deleted (const guint8 *packed)
{
  return get_le64 (packed + 16);
}

gboolean
dovekie_retention_record_unpack (const DovekieRetentionTable *table, const guint8 *packed,
                                 DovekieRetentionRecord *record, GError **error)
{
  guint64 first = get_le64 (packed);
  guint64 down = dovekie_retention_packed_downloaded (packed);
  guint64 del = dovekie_retention_packed_deleted (packed);
  guint64 used = table->n_ids == 64 ? G_MAXUINT64 : (G_GUINT64_CONSTANT (1) << table->n_ids) - 1;

  dovekie_retention_record_clear (record);
  if (((down | del) & ~used) != 0)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                   "retention record names a client slot the table does not have");
      return FALSE;
    }
  if ((down != 0) != (first != 0) || first > (guint64) DOVEKIE_RETENTION_TIME_MAX)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_PROTOCOL,
                   "retention record: first download %" G_GUINT64_FORMAT
                   " does not match its download bits", first);
      return FALSE;
    }
  for (guint i = 0; i < table->n_ids; i++)
    {
      guint64 bit = G_GUINT64_CONSTANT (1) << i;
      DovekieRetentionClient *c;

      if (((down | del) & bit) == 0)
        continue;
      c = record_append (record);
      g_strlcpy (c->id, table->ids[i], sizeof (c->id));
      c->downloaded = (down & bit) != 0 ? (gint64) first : 0;
      c->deleted = (del & bit) != 0;
    }
  return TRUE;
}

gboolean
dovekie_retention_record_pack (DovekieRetentionTable *table, const DovekieRetentionRecord *record,
                               guint8 *packed, gboolean *table_changed, GError **error)
{
  DovekieRetentionTable copy = *table;
  guint64 down = 0, del = 0;
  gint64 first = dovekie_retention_record_first_download (record);
  gboolean changed = FALSE;

  for (guint i = 0; i < record->n_clients; i++)
    {
      const DovekieRetentionClient *c = &record->clients[i];
      guint before = copy.n_ids;
      gint slot;

      if (c->downloaded == 0 && !c->deleted)
        continue;
      slot = dovekie_retention_table_slot (&copy, c->id, TRUE);
      if (slot < 0)
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                       "no room for client identity '%s': a mailbox keeps at most %d",
                       c->id, DOVEKIE_RETENTION_CLIENTS_MAX);
          return FALSE;
        }
      changed |= copy.n_ids != before;
      if (c->downloaded > 0)
        down |= G_GUINT64_CONSTANT (1) << slot;
      if (c->deleted)
        del |= G_GUINT64_CONSTANT (1) << slot;
    }
  put_le64 (packed, (guint64) CLAMP (first, 0, DOVEKIE_RETENTION_TIME_MAX));
  put_le64 (packed + 8, down);
  put_le64 (packed + 16, del);
  if (changed)
    {
      *table = copy;
      if (table_changed != NULL)
        *table_changed = TRUE;
    }
  return TRUE;
}
