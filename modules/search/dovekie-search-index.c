/* SQLite FTS5 candidate index of one mailbox. See dovekie-search-index.h. */
#include "dovekie-config.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <sqlite3.h>

#include "dovekie-search-index-private.h"
#include "dovekie-search-plan.h"
#include "dovekie-search-tokenizer.h"

#define BUSY_TIMEOUT_USEC (10 * G_USEC_PER_SEC)
/* How long close waits to mark the expunges still pending (see
 * index_expunge). */
#define CLOSE_PENDING_USEC G_USEC_PER_SEC
/* How long a writer that goes on writing lets the lock go after committing
 * a batch; see busy_wait(). */
#define YIELD_USEC 5000

/* SQLite's busy handler. SQLite's own (sqlite3_busy_timeout) sleeps up to
 * 100 ms between two tries, and a writer that commits a batch and begins
 * the next one at once leaves a gap of microseconds: with `doveadm index`
 * and the indexer of a search writing the same mailbox, the waiting one
 * gave up after the timeout ("database is locked", ASan integration run).
 * This one tries again every millisecond, and a writer pauses YIELD_USEC
 * after each batch it commits, so the lock changes hands.
 * index->busy_usec is the time to wait in all (0 while tidying: a tidy
 * gives way). */
static int
busy_wait (void *data, int tries)
{
  DovekieIndex *index = data;
  gint64 now = g_get_monotonic_time ();

  if (tries == 0)
    index->busy_since = now;
  if (now - index->busy_since >= index->busy_usec)
    return 0;
  g_usleep (1000);
  return 1;
}

static void
index_log (DovekieIndex *index, DovekieLogLevel level, const gchar *format, ...)
  G_GNUC_PRINTF (3, 4);

static void
index_log (DovekieIndex *index, DovekieLogLevel level, const gchar *format, ...)
{
  va_list args;
  g_autofree gchar *message = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  if (index->ctx != NULL)
    index->ctx->api->log (index->ctx, level, message);
  else
    g_log ("dovekie-search", level >= DOVEKIE_LOG_ERROR ? G_LOG_LEVEL_WARNING
                             : G_LOG_LEVEL_DEBUG, "%s", message);
}

static gboolean
is_corrupt_code (int code)
{
  code &= 0xff;
  return code == SQLITE_CORRUPT || code == SQLITE_NOTADB;
}

static gboolean
is_busy_code (int code)
{
  code &= 0xff;
  return code == SQLITE_BUSY || code == SQLITE_LOCKED;
}

static gboolean
exec (DovekieIndex *index, const gchar *sql, GError **error)
{
  if (sqlite3_exec (index->db, sql, NULL, NULL, NULL) != SQLITE_OK)
    return sql_fail (index, error, sql);
  return TRUE;
}

/* exec() for a statement that SQLite answers SQLITE_BUSY at once, without
 * its busy handler, when another connection holds a lock it would have to
 * wait for while holding its own: turning a new file to WAL while another
 * process opens it too (an imap search and the indexer-worker on a mailbox
 * just created). Retried for as long as the busy handler would wait. */
static gboolean
exec_retry_busy (DovekieIndex *index, const gchar *sql, GError **error)
{
  gint64 since = g_get_monotonic_time ();

  while (sqlite3_exec (index->db, sql, NULL, NULL, NULL) != SQLITE_OK)
    {
      if ((sqlite3_errcode (index->db) & 0xff) != SQLITE_BUSY ||
          g_get_monotonic_time () - since >= index->busy_usec)
        return sql_fail (index, error, sql);
      g_usleep (1000);
    }
  return TRUE;
}

static gboolean
get_meta (DovekieIndex *index, const gchar *key, gint64 *value_r, GError **error)
{
  sqlite3_stmt *stmt = index->get_meta;
  int rc;

  *value_r = 0;
  if (stmt == NULL)
    {
      /* a failed recreate left no database */
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "%s: index is closed",
                   index->path);
      return FALSE;
    }
  sqlite3_bind_text (stmt, 1, key, -1, SQLITE_STATIC);
  rc = sqlite3_step (stmt);
  if (rc == SQLITE_ROW)
    *value_r = sqlite3_column_int64 (stmt, 0);
  sqlite3_reset (stmt);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return sql_fail (index, error, "reading meta");
  return TRUE;
}

static gboolean
set_meta (DovekieIndex *index, const gchar *key, gint64 value, GError **error)
{
  sqlite3_stmt *stmt = index->set_meta;
  int rc;

  sqlite3_bind_text (stmt, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (stmt, 2, value);
  rc = sqlite3_step (stmt);
  sqlite3_reset (stmt);
  if (rc != SQLITE_DONE)
    return sql_fail (index, error, "writing meta");
  return TRUE;
}

/* The committed last UID. */
static gboolean
get_last_uid_meta (DovekieIndex *index, guint32 *last_uid_r, GError **error)
{
  gint64 value = 0;

  if (!get_meta (index, "last_uid", &value, error))
    return FALSE;
  *last_uid_r = (guint32) CLAMP (value, 0, G_MAXUINT32);
  return TRUE;
}

/* ---- the writer's cache of known words (DovekieVocabSet) ---- */

/* Slots of a new set; it doubles from there. The unit tests start it at
 * 16, so that their small vocabularies make it grow (and rehash). */
#ifndef VOCAB_SET_MIN_SLOTS
#define VOCAB_SET_MIN_SLOTS 1024
#endif

static guint32
vocab_hash (const gchar *word, gsize len)
{
  guint32 hash = 2166136261u;

  for (gsize i = 0; i < len; i++)
    hash = (hash ^ (guchar) word[i]) * 16777619u;
  return hash != 0 ? hash : 1;
}

/* The slot of `word`, or the empty slot where it would go. */
static DovekieVocabSlot *
vocab_set_slot (DovekieVocabSet *set, const gchar *word, gsize len, guint32 hash)
{
  for (guint i = hash & set->mask;; i = (i + 1) & set->mask)
    {
      DovekieVocabSlot *slot = &set->slots[i];
      const guint8 *held;

      if (slot->hash == 0)
        return slot;
      if (slot->hash != hash)
        continue;
      held = set->words->data + slot->offset;
      if (held[0] == len && memcmp (held + 1, word, len) == 0)
        return slot;
    }
}

static gboolean
vocab_set_contains (DovekieVocabSet *set, const gchar *word, gsize len)
{
  return set->count > 0 && vocab_set_slot (set, word, len, vocab_hash (word, len))->hash != 0;
}

/* Adds `word` (at most DOVEKIE_SEARCH_WORD_BYTES bytes), which the set
 * does not hold. The slots double when three quarters full: a probe
 * sequence is then still about two slots, mostly in one cache line, and
 * the 186k words of corpus x10 take 2 MiB of slots, not 4. */
static void
vocab_set_add (DovekieVocabSet *set, const gchar *word, gsize len)
{
  guint32 hash = vocab_hash (word, len);
  DovekieVocabSlot *slot;
  guint8 len_byte = (guint8) len;

  if ((set->count + 1) * 4 > (set->mask + 1) * 3 || set->slots == NULL)
    {
      guint slots = set->slots == NULL ? VOCAB_SET_MIN_SLOTS : (set->mask + 1) * 2;
      DovekieVocabSlot *old = set->slots;
      guint old_slots = set->slots == NULL ? 0 : set->mask + 1;

      set->slots = g_new0 (DovekieVocabSlot, slots);
      set->mask = slots - 1;
      for (guint i = 0; i < old_slots; i++)
        if (old[i].hash != 0)
          {
            guint j = old[i].hash & set->mask;

            while (set->slots[j].hash != 0)
              j = (j + 1) & set->mask;
            set->slots[j] = old[i];
          }
      g_free (old);
    }
  slot = vocab_set_slot (set, word, len, hash);
  slot->hash = hash;
  slot->offset = set->words->len;
  g_byte_array_append (set->words, &len_byte, 1);
  g_byte_array_append (set->words, (const guint8 *) word, (guint) len);
  set->count++;
}

/* Empties the set; its slots stay allocated (zeroed), as large as the
 * vocabulary made them, to be filled again. */
static void
vocab_set_clear (DovekieVocabSet *set)
{
  if (set->count > 0)
    memset (set->slots, 0, (set->mask + 1) * sizeof *set->slots);
  set->count = 0;
  g_byte_array_set_size (set->words, 0);
}

/* Empties the writer's cache of known words; the first row of the next
 * batch fills it again from the vocabulary (vocab_catch_up()). */
static void
vocab_uncache (DovekieIndex *index)
{
  vocab_set_clear (&index->vocab_known);
  index->vocab_known_upto = 0;
}

/* Drops the words of the batch not yet logged (a rollback, a reset) and
 * the cache, which may hold them. */
static void
vocab_forget (DovekieIndex *index)
{
  g_string_truncate (index->vocab_added, 0);
  vocab_uncache (index);
}

/* After a rollback or a reset by this handle: what the lookup read of the
 * vocabulary may be gone (a rolled-back batch's log seq numbers come
 * again, with other words), so it is read again, and the cache that was
 * filled from it goes too. */
static void
vocab_unread (DovekieIndex *index)
{
  g_string_truncate (index->vocab_text, 0);
  vocab_uncache (index);
}

/* Starts an indexing run from the committed state: its last UID and
 * generation, whatever reset happened before. */
static gboolean
start_run (DovekieIndex *index, GError **error)
{
  if (!get_last_uid_meta (index, &index->last_uid, error) ||
      !get_meta (index, "generation", &index->generation, error))
    return FALSE;
  index->stale = FALSE;
  vocab_forget (index);
  return TRUE;
}

static void
close_db (DovekieIndex *index)
{
  g_clear_pointer (&index->insert_body, sqlite3_finalize);
  g_clear_pointer (&index->insert_header, sqlite3_finalize);
  g_clear_pointer (&index->set_meta, sqlite3_finalize);
  g_clear_pointer (&index->get_meta, sqlite3_finalize);
  g_clear_pointer (&index->add_gone, sqlite3_finalize);
  g_clear_pointer (&index->add_unindexed, sqlite3_finalize);
  g_clear_pointer (&index->load_gone, sqlite3_finalize);
  g_clear_pointer (&index->load_unindexed, sqlite3_finalize);
  g_clear_pointer (&index->match_body, sqlite3_finalize);
  g_clear_pointer (&index->match_header, sqlite3_finalize);
  g_clear_pointer (&index->insert_vocab, sqlite3_finalize);
  vocab_unread (index);
  g_clear_pointer (&index->read_vocab, sqlite3_finalize);
  if (index->db != NULL)
    sqlite3_close_v2 (index->db);
  index->db = NULL;
  index->in_txn = FALSE;
  index->batch_docs = 0;
  index->batch_skipped = 0;
  index->batch_bytes = 0;
  index->run_docs = 0;
}

void (*dovekie_search_index_test_after_open) (const gchar *path) = NULL;

static void
remove_files (const gchar *path)
{
  g_autofree gchar *wal = g_strconcat (path, "-wal", NULL);
  g_autofree gchar *shm = g_strconcat (path, "-shm", NULL);

  /* The journal files first: a process that opens the index between two
   * unlinks then finds the old (corrupt) database and fails, instead of
   * pairing a new empty database with the old write-ahead log, which SQLite
   * would replay into it. Processes that had the old files open keep
   * working on them, consistent with themselves, until they close. */
  (void) g_unlink (wal);
  (void) g_unlink (shm);
  (void) g_unlink (path);
}

#define TERMS_TABLE(name)                                                                  \
  "CREATE VIRTUAL TABLE IF NOT EXISTS " name " USING fts5(t, tokenize = '"                 \
  DOVEKIE_SEARCH_TOKENIZER "', detail = none, content = '', columnsize = 0);"

/* The vocabulary (see dovekie-search-plan.h): vocab_log holds each short
 * word, one row of words ending in '\n' per batch that added any, for a
 * lookup to read (all at first, then the rows added since) and scan. */
static const gchar schema_sql[] =
  "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;"
  "CREATE TABLE IF NOT EXISTS gone(uid INTEGER PRIMARY KEY);"
  "CREATE TABLE IF NOT EXISTS unindexed(uid INTEGER PRIMARY KEY);"
  TERMS_TABLE ("body_terms") TERMS_TABLE ("header_terms")
  "CREATE TABLE IF NOT EXISTS vocab_log(seq INTEGER PRIMARY KEY, words TEXT NOT NULL);";

/* Runs `sql` once for each terms table, "@T" standing for its name. */
static gboolean
exec_each_table (DovekieIndex *index, const gchar *sql, GError **error)
{
  static const gchar *const tables[] = { "body_terms", "header_terms" };

  for (guint i = 0; i < G_N_ELEMENTS (tables); i++)
    {
      g_autoptr (GString) one = g_string_new (sql);

      g_string_replace (one, "@T", tables[i], 0);
      if (sqlite3_exec (index->db, one->str, NULL, NULL, NULL) != SQLITE_OK)
        return sql_fail (index, error, one->str);
    }
  return TRUE;
}

/* FTS5 settings of a new index (stored in it). A third of the CPU of
 * `doveadm index` goes to FTS5 writing its in-memory terms out as a segment
 * (each time they reach `hashsize`) and merging segments:
 *   - merging 16 segments of a level at a time instead of 4 rewrites each
 *     entry about half as often (about 15% less CPU), for a few more
 *     segments for a lookup to read and a larger index (0.40x of the
 *     mailbox instead of 0.35x at corpus x10);
 *   - 2 MiB of terms per segment instead of 1 MiB: one merge pass less
 *     every 16 segments, 10% less CPU at x10 (28.5 -> 25.5 s), index 0.42x
 *     -> 0.43x. 4 MiB was no faster and left 0.48x; the memory is the
 *     indexer's, once per open index.
 *   - usermerge 2: the 'merge' of tidy() also merges a level of only two
 *     segments.
 * `doveadm fts optimize` merges whatever is left into one segment. */
static const gchar fts5_config_sql[] =
  "INSERT INTO @T(@T, rank) VALUES('automerge', 16);"
  "INSERT INTO @T(@T, rank) VALUES('crisismerge', 32);"
  "INSERT INTO @T(@T, rank) VALUES('usermerge', 2);"
  "INSERT INTO @T(@T, rank) VALUES('hashsize', 2097152);";

/* Empties the tables inside the caller's transaction, and starts a new
 * generation: a writer of another process that was adding to the old
 * content sees it and stops (begin()). */
static gboolean
clear_tables (DovekieIndex *index, GError **error)
{
  gint64 generation = 0;

  if (!get_meta (index, "generation", &generation, error))
    return FALSE;
  index->generation = generation + 1;
  index->stale = FALSE;
  vocab_forget (index);
  vocab_unread (index);
  return exec (index, "DELETE FROM gone; DELETE FROM unindexed; DELETE FROM vocab_log;",
               error) &&
         exec_each_table (index, "INSERT INTO @T(@T) VALUES('delete-all');", error) &&
         set_meta (index, "last_uid", 0, error) &&
         set_meta (index, "generation", index->generation, error) &&
         set_meta (index, "uidvalidity", index->uidvalidity, error);
}

/* Words the writer's vocabulary cache holds at most: about 8 MiB (the
 * hash table's slots and the words), whatever the mailbox's size. The
 * unit tests make it small, so that every case meets a full cache. */
#ifndef VOCAB_KNOWN_MAX
#define VOCAB_KNOWN_MAX 262144
#endif

/* Remembers `word` (NUL-terminated, `len` bytes) as in the vocabulary; a
 * full cache is emptied first, and not filled again from what was read
 * (vocab_known_upto stays where the reading is): the words of the mail
 * to come fill it. */
static void
vocab_remember (DovekieIndex *index, const gchar *word, gsize len)
{
  if (index->vocab_known.count >= VOCAB_KNOWN_MAX)
    {
      vocab_set_clear (&index->vocab_known);
      index->vocab_forgot = TRUE;
    }
  vocab_set_add (&index->vocab_known, word, len);
}

/* The tokenizer's word function: a short word of the row being inserted,
 * logged with the batch unless the cache knows it. A word the cache lost
 * (a vocabulary past VOCAB_KNOWN_MAX words, or one another writer added
 * since this one last read) is logged again: a lookup takes each word
 * once whatever the log repeats, and optimize leaves it once. So no
 * table has to say for sure whether a word is new: keeping the words in
 * a table of their own, to ask it, cost 12% of the build and 30% of the
 * index. */
static void
note_word (gpointer data, const gchar *word, gsize len)
{
  DovekieIndex *index = data;

  g_assert (len <= DOVEKIE_SEARCH_WORD_BYTES);
  if (vocab_set_contains (&index->vocab_known, word, len))
    return;
  vocab_remember (index, word, len);
  g_string_append_len (index->vocab_added, word, (gssize) len);
  g_string_append_c (index->vocab_added, '\n');
}

/* Logs the words the batch added, in one vocab_log row. */
static gboolean
flush_vocab (DovekieIndex *index, GError **error)
{
  int rc;

  if (index->vocab_added->len == 0)
    return TRUE;
  sqlite3_bind_text (index->insert_vocab, 1, index->vocab_added->str,
                     (int) index->vocab_added->len, SQLITE_STATIC);
  rc = sqlite3_step (index->insert_vocab);
  sqlite3_reset (index->insert_vocab);
  sqlite3_clear_bindings (index->insert_vocab);
  if (rc != SQLITE_DONE)
    return sql_fail (index, error, "logging words");
  g_string_truncate (index->vocab_added, 0);
  return TRUE;
}

/* Inside a write transaction: reads the vocabulary logged since this
 * handle last read it (all of it at first; by any writer) and puts its
 * words into the cache, so that a run adds to the log only words that
 * are new. The cache takes the first VOCAB_KNOWN_MAX / 2 (the words
 * logged first are mostly the common ones) and leaves room for the new
 * words of a batch. At corpus x1 the vocabulary is 140k words (1.3 MB): reading
 * it takes a few milliseconds. */
static gboolean
vocab_catch_up (DovekieIndex *index, GError **error)
{
  const gchar *text, *end, *word;

  if (!dovekie_search_vocab_read (index, error))
    return FALSE;
  text = index->vocab_text->str;
  end = text + index->vocab_text->len;
  /* vocab_text is '\n', then words each followed by '\n' */
  for (word = text + MAX (index->vocab_known_upto, 1); word < end;)
    {
      const gchar *stop = memchr (word, '\n', (gsize) (end - word));
      gsize len = (gsize) (stop - word);

      if (index->vocab_known.count >= VOCAB_KNOWN_MAX / 2)
        {
          index->vocab_forgot = TRUE;
          break;
        }
      if (len <= DOVEKIE_SEARCH_WORD_BYTES &&
          !vocab_set_contains (&index->vocab_known, word, len))
        vocab_remember (index, word, len);
      word = stop + 1;
    }
  index->vocab_known_upto = index->vocab_text->len;
  return TRUE;
}

/* The statements every write and lookup uses, compiled once. */
static gboolean
prepare_all (DovekieIndex *index, GError **error)
{
  const struct {
    sqlite3_stmt **stmt;
    const gchar *sql;
  } stmts[] = {
    { &index->insert_body, "INSERT INTO body_terms(rowid, t) VALUES(?, ?)" },
    { &index->insert_header, "INSERT INTO header_terms(rowid, t) VALUES(?, ?)" },
    { &index->set_meta, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)" },
    { &index->get_meta, "SELECT value FROM meta WHERE key = ?" },
    { &index->add_gone, "INSERT OR IGNORE INTO gone(uid) VALUES(?)" },
    { &index->add_unindexed, "INSERT OR IGNORE INTO unindexed(uid) VALUES(?)" },
    { &index->load_gone, "SELECT uid FROM gone ORDER BY uid" },
    { &index->load_unindexed, "SELECT uid FROM unindexed ORDER BY uid" },
    { &index->match_body,
      "SELECT rowid FROM body_terms WHERE body_terms MATCH ? ORDER BY rowid" },
    { &index->match_header,
      "SELECT rowid FROM header_terms WHERE header_terms MATCH ? ORDER BY rowid" },
    { &index->insert_vocab, "INSERT INTO vocab_log(words) VALUES(?)" },
    { &index->read_vocab, "SELECT seq, words FROM vocab_log WHERE seq > ? ORDER BY seq" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (stmts); i++)
    if (sqlite3_prepare_v3 (index->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
                            stmts[i].stmt, NULL) != SQLITE_OK)
      return sql_fail (index, error, stmts[i].sql);
  return TRUE;
}

/* Runs a prepared one-row write with `uid` bound to its parameter. */
static gboolean
step_uid (DovekieIndex *index, sqlite3_stmt *stmt, guint32 uid, GError **error)
{
  int rc;

  sqlite3_bind_int64 (stmt, 1, uid);
  rc = sqlite3_step (stmt);
  sqlite3_reset (stmt);
  if (rc != SQLITE_DONE)
    return sql_fail (index, error, sqlite3_sql (stmt));
  return TRUE;
}

static gboolean
schema_is_empty (DovekieIndex *index, gboolean *empty_r, GError **error)
{
  sqlite3_stmt *stmt = NULL;
  int rc;

  rc = sqlite3_prepare_v2 (index->db, "SELECT count(*) FROM sqlite_schema", -1, &stmt, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step (stmt);
  if (rc != SQLITE_ROW)
    {
      (void) sql_fail (index, error, "reading the schema");
      sqlite3_finalize (stmt);
      return FALSE;
    }
  *empty_r = sqlite3_column_int64 (stmt, 0) == 0;
  sqlite3_finalize (stmt);
  return TRUE;
}

/* In a new, empty database: auto_vacuum, so that optimize gives the
 * pages its merge freed back to the file system (a merged index file kept
 * its old size before). It can only be set before the first table; the
 * indexes made before keep NONE, and optimize then only merges. Like the
 * switch to WAL, it may meet SQLITE_BUSY at once while another process
 * sets up the same new file (an expunge in imap and the indexer-worker on
 * a mailbox just created). While it does, the schema is read again: the
 * process that holds the lock may be the one that made the tables, and
 * then went on indexing, holding the write lock while it reads mail (the
 * concurrent stress test waited here for the whole BUSY_TIMEOUT_USEC, and
 * the expunge that opened the index failed). */
static gboolean
set_auto_vacuum (DovekieIndex *index, GError **error)
{
  gint64 since = g_get_monotonic_time ();
  gboolean empty;

  for (;;)
    {
      if (!schema_is_empty (index, &empty, error))
        return FALSE;
      if (!empty)
        return TRUE;
      if (sqlite3_exec (index->db, "PRAGMA auto_vacuum = INCREMENTAL", NULL, NULL, NULL) ==
          SQLITE_OK)
        return TRUE;
      if (!is_busy_code (sqlite3_errcode (index->db)) ||
          g_get_monotonic_time () - since >= index->busy_usec)
        return sql_fail (index, error, "PRAGMA auto_vacuum = INCREMENTAL");
      g_usleep (1000);
    }
}

static gboolean
open_db (DovekieIndex *index, GError **error)
{
  g_autofree gchar *pragmas = NULL;
  gint64 schema = 0, uidvalidity = 0;
  int rc;

  rc = sqlite3_open_v2 (index->path, &index->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK)
    {
      if (index->db == NULL)
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_IO, "%s: cannot open: %s",
                       index->path, sqlite3_errstr (rc));
          return FALSE;
        }
      return sql_fail (index, error, "opening");
    }
  sqlite3_extended_result_codes (index->db, 1);
  if (dovekie_search_index_test_after_open != NULL)
    dovekie_search_index_test_after_open (index->path);
  index->busy_usec = BUSY_TIMEOUT_USEC;
  sqlite3_busy_handler (index->db, busy_wait, index);
  if (!dovekie_search_tokenizer_register (index->db, note_word, index, error))
    return FALSE;
  if (!set_auto_vacuum (index, error))
    return FALSE;
  pragmas = g_strdup_printf ("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                             "PRAGMA cache_size = -%" G_GUINT64_FORMAT ";",
                             MAX (index->limits.cache_size / 1024, 64));
  if (!exec_retry_busy (index, pragmas, error) || !exec (index, schema_sql, error))
    return FALSE;
  if (!prepare_all (index, error))
    return FALSE;
  if (!get_meta (index, "schema", &schema, error) ||
      !get_meta (index, "uidvalidity", &uidvalidity, error) || !start_run (index, error))
    return FALSE;

  if (schema == DOVEKIE_SEARCH_SCHEMA && uidvalidity == index->uidvalidity)
    return TRUE;
  if (schema != 0 && schema < DOVEKIE_SEARCH_SCHEMA)
    {
      index->outdated = TRUE;
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                   "%s: schema %" G_GINT64_FORMAT " is older than %d", index->path, schema,
                   DOVEKIE_SEARCH_SCHEMA);
      return FALSE;
    }
  if (schema != 0 && schema != DOVEKIE_SEARCH_SCHEMA)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                   "%s: schema %" G_GINT64_FORMAT " is not %d", index->path, schema,
                   DOVEKIE_SEARCH_SCHEMA);
      return FALSE;
    }
  if (uidvalidity != 0)
    index_log (index, DOVEKIE_LOG_INFO, "%s: uidvalidity changed, index emptied", index->path);
  index->last_uid = 0;
  return exec (index, "BEGIN IMMEDIATE", error) &&
         (schema != 0 || exec_each_table (index, fts5_config_sql, error)) &&
         set_meta (index, "schema", DOVEKIE_SEARCH_SCHEMA, error) &&
         clear_tables (index, error) &&
         exec (index, "COMMIT", error);
}

/* How often open_db_settled opens again a file removed under it. */
#define OPEN_ATTEMPTS 4

/* open_db, again when the file was removed under it: a process that found
 * the index corrupt removes its files (remove_files) while another has
 * just opened or created them, and SQLite then refuses every write with
 * SQLITE_READONLY_DBMOVED ("attempt to write a readonly database", seen
 * as doveadm index and imap searches rebuilt a corrupt index at once), or
 * with SQLITE_IOERR_FSTAT when the removed file was in WAL mode.
 * Opening again finds the file that is there now. */
static gboolean
open_db_settled (DovekieIndex *index, GError **error)
{
  for (guint attempt = 1;; attempt++)
    {
      g_autoptr (GError) local = NULL;

      if (open_db (index, &local))
        return TRUE;
      int code = index->db != NULL ? sqlite3_extended_errcode (index->db) : SQLITE_OK;

      /* A new file removed under us: DBMOVED at the first write; a file
       * already in WAL mode: IOERR_FSTAT at the first read (SQLite 3.40). */
      if (attempt == OPEN_ATTEMPTS ||
          (code != SQLITE_READONLY_DBMOVED && code != SQLITE_IOERR_FSTAT))
        {
          g_propagate_error (error, g_steal_pointer (&local));
          return FALSE;
        }
      close_db (index);
    }
}

/* Drops a corrupt or outdated file and starts an empty index in its place. */
static gboolean
recreate (DovekieIndex *index, GError **error)
{
  if (index->outdated)
    index_log (index, DOVEKIE_LOG_INFO, "%s: index has an older format; removed, it will be "
               "rebuilt", index->path);
  else
    index_log (index, DOVEKIE_LOG_WARNING, "%s: index is corrupt; removed, it will be rebuilt",
               index->path);
  index->outdated = FALSE;
  close_db (index);
  remove_files (index->path);
  index->last_uid = 0;
  return open_db_settled (index, error);
}

DovekieIndex *
dovekie_search_index_open_with (DovekieContext *ctx, const gchar *path, guint32 uidvalidity,
                                const DovekieSearchLimits *limits, GError **error)
{
  g_autoptr (GError) local = NULL;
  DovekieIndex *index = g_new0 (DovekieIndex, 1);

  index->ctx = ctx;
  index->path = g_strdup (path);
  index->uidvalidity = uidvalidity;
  index->limits = *limits;
  for (guint i = 0; i < DOVEKIE_INDEX_FIELD_COUNT; i++)
    index->chunk[i] = g_string_new (NULL);
  index->vocab_known.words = g_byte_array_new ();
  index->vocab_added = g_string_new (NULL);
  index->vocab_text = g_string_new (NULL);
  index->pending_gone = g_array_new (FALSE, FALSE, sizeof (guint32));

  if (!open_db_settled (index, &local))
    {
      gboolean corrupt = index->outdated ||
                         (index->db != NULL && is_corrupt_code (sqlite3_errcode (index->db)));

      if (!corrupt || !recreate (index, error))
        {
          if (!corrupt)
            g_propagate_error (error, g_steal_pointer (&local));
          dovekie_search_index_vtable.close (index);
          return NULL;
        }
    }
  return index;
}

static DovekieIndex *
index_open (DovekieContext *ctx, const gchar *path, guint32 uidvalidity, GError **error)
{
  DovekieSearchLimits limits = {
    .batch_size = (guint) ctx->api->get_uint (ctx, "dovekie_search_batch_size"),
    .cache_size = ctx->api->get_uint (ctx, "dovekie_search_cache_size"),
    .max_text = ctx->api->get_uint (ctx, "dovekie_search_max_text"),
  };
  return dovekie_search_index_open_with (ctx, path, uidvalidity, &limits, error);
}

/* Counts a committed batch: event dovekie_search_indexed with the
 * messages it added (indexed, or recorded as unindexed) and their bytes of
 * text. Nothing without a context (tests, tools) or for an empty batch. */
static void
emit_indexed (DovekieIndex *index, guint docs, guint64 bytes)
{
  gchar messages[16], text_bytes[24];

  if (index->ctx == NULL || docs == 0)
    return;
  g_snprintf (messages, sizeof messages, "%u", docs);
  g_snprintf (text_bytes, sizeof text_bytes, "%" G_GUINT64_FORMAT, bytes);
  dovekie_emit (index->ctx, "dovekie_search_indexed", "messages", messages,
                "bytes", text_bytes, NULL);
}

static gboolean
commit (DovekieIndex *index, GError **error)
{
  guint docs = index->batch_docs;
  guint64 bytes = index->batch_bytes;

  if (!index->in_txn)
    return TRUE;
  index->in_txn = FALSE;
  index->batch_docs = 0;
  index->batch_skipped = 0;
  index->batch_bytes = 0;
  if (!flush_vocab (index, error) || !set_meta (index, "last_uid", index->last_uid, error) ||
      !exec (index, "COMMIT", error))
    {
      (void) sqlite3_exec (index->db, "ROLLBACK", NULL, NULL, NULL);
      vocab_forget (index);
      vocab_unread (index);
      return FALSE;
    }
  index->run_docs += docs;
  emit_indexed (index, docs, bytes);
  return TRUE;
}

/* Starts a write transaction and reads, now that no other writer can
 * change them, what other processes committed since this one last looked:
 *   - the same generation: the last UID is raised to the committed one,
 *     so this writer skips the messages another one has added, and the
 *     last UID it commits never goes back. (Each writer commits its own
 *     last UID; before, one that was behind could lower it, and a search
 *     that had been told the higher one lost the messages between: `NOT
 *     BODY the` missed 11 UIDs in the ASan integration run.)
 *   - another generation: the index was reset under this run, and adding
 *     the run's remaining messages would claim the ones before them. The
 *     run goes stale: its messages are skipped, and the last UID stays the
 *     committed one. */
static gboolean
begin (DovekieIndex *index, GError **error)
{
  gint64 generation = 0;
  guint32 committed = 0;

  if (index->in_txn)
    return TRUE;
  if (!exec (index, "BEGIN IMMEDIATE", error))
    return FALSE;
  index->in_txn = TRUE;
  if (!get_last_uid_meta (index, &committed, error) ||
      !get_meta (index, "generation", &generation, error))
    return FALSE;
  if (generation != index->generation && !index->stale)
    {
      index->stale = TRUE;
      vocab_forget (index);
      index_log (index, DOVEKIE_LOG_INFO, "%s: index was emptied by another process while "
                 "this one added to it; the rest of this run is left to the next one",
                 index->path);
    }
  index->last_uid = index->stale ? committed : MAX (index->last_uid, committed);
  /* The first row of the batch reads what other writers logged. */
  index->vocab_current = FALSE;
  /* Expunges that could not wait for the lock (index_expunge). If this
   * transaction rolls back they are lost, which leaves rows of UIDs the
   * mailbox no longer has: never an answer Dovecot keeps. */
  for (guint i = 0; i < index->pending_gone->len; i++)
    if (!step_uid (index, index->add_gone, g_array_index (index->pending_gone, guint32, i), error))
      return FALSE;
  g_array_set_size (index->pending_gone, 0);
  return TRUE;
}

/* A write failed: roll the batch back, and replace a corrupt file. */
static void
write_failed (DovekieIndex *index)
{
  if (index->db != NULL && is_corrupt_code (sqlite3_errcode (index->db)))
    {
      index->poisoned = TRUE;
      (void) recreate (index, NULL);
      return;
    }
  if (index->in_txn)
    (void) sqlite3_exec (index->db, "ROLLBACK", NULL, NULL, NULL);
  index->in_txn = FALSE;
  vocab_forget (index);
  vocab_unread (index);
  index->batch_docs = 0;
  index->batch_skipped = 0;
  index->batch_bytes = 0;
  if (index->db != NULL)
    (void) get_last_uid_meta (index, &index->last_uid, NULL);
}

static void
index_close (DovekieIndex *index)
{
  g_autoptr (GError) error = NULL;

  if (index == NULL)
    return;
  if (index->db != NULL && !index->poisoned && !commit (index, &error))
    index_log (index, DOVEKIE_LOG_ERROR, "%s", error->message);
  /* Expunges still pending: one transaction, waiting for the lock as long
   * as a tidy would (a close may come inside a sync too, see
   * index_expunge); if it cannot, those rows stay, which only costs
   * space. */
  if (index->db != NULL && !index->poisoned && index->pending_gone->len > 0 &&
      error == NULL)
    {
      guint pending = index->pending_gone->len;

      index->busy_usec = CLOSE_PENDING_USEC;
      if (!begin (index, &error) || !commit (index, &error))
        {
          write_failed (index);
          index_log (index, DOVEKIE_LOG_WARNING, "%s: %u expunged messages stay in the "
                     "index (%s); searches are not affected, `doveadm fts rescan` "
                     "drops them", index->path, pending, error->message);
        }
    }
  close_db (index);
  g_array_free (index->pending_gone, TRUE);
  for (guint i = 0; i < DOVEKIE_INDEX_FIELD_COUNT; i++)
    g_string_free (index->chunk[i], TRUE);
  g_string_free (index->vocab_added, TRUE);
  g_string_free (index->vocab_text, TRUE);
  g_free (index->vocab_known.slots);
  g_byte_array_unref (index->vocab_known.words);
  g_free (index->path);
  g_free (index);
}

static gboolean
check_writable (DovekieIndex *index, GError **error)
{
  if (index->poisoned || index->db == NULL)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                   "%s: index was replaced; reopen it to index again", index->path);
      return FALSE;
    }
  return TRUE;
}

static gboolean
index_get_last_uid (DovekieIndex *index, guint32 *last_uid_r, GError **error)
{
  /* Outside a batch, a new run. */
  if (!index->in_txn && !start_run (index, error))
    return FALSE;
  *last_uid_r = index->last_uid;
  return TRUE;
}

static gboolean
insert_row (DovekieIndex *index, DovekieIndexField field, const gchar *text, gsize len,
            GError **error)
{
  gboolean body = field == DOVEKIE_INDEX_FIELD_BODY;
  sqlite3_stmt *stmt = body ? index->insert_body : index->insert_header;
  int rc;

  if (!index->vocab_current && !vocab_catch_up (index, error))
    return FALSE;
  index->vocab_current = TRUE;

  sqlite3_bind_int64 (stmt, 1, body ? (sqlite3_int64) index->doc_uid
                                    : (sqlite3_int64) index->doc_uid << DOVEKIE_SEARCH_FIELD_BITS |
                                        field);
  sqlite3_bind_text (stmt, 2, text, (int) len, SQLITE_STATIC);
  rc = sqlite3_step (stmt);
  sqlite3_reset (stmt);
  sqlite3_clear_bindings (stmt);
  if (rc != SQLITE_DONE)
    return sql_fail (index, error, "inserting text");
  return TRUE;
}

/* Stores the chunk and keeps at least its last DOVEKIE_SEARCH_WORD_BYTES
 * bytes (from a code point boundary): a short word or a run of that
 * length cut at the end of this row is then whole in the next one. */
static gboolean
flush_chunk (DovekieIndex *index, DovekieIndexField field, gboolean last, GError **error)
{
  GString *chunk = index->chunk[field];
  const gchar *keep = chunk->str + chunk->len;

  if (chunk->len == 0)
    return TRUE;
  if (!insert_row (index, field, chunk->str, chunk->len, error))
    return FALSE;
  if (last)
    {
      g_string_truncate (chunk, 0);
      return TRUE;
    }
  while (keep > chunk->str && (chunk->str + chunk->len - keep < DOVEKIE_SEARCH_WORD_BYTES ||
                                ((guchar) *keep & 0xc0) == 0x80))
    keep--;
  g_string_erase (chunk, 0, keep - chunk->str);
  return TRUE;
}

static gboolean
index_doc_begin (DovekieIndex *index, guint32 uid, GError **error)
{
  if (!check_writable (index, error))
    return FALSE;
  index->doc_open = FALSE;
  for (guint i = 0; i < DOVEKIE_INDEX_FIELD_COUNT; i++)
    g_string_truncate (index->chunk[i], 0);
  if (!begin (index, error))
    {
      write_failed (index);
      return FALSE;
    }
  index->doc_open = TRUE;
  index->doc_skip = index->stale || uid <= index->last_uid;
  index->doc_uid = uid;
  index->doc_bytes = 0;
  index->doc_too_big = FALSE;
  return TRUE;
}

static gboolean
index_doc_append (DovekieIndex *index, DovekieIndexField field, const gchar *text, gsize len,
                  GError **error)
{
  GString *chunk;
  const gchar *end;
  gsize old_len;

  g_return_val_if_fail ((guint) field < DOVEKIE_INDEX_FIELD_COUNT, FALSE);
  if (!index->doc_open)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "doc_append without doc_begin");
      return FALSE;
    }
  if (index->doc_too_big || index->doc_skip)
    return TRUE;
  index->doc_bytes += len;
  if (index->doc_bytes > index->limits.max_text)
    {
      index->doc_too_big = TRUE;
      return TRUE;
    }
  chunk = index->chunk[field];
  old_len = chunk->len;
  /* The tokenizer reads code points: store valid UTF-8 only. */
  while (len > 0)
    {
      if (g_utf8_validate_len (text, len, &end))
        {
          g_string_append_len (chunk, text, len);
          break;
        }
      g_string_append_len (chunk, text, end - text);
      g_string_append (chunk, "\xef\xbf\xbd");
      len -= (gsize) (end - text) + 1;
      text = end + 1;
    }
  /* NUL would end the text for the tokenizer; it is a separator anyway.
   * (memchr: mail text has none, and a byte loop over every byte was
   * most of this function's CPU.) */
  for (gchar *nul = chunk->str + old_len;
       (nul = memchr (nul, '\0', (gsize) (chunk->str + chunk->len - nul))) != NULL;)
    *nul = ' ';
  if (chunk->len >= DOVEKIE_SEARCH_CHUNK && !flush_chunk (index, field, FALSE, error))
    {
      index->doc_open = FALSE;
      write_failed (index);
      return FALSE;
    }
  return TRUE;
}

static gboolean
index_doc_end (DovekieIndex *index, GError **error)
{
  if (!index->doc_open)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "doc_end without doc_begin");
      return FALSE;
    }
  index->doc_open = FALSE;
  if (index->doc_skip)
    {
      /* Counted towards the batch, so that a writer skipping what another
       * one added still lets the lock go as often as one that adds. */
      index->batch_skipped++;
      goto batch_done;
    }
  for (guint i = 0; i < DOVEKIE_INDEX_FIELD_COUNT; i++)
    if (!flush_chunk (index, i, TRUE, error))
      goto failed;
  if (index->doc_too_big)
    {
      index_log (index, DOVEKIE_LOG_WARNING,
                 "uid %u: text is larger than dovekie_search_max_text (%" G_GUINT64_FORMAT
                 " bytes); not indexed, searches read it", index->doc_uid,
                 index->limits.max_text);
      if (!step_uid (index, index->add_unindexed, index->doc_uid, error))
        goto failed;
    }
  index->last_uid = MAX (index->last_uid, index->doc_uid);
  if (!index->doc_too_big)
    index->batch_bytes += index->doc_bytes;
  index->batch_docs++;
batch_done:
  if (index->batch_docs + index->batch_skipped >= index->limits.batch_size)
    {
      if (!commit (index, error))
        goto failed;
      g_usleep (YIELD_USEC);
    }
  return TRUE;

failed:
  write_failed (index);
  return FALSE;
}

/* An expunge is told from inside Dovecot's sync of the mailbox, which holds
 * the mailbox's locks (maildir's uidlist lock, the index's sync lock). An
 * indexer holds this index's write lock while it reads mail, and a read
 * can sync the same mailbox (a maildir file renamed meanwhile): waiting
 * here for the write lock then waits for a writer that waits for us, and
 * the expunge failed after BUSY_TIMEOUT_USEC ("database is locked", the
 * concurrent stress test). So an expunge never waits: without the lock,
 * its UID is kept in pending_gone and marked gone by the next transaction
 * this handle begins, or at close. Until then the row only answers for a
 * UID the mailbox no longer has, which Dovecot drops when it maps the
 * answer to its messages. */
static gboolean
index_expunge (DovekieIndex *index, guint32 uid, GError **error)
{
  g_autoptr (GError) busy = NULL;
  gboolean begun;

  if (!check_writable (index, error))
    return FALSE;
  if (!index->in_txn)
    {
      index->busy_usec = 0;
      begun = begin (index, &busy);
      index->busy_usec = BUSY_TIMEOUT_USEC;
      if (!begun && !index->in_txn && is_busy_code (sqlite3_errcode (index->db)))
        {
          g_array_append_val (index->pending_gone, uid);
          return TRUE;
        }
      if (!begun)
        {
          g_propagate_error (error, g_steal_pointer (&busy));
          write_failed (index);
          return FALSE;
        }
    }
  if (!step_uid (index, index->add_gone, uid, error))
    {
      write_failed (index);
      return FALSE;
    }
  return TRUE;
}

/* After a run that indexed DOVEKIE_SEARCH_TIDY_DOCS messages or more
 * (`doveadm index`, the first search of a mailbox), when the writer
 * flushes: merge work of run_docs / 4 pages on the levels with the most
 * segments, and the pages that merges freed leave the file. A build
 * leaves many small segments, each with its own copy of the common terms,
 * and free pages: at corpus x1 (schema 4) the vacuum alone took the index
 * from 0.59x of the mailbox to 0.55x, with the merge 0.51x, for 3-5% of
 * the build time (a whole optimize: 0.47x for 15%). Small runs (new mail)
 * leave it to FTS5's automerge and `doveadm fts optimize`.
 *
 * Another writer comes first: the merge goes in steps of
 * TIDY_STEP_PAGES, each its own transaction taken without waiting, and
 * stops when the lock is taken or the budget is spent. So a tidy delays
 * another indexer (doveadm index and a search's indexer on the same
 * mailbox) by one step at most once it has the lock. A failure only logs:
 * the index is whole either way, and a merge changes no answer (the same
 * rows, fewer segments).
 *
 * The time it may take is TIDY_MAX_CPU_USEC of this thread's CPU, not of
 * the clock: with a wall-clock limit, how far the merge got (and so the
 * index's size after a build) followed the machine's other jobs, 0.245x
 * to 0.258x of the mailbox for the same binary at corpus x10. TIDY_MAX_USEC
 * of the clock still bounds a tidy starved of CPU. */
#define TIDY_STEP_PAGES 64
#define TIDY_MAX_CPU_USEC (2 * G_USEC_PER_SEC)
#define TIDY_MAX_USEC (10 * G_USEC_PER_SEC)

static gint64
thread_cpu_usec (void)
{
  struct timespec ts;

  if (clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
    return g_get_monotonic_time ();
  return (gint64) ts.tv_sec * G_USEC_PER_SEC + ts.tv_nsec / 1000;
}

static void
tidy (DovekieIndex *index)
{
  static const gchar merge[] = "INSERT INTO @T(@T, rank) VALUES('merge', "
                               G_STRINGIFY (TIDY_STEP_PAGES) ");";
  g_autoptr (GError) error = NULL;
  gint64 deadline = g_get_monotonic_time () + TIDY_MAX_USEC;
  gint64 cpu_deadline = thread_cpu_usec () + TIDY_MAX_CPU_USEC;
  guint budget = index->run_docs / 4;

  if (index->run_docs < DOVEKIE_SEARCH_TIDY_DOCS)
    return;
  index->run_docs = 0;
  index->busy_usec = 0;
  for (guint done = 0; done < budget && g_get_monotonic_time () < deadline &&
       thread_cpu_usec () < cpu_deadline; done += TIDY_STEP_PAGES)
    {
      if (!exec (index, "BEGIN IMMEDIATE", &error))
        break;
      if (!exec_each_table (index, merge, &error) || !exec (index, "COMMIT", &error))
        {
          (void) sqlite3_exec (index->db, "ROLLBACK", NULL, NULL, NULL);
          break;
        }
      g_usleep (YIELD_USEC);
    }
  if (error == NULL)
    (void) exec (index, "PRAGMA incremental_vacuum;", &error);
  if (error != NULL && !is_busy_code (sqlite3_errcode (index->db)))
    index_log (index, DOVEKIE_LOG_WARNING, "tidying the index after indexing: %s",
               error->message);
  index->busy_usec = BUSY_TIMEOUT_USEC;
}

static gboolean compact_vocab (DovekieIndex *index, GError **error);

/* At the end of a run whose cache lost words: the words it logged may
 * repeat ones logged before, and a lookup reads the whole log, so the log
 * is rewritten with each word once. Then the vocabulary holds each word
 * once whatever the cache forgot, and a lookup costs what the distinct
 * words cost. A failure only leaves the repeats (a lookup takes each word
 * once anyway); the next run that forgets tries again. */
static void
compact_if_repeated (DovekieIndex *index)
{
  g_autoptr (GError) error = NULL;

  if (!index->vocab_forgot)
    return;
  if (compact_vocab (index, &error))
    index->vocab_forgot = FALSE;
  else if (!is_busy_code (sqlite3_errcode (index->db)))
    index_log (index, DOVEKIE_LOG_WARNING, "compacting the vocabulary: %s", error->message);
}

static gboolean
index_flush (DovekieIndex *index, GError **error)
{
  if (!check_writable (index, error))
    return FALSE;
  if (!commit (index, error))
    {
      write_failed (index);
      return FALSE;
    }
  /* Before tidy(), whose vacuum gives back the pages it frees. */
  compact_if_repeated (index);
  tidy (index);
  return TRUE;
}

gboolean
dovekie_search_vocab_read (DovekieIndex *index, GError **error)
{
  GString *text = index->vocab_text;
  gint64 generation = 0, epoch = 0;
  int rc;

  if (!get_meta (index, "generation", &generation, error) ||
      !get_meta (index, "vocab_epoch", &epoch, error))
    return FALSE;
  /* Another process reset the index since (its vocabulary was emptied),
   * or compacted the vocabulary. */
  if (generation != index->vocab_generation || epoch != index->vocab_epoch)
    vocab_unread (index);
  if (text->len == 0)
    {
      g_string_append_c (text, '\n');
      index->vocab_seq = 0;
      index->vocab_generation = generation;
      index->vocab_epoch = epoch;
    }
  sqlite3_bind_int64 (index->read_vocab, 1, index->vocab_seq);
  while ((rc = sqlite3_step (index->read_vocab)) == SQLITE_ROW)
    {
      index->vocab_seq = sqlite3_column_int64 (index->read_vocab, 0);
      g_string_append_len (text, (const gchar *) sqlite3_column_text (index->read_vocab, 1),
                           sqlite3_column_bytes (index->read_vocab, 1));
      /* Every word ends in '\n' (which the scans rely on), even in a row
       * this code did not write. */
      if (text->str[text->len - 1] != '\n')
        g_string_append_c (text, '\n');
    }
  sqlite3_reset (index->read_vocab);
  if (rc != SQLITE_DONE)
    {
      vocab_unread (index);
      return sql_fail (index, error, "reading the vocabulary");
    }
  return TRUE;
}

/* Reads the answer and the last UID it covers in one read transaction
 * (unless this handle is writing: it then reads its own batch), so that a
 * writer committing in between cannot make them disagree. On failure
 * *corrupt_r says whether SQLite found the file corrupt. */
static gboolean
lookup_in_snapshot (DovekieIndex *index, DovekieIndexScope scope, DovekieSearchPlan *plan,
                    DovekieIndexAddFunc add, gpointer data, guint32 *last_uid_r,
                    gboolean *corrupt_r, GError **error)
{
  gboolean reading = !index->in_txn;
  gboolean ok;

  *last_uid_r = index->last_uid;
  /* A writer reads its own batch: its new words too. */
  ok = (reading ? exec (index, "BEGIN", error) && get_last_uid_meta (index, last_uid_r, error)
                : flush_vocab (index, error)) &&
       dovekie_search_lookup_run (index, scope, plan, add, data, error);
  *corrupt_r = !ok && is_corrupt_code (sqlite3_errcode (index->db));
  /* Ending a read transaction cannot change the answer. */
  if (reading && sqlite3_get_autocommit (index->db) == 0)
    (void) sqlite3_exec (index->db, ok ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
  return ok;
}

static gboolean
index_lookup (DovekieIndex *index, DovekieIndexScope scope, const gchar *needle,
              DovekieIndexAddFunc add, gpointer data, guint32 *last_uid_r, gboolean *handled_r,
              GError **error)
{
  DovekieSearchPlan plan = { NULL, NULL, NULL, FALSE };
  gboolean ok = TRUE;

  *handled_r = FALSE;
  *last_uid_r = 0;
  if (index->db == NULL)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "%s: index is closed", index->path);
      return FALSE;
    }
  if ((guint) scope < DOVEKIE_INDEX_SCOPE_COUNT &&
      dovekie_search_plan_build (needle, strlen (needle), scope, &plan))
    {
      gboolean corrupt = FALSE;

      ok = lookup_in_snapshot (index, scope, &plan, add, data, last_uid_r, &corrupt, error);
      *handled_r = ok;
      if (corrupt)
        {
          index->poisoned = index->in_txn;
          (void) recreate (index, NULL);
        }
    }
  dovekie_search_plan_clear (&plan);
  return ok;
}

static gboolean
index_reset (DovekieIndex *index, GError **error)
{
  if (index->db == NULL && !open_db_settled (index, error))
    return FALSE;
  index->poisoned = FALSE;
  if (!begin (index, error) || !clear_tables (index, error))
    {
      write_failed (index);
      return FALSE;
    }
  index->last_uid = 0;
  return commit (index, error);
}

/* The vocabulary log in one row, each word once: mail delivered one
 * message at a time leaves a row per message, each read by the first
 * lookup of every process, and a word can be logged more than once (see
 * note_word()). The meta key vocab_epoch changes with it, so that every
 * reader reads the vocabulary again from the start. */
static gboolean
compact_vocab (DovekieIndex *index, GError **error)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GString) once = g_string_new (NULL);
  g_autofree gchar *copy = NULL;
  gchar *end;
  gint64 epoch = 0;
  gboolean ok;
  int rc;

  if (!exec (index, "BEGIN IMMEDIATE", error))
    return FALSE;
  vocab_unread (index);
  ok = dovekie_search_vocab_read (index, error) &&
       get_meta (index, "vocab_epoch", &epoch, error);
  if (ok)
    {
      /* '\n', then words each followed by '\n': made C strings in place */
      copy = g_memdup2 (index->vocab_text->str, index->vocab_text->len);
      end = copy + index->vocab_text->len;
      for (gchar *word = copy + 1, *stop; word < end; word = stop + 1)
        {
          stop = memchr (word, '\n', (gsize) (end - word));
          *stop = '\0';
          if (!g_hash_table_contains (seen, word))
            {
              g_hash_table_add (seen, word);
              g_string_append_len (once, word, stop - word);
              g_string_append_c (once, '\n');
            }
        }
      ok = exec (index, "DELETE FROM vocab_log", error);
    }
  if (ok && once->len > 0)
    {
      sqlite3_bind_text (index->insert_vocab, 1, once->str, (int) once->len, SQLITE_STATIC);
      rc = sqlite3_step (index->insert_vocab);
      sqlite3_reset (index->insert_vocab);
      sqlite3_clear_bindings (index->insert_vocab);
      ok = rc == SQLITE_DONE || sql_fail (index, error, "logging words");
    }
  ok = ok && set_meta (index, "vocab_epoch", epoch + 1, error) && exec (index, "COMMIT", error);
  if (!ok && sqlite3_get_autocommit (index->db) == 0)
    (void) sqlite3_exec (index->db, "ROLLBACK", NULL, NULL, NULL);
  vocab_unread (index);
  return ok;
}

/* Merges every segment into one: the terms that batches wrote into
 * separate segments are stored once (about 0.45x of the mailbox instead
 * of 0.55x for the test corpus at x1), and the freed pages leave the file.
 * Costs about a fifth of the time the index took to build. The vocabulary
 * is rewritten with each word once. */
static gboolean
index_optimize (DovekieIndex *index, GError **error)
{
  if (!check_writable (index, error) || !commit (index, error))
    return FALSE;
  index->run_docs = 0;
  return exec_each_table (index, "INSERT INTO @T(@T) VALUES('optimize');", error) &&
         compact_vocab (index, error) &&
         exec (index, "PRAGMA incremental_vacuum;"
                      "PRAGMA wal_checkpoint(TRUNCATE);", error);
}

const DovekieIndexVtable dovekie_search_index_vtable = {
  .open = index_open,
  .close = index_close,
  .get_last_uid = index_get_last_uid,
  .doc_begin = index_doc_begin,
  .doc_append = index_doc_append,
  .doc_end = index_doc_end,
  .expunge = index_expunge,
  .flush = index_flush,
  .lookup = index_lookup,
  .reset = index_reset,
  .optimize = index_optimize,
};
