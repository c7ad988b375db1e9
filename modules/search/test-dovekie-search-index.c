/* Unit tests for the SQLite index (dovekie-search-index.c). */
#include "dovekie-config.h"

#include <check.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <sqlite3.h>

#include "dovekie-search-index.h"
#include "dovekie-search-index-private.h"
#include "dovekie-search-plan.h"

static const DovekieIndexVtable *v = &dovekie_search_index_vtable;
static gchar *tmpdir;
static gchar *dbpath;

static const DovekieSearchLimits limits = { 2, 1024 * 1024, 1024 * 1024 };

static void
setup (void)
{
  dovekie_search_index_test_after_open = NULL;
  tmpdir = g_dir_make_tmp ("dovekie-search-XXXXXX", NULL);
  ck_assert_ptr_nonnull (tmpdir);
  dbpath = g_build_filename (tmpdir, "index.db", NULL);
}

static void
rm_rf (const gchar *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const gchar *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree gchar *p = g_build_filename (dir, name, NULL);
      (void) g_unlink (p);
    }
  (void) g_rmdir (dir);
}

static void
teardown (void)
{
  (void) g_chmod (tmpdir, 0700);
  rm_rf (tmpdir);
  g_clear_pointer (&tmpdir, g_free);
  g_clear_pointer (&dbpath, g_free);
}

static DovekieIndex *
open_index (guint32 uidvalidity)
{
  g_autoptr (GError) error = NULL;
  DovekieIndex *index = dovekie_search_index_open_with (NULL, dbpath, uidvalidity, &limits, &error);

  ck_assert_msg (index != NULL, "open: %s", error != NULL ? error->message : "?");
  return index;
}

/* An index that takes texts of a few chunks (the default limits' max_text
 * is 1 MiB). */
static DovekieIndex *
open_index_for_chunks (void)
{
  const DovekieSearchLimits big = { 2, 1024 * 1024, 4 * DOVEKIE_SEARCH_CHUNK };
  DovekieIndex *index = dovekie_search_index_open_with (NULL, dbpath, 1, &big, NULL);

  ck_assert_ptr_nonnull (index);
  return index;
}

static void
add_doc (DovekieIndex *index, guint32 uid, const gchar *header, const gchar *body)
{
  g_autoptr (GError) error = NULL;

  ck_assert (v->doc_begin (index, uid, &error));
  if (header != NULL)
    ck_assert (v->doc_append (index, DOVEKIE_INDEX_FIELD_HEADER, header, strlen (header), &error));
  if (body != NULL)
    ck_assert (v->doc_append (index, DOVEKIE_INDEX_FIELD_BODY, body, strlen (body), &error));
  ck_assert_msg (v->doc_end (index, &error), "doc_end: %s", error ? error->message : "");
}

/* "1d 3m" style: uid followed by d(efinite) or m(aybe). */
static void
collect (gpointer data, guint32 uid, gboolean definite)
{
  GString *out = data;

  if (out->len > 0)
    g_string_append_c (out, ' ');
  g_string_append_printf (out, "%u%c", uid, definite ? 'd' : 'm');
}

static gchar *
lookup (DovekieIndex *index, DovekieIndexScope scope, const gchar *needle)
{
  g_autoptr (GError) error = NULL;
  GString *out = g_string_new (NULL);
  gboolean handled = FALSE;
  guint32 covered = 0, last_uid = 0;

  ck_assert_msg (v->lookup (index, scope, needle, collect, out, &covered, &handled, &error),
                 "lookup: %s", error ? error->message : "");
  /* An answer covers exactly what the index holds. */
  ck_assert (v->get_last_uid (index, &last_uid, NULL));
  if (handled)
    ck_assert_uint_eq (covered, last_uid);
  if (!handled)
    g_string_assign (out, "unhandled");
  return g_string_free (out, FALSE);
}

#define ASSERT_LOOKUP(index, scope, needle, expected) \
  do { g_autofree gchar *got_ = lookup (index, scope, needle); \
       ck_assert_str_eq (got_, expected); } while (0)

START_TEST (test_open_creates_and_reopens)
{
  DovekieIndex *index = open_index (7);
  guint32 last = 99;

  ck_assert (v->get_last_uid (index, &last, NULL));
  ck_assert_uint_eq (last, 0);
  add_doc (index, 3, "Subject: hello\r\n", "body text");
  v->close (index);
  index = open_index (7);
  ck_assert (v->get_last_uid (index, &last, NULL));
  ck_assert_uint_eq (last, 3);
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "ody", "3d");
  v->close (index);
}
END_TEST

START_TEST (test_uidvalidity_change_empties)
{
  DovekieIndex *index = open_index (7);
  guint32 last = 0;

  add_doc (index, 5, NULL, "something");
  v->close (index);
  index = open_index (8);
  ck_assert (v->get_last_uid (index, &last, NULL));
  ck_assert_uint_eq (last, 0);
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "thing", "");
  v->close (index);
}
END_TEST

START_TEST (test_lookup_scopes)
{
  DovekieIndex *index = open_index (1);

  add_doc (index, 1, "Subject: alpha\r\n", "bravo charlie");
  add_doc (index, 2, "Subject: bravo\r\n", "alpha");
  add_doc (index, 3, "From: x\r\n", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_TEXT, "alp", "1d 2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "alp", "2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_HEADER, "alp", "1m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_TEXT, "bravo", "1d 2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_TEXT, "ravo", "1d 2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_HEADER, "bravo", "2m");
  /* a separator: every run is required, the host verifies */
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "avo ch", "1m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "avo chx", "");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "o ch", "1m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "o c", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "o  c", "unhandled");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "avo xh", "");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "3d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "nothing here", "");
  /* two letters: the short words that hold them (schema 8) */
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "al", "2d");
  /* case is the host's business: the index compares exactly */
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "ALP", "");
  v->close (index);
}
END_TEST

START_TEST (test_expunge_hides)
{
  g_autoptr (GError) error = NULL;
  DovekieIndex *index = open_index (1);

  add_doc (index, 1, NULL, "needle one");
  add_doc (index, 2, NULL, "needle two");
  ck_assert (v->expunge (index, 1, &error));
  ck_assert (v->flush (index, &error));
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "needle", "2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "needle t", "2m");
  v->close (index);
  index = open_index (1);
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "needle", "2d");
  v->close (index);
}
END_TEST

/* An expunge comes inside Dovecot's sync, which holds the mailbox's
 * locks; a writer that holds the index's lock while it reads mail may wait
 * for that sync. So an expunge never waits for the lock: it is kept and
 * marked by the handle's next transaction, or at close. */
START_TEST (test_expunge_does_not_wait_for_a_writer)
{
  g_autoptr (GError) error = NULL;
  DovekieIndex *writer = open_index (1), *syncer;

  add_doc (writer, 1, NULL, "needle one");
  add_doc (writer, 2, NULL, "needle two"); /* a batch of 2: committed */
  syncer = open_index (1);
  add_doc (writer, 3, NULL, "needle three"); /* holds the write lock */
  ck_assert_msg (v->expunge (syncer, 1, &error), "%s", error ? error->message : "");
  ck_assert (v->flush (syncer, &error));
  ck_assert_uint_eq (syncer->pending_gone->len, 1);
  ck_assert (v->flush (writer, &error));
  ASSERT_LOOKUP (writer, DOVEKIE_INDEX_SCOPE_BODY, "needle", "1d 2d 3d");
  /* The next transaction marks the one kept, with its own. */
  ck_assert (v->expunge (syncer, 2, &error));
  ck_assert_uint_eq (syncer->pending_gone->len, 0);
  ck_assert (v->flush (syncer, &error));
  ASSERT_LOOKUP (writer, DOVEKIE_INDEX_SCOPE_BODY, "needle", "3d");
  /* Kept until close, which marks it once the lock is free. */
  add_doc (writer, 4, NULL, "needle four");
  ck_assert (v->expunge (syncer, 3, &error));
  ck_assert_uint_eq (syncer->pending_gone->len, 1);
  ck_assert (v->flush (writer, &error));
  v->close (syncer);
  ASSERT_LOOKUP (writer, DOVEKIE_INDEX_SCOPE_BODY, "needle", "4d");
  /* A close that cannot have the lock leaves the row, logged: only a UID
   * the mailbox no longer has. */
  syncer = open_index (1);
  add_doc (writer, 5, NULL, "needle five");
  ck_assert (v->expunge (syncer, 4, &error));
  v->close (syncer);
  ck_assert (v->flush (writer, &error));
  ASSERT_LOOKUP (writer, DOVEKIE_INDEX_SCOPE_BODY, "needle", "4d 5d");
  v->close (writer);
}
END_TEST

START_TEST (test_chunks_overlap)
{
  g_autoptr (GString) body = g_string_new (NULL);
  DovekieIndex *index = open_index_for_chunks ();

  /* The marker straddles the first chunk boundary. */
  while (body->len < DOVEKIE_SEARCH_CHUNK - 2)
    g_string_append_c (body, 'x');
  g_string_append (body, "QZJW");
  while (body->len < 2 * DOVEKIE_SEARCH_CHUNK + 10)
    g_string_append_c (body, 'y');
  add_doc (index, 4, NULL, body->str);
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "QZJ", "4d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "ZJW", "4d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "xQZJWy", "4m");
  v->close (index);
}
END_TEST

/* Appends `text` in pieces of `piece` bytes, so that rows are cut. */
static void
append_pieces (DovekieIndex *index, const gchar *text, gsize piece)
{
  g_autoptr (GError) error = NULL;
  gsize len = strlen (text);

  for (gsize pos = 0; pos < len; pos += piece)
    ck_assert (v->doc_append (index, DOVEKIE_INDEX_FIELD_BODY, text + pos, MIN (piece, len - pos),
                              &error));
}

START_TEST (test_chunks_keep_words_whole)
{
  g_autoptr (GString) body = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  DovekieIndex *index = open_index_for_chunks ();

  /* Short words; the first row ends after "QZJW" (each append of 4096
   * bytes is checked against the chunk size). */
  while (body->len < DOVEKIE_SEARCH_CHUNK - 5)
    g_string_append (body, "ab ");
  g_string_truncate (body, DOVEKIE_SEARCH_CHUNK - 5);
  g_string_append (body, " QZJWKV ");
  while (body->len < 2 * DOVEKIE_SEARCH_CHUNK + 10)
    g_string_append (body, "cd ");
  ck_assert (v->doc_begin (index, 4, &error));
  append_pieces (index, body->str, 4096);
  ck_assert (v->doc_end (index, &error));
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "QZJWKV", "4d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "JWK", "4d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "QZJWKVX", "");
  v->close (index);
}
END_TEST

START_TEST (test_long_words_are_maybe)
{
  DovekieIndex *index = open_index (1);

  /* 21 bytes: a long word, indexed by its 4-grams */
  add_doc (index, 1, NULL, "abcdefghijklmnopqrstu short");
  add_doc (index, 2, NULL, "xbcdefghij");
  add_doc (index, 3, NULL, "abcdeqqqqqqqqqqqbcdefgqqqq");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "bcdefghij", "1m 2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "hij", "1d 2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "abcdefghijklmnopqrstu", "1m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "hort", "1d");
  /* three and four code points: proven in long words too */
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "stu", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "klmn", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "eqqq", "3d");
  /* every 4-gram asked is there, the run is not: a candidate all the same */
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "abcdefg", "1m 3m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "abcdefghijklmnopqXstu", "");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "abcstu", "");
  v->close (index);
}
END_TEST

START_TEST (test_very_long_words_have_trigrams)
{
  DovekieIndex *index = open_index (1);
  g_autofree gchar *q280 = g_strnfill (280, 'q');
  g_autofree gchar *blob = g_strconcat (q280, "needleword", "qqqqqqqqqq", NULL);

  /* past DOVEKIE_SEARCH_GRAM_WORD_BYTES: trigrams, not 4-grams */
  ck_assert_uint_gt (strlen (blob), DOVEKIE_SEARCH_GRAM_WORD_BYTES);
  add_doc (index, 1, NULL, blob);
  add_doc (index, 2, NULL, "needle");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "needlewor", "1m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "dlew", "1m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "dle", "1d 2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "needle", "1m 2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "wordneedle", "");
  v->close (index);
}
END_TEST

/* Creates the database file with plain SQL, as another version would. */
static void
write_db (const gchar *sql)
{
  sqlite3 *db = NULL;

  ck_assert_int_eq (sqlite3_open (dbpath, &db), SQLITE_OK);
  ck_assert_int_eq (sqlite3_exec (db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close (db);
}

/* Fixed bug: an index of an older schema was refused with an error
 * instead of being rebuilt. Schema 1 had the trigram tokenizer, schema 2
 * trigrams of long words (its own tokenizer, which plain SQLite lacks:
 * the file is made with the built-in one). */
START_TEST (test_older_schema_is_rebuilt)
{
  DovekieIndex *index;
  guint32 last = 1;
  g_autofree gchar *sql = g_strdup_printf (
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;"
    "CREATE VIRTUAL TABLE text USING fts5(body, tokenize = 'trigram',"
    " detail = none, content = '');"
    "INSERT INTO text(rowid, body) VALUES(13, 'old text');"
    "INSERT INTO meta VALUES('schema', %d), ('uidvalidity', 1), ('last_uid', 3);", _i + 1);

  ck_assert_int_lt (_i + 1, DOVEKIE_SEARCH_SCHEMA);
  write_db (sql);
  index = open_index (1);
  ck_assert (v->get_last_uid (index, &last, NULL));
  ck_assert_uint_eq (last, 0);
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "old", "");
  add_doc (index, 1, NULL, "new text");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "text", "1d");
  v->close (index);
}
END_TEST

START_TEST (test_newer_schema_is_refused)
{
  g_autoptr (GError) error = NULL;

  write_db ("CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;"
            "INSERT INTO meta VALUES('schema', 99);");
  ck_assert_ptr_null (dovekie_search_index_open_with (NULL, dbpath, 1, &limits, &error));
  ck_assert_ptr_nonnull (error);
  ck_assert_ptr_nonnull (strstr (error->message, "schema 99"));
}
END_TEST

START_TEST (test_too_big_is_always_maybe)
{
  g_autoptr (GString) body = g_string_new (NULL);
  DovekieIndex *index = open_index (1);

  while (body->len <= limits.max_text)
    g_string_append (body, "0123456789");
  add_doc (index, 6, NULL, body->str);
  add_doc (index, 7, NULL, "small");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "zzz", "6m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "mal", "6m 7d");
  v->close (index);
}
END_TEST

START_TEST (test_invalid_utf8_is_stored)
{
  DovekieIndex *index = open_index (1);

  add_doc (index, 1, NULL, "abc\xff\xfe" "def\0ghi");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "def", "1d");
  v->close (index);
}
END_TEST

static void
add_keyed (DovekieIndex *index, guint32 uid, const gchar *header, DovekieIndexField field,
           const gchar *text)
{
  g_autoptr (GError) error = NULL;

  ck_assert (v->doc_begin (index, uid, &error));
  ck_assert (v->doc_append (index, DOVEKIE_INDEX_FIELD_HEADER, header, strlen (header), &error));
  ck_assert (v->doc_append (index, field, text, strlen (text), &error));
  ck_assert_msg (v->doc_end (index, &error), "doc_end: %s", error ? error->message : "");
}

START_TEST (test_keyed_scopes)
{
  DovekieIndex *index = open_index (1);

  add_keyed (index, 1, "Subject: ilug meeting\r\n", DOVEKIE_INDEX_FIELD_SUBJECT,
             "ilug meeting\n");
  add_keyed (index, 2, "List-Id: ilug\r\nSubject: other\r\n", DOVEKIE_INDEX_FIELD_SUBJECT,
             "other\n");
  add_keyed (index, 3, "From: Ann <ann@example.org>\r\n", DOVEKIE_INDEX_FIELD_FROM,
             "Ann <ann@example.org>\n");
  add_keyed (index, 4, "Cc: x\r\n", DOVEKIE_INDEX_FIELD_CC,
             "<x@MISSING_DOMAIN>\n");
  /* the keyed field alone, and proven as BODY is */
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_SUBJECT, "ilug", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_SUBJECT, "lug", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_SUBJECT, "g m", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_SUBJECT, "lug meet", "1m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_SUBJECT, "ann", "");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_FROM, "ann", "3d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_TO, "ann", "");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BCC, "ann", "");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_CC, "SING_DOM", "4d");
  /* any header: maybe, from HEADER only */
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_HEADER, "ilug", "1m 2m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_HEADER, "SING_DOM", "");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_TEXT, "ilug", "1d 2d");
  v->close (index);
}
END_TEST

START_TEST (test_reset_and_optimize)
{
  g_autoptr (GError) error = NULL;
  DovekieIndex *index = open_index (1);
  guint32 last = 0;

  add_doc (index, 1, NULL, "foobar");
  ck_assert (v->optimize (index, &error));
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "oba", "1d");
  ck_assert (v->reset (index, &error));
  ck_assert (v->get_last_uid (index, &last, NULL));
  ck_assert_uint_eq (last, 0);
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "oba", "");
  v->close (index);
}
END_TEST

/* The one value `sql` gives on the index file, read by a connection of its
 * own. */
static gint64
db_value (const gchar *sql)
{
  sqlite3 *db = NULL;
  sqlite3_stmt *stmt = NULL;
  gint64 value;

  ck_assert_int_eq (sqlite3_open_v2 (dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  ck_assert_int_eq (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL), SQLITE_OK);
  ck_assert_int_eq (sqlite3_step (stmt), SQLITE_ROW);
  value = sqlite3_column_int64 (stmt, 0);
  sqlite3_finalize (stmt);
  sqlite3_close (db);
  return value;
}

/* PRAGMA `name` of the index file. */
static gint64
db_pragma (const gchar *name)
{
  g_autofree gchar *sql = g_strdup_printf ("PRAGMA %s", name);

  return db_value (sql);
}

/* Segments of body_terms: FTS5 stores segment segid's pages at rowids
 * segid << 37 + page of body_terms_data. */
static gint64
body_segments (void)
{
  return db_value ("SELECT count(DISTINCT id >> 37) FROM body_terms_data WHERE id >> 37 > 0");
}

/* Indexes `docs` messages into a new index in batches of 2 and flushes;
 * returns the body's segments, and the free pages in *free_r. */
static gint64
index_run (guint32 docs, gint64 *free_r)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *wal = g_strconcat (dbpath, "-wal", NULL);
  g_autofree gchar *shm = g_strconcat (dbpath, "-shm", NULL);
  DovekieIndex *index;
  gint64 segments;

  (void) g_unlink (dbpath);
  (void) g_unlink (wal);
  (void) g_unlink (shm);
  index = open_index (1);
  for (guint32 uid = 1; uid <= docs; uid++)
    {
      g_autofree gchar *body = g_strdup_printf ("common words of each message, "
                                                "international post %u uniq%ux", uid,
                                                uid * 7919);
      add_doc (index, uid, "Subject: hello", body);
    }
  ck_assert (v->flush (index, &error));
  segments = body_segments ();
  *free_r = db_pragma ("freelist_count");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "iq7919x", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_TEXT, "iq7919x", "1d");
  v->close (index);
  return segments;
}

/* The flush that ends a run of DOVEKIE_SEARCH_TIDY_DOCS messages merges
 * segments and gives back the pages merges freed; one of a message less
 * leaves them to FTS5's automerge. */
START_TEST (test_flush_after_a_big_run_tidies)
{
  gint64 small_free, big_free;
  gint64 small = index_run (DOVEKIE_SEARCH_TIDY_DOCS - 1, &small_free);
  gint64 big = index_run (DOVEKIE_SEARCH_TIDY_DOCS, &big_free);

  ck_assert_int_gt (small_free, 0);
  ck_assert_int_eq (big_free, 0);
  ck_assert_msg (big < small, "segments: %" G_GINT64_FORMAT " after the small run, %"
                 G_GINT64_FORMAT " after the big one", small, big);
}
END_TEST

START_TEST (test_optimize_merges_and_returns_pages)
{
  g_autoptr (GError) error = NULL;
  DovekieIndex *index = open_index (1);
  gint64 pages_before, pages_after;

  /* 600 documents in batches of 2: hundreds of segments, each holding
   * the shared words again. */
  for (guint32 uid = 1; uid <= 600; uid++)
    {
      g_autofree gchar *body = g_strdup_printf ("shared vocabulary of every message, "
                                                "international correspondence %u "
                                                "uniqueword%ux", uid, uid * 7919);
      add_doc (index, uid, NULL, body);
    }
  ck_assert (v->flush (index, &error));
  ck_assert_int_eq (db_pragma ("auto_vacuum"), 2);
  pages_before = db_pragma ("page_count");
  ck_assert_msg (v->optimize (index, &error), "optimize: %s", error ? error->message : "");
  pages_after = db_pragma ("page_count");
  ck_assert_int_eq (db_pragma ("freelist_count"), 0);
  ck_assert_msg (pages_after < pages_before, "pages %" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT,
                 pages_before, pages_after);
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "ueword7919x", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "correspondence 600", "600m");
  v->close (index);
}
END_TEST

/* get_last_uid of `index` (which also starts its next run). */
static guint32
last_uid_of (DovekieIndex *index)
{
  guint32 last = G_MAXUINT32;

  ck_assert (v->get_last_uid (index, &last, NULL));
  return last;
}

/* Issue 20: needles where words prove nothing. One character, or two
 * with a non-word one, are proven by their character terms in the body
 * and the keyed fields (definite, nothing left to read), only narrowed in
 * HEADER; longer punctuation is narrowed by its pairs. */
START_TEST (test_character_terms)
{
  DovekieIndex *index = open_index (1);

  add_doc (index, 1, "Subject: Zebra $$$\n", "price $19.99, 50% off!!");
  add_doc (index, 2, NULL, "caf\xc3\xa9 cr\xc3\xa8me... see http://www.example.test/");
  add_doc (index, 3, "Subject: plain\n", "nothing here at all");
  ck_assert (v->flush (index, NULL));
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "%", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "!", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "\xc3\xa9", "2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "\xc3\xa8m", "2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "\xc3\xa9\xc3\xa8", "");
  /* two ASCII letters: no character term, but the words that hold them
   * and a two-letter word */
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "ca", "2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "at", "3d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "ll", "3d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "z", "");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "h", "2d 3d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "$1", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "..", "2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "!!", "1d");
  /* three non-word characters: their triple term (schema 9) */
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "...", "2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "://", "2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "!!!", "");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "e..", "2m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "http://www.", "2m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "$$$", "");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_TEXT, "$$$", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_HEADER, "$$$", "1m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_TEXT, "$", "1d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_HEADER, "Z", "1m");
  /* white space is no character term */
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, " ", "unhandled");
  /* a pair of letters anywhere in a long word, its end too */
  add_doc (index, 4, NULL, "abcdefghijklmnopqrstuvwxyz");
  ck_assert (v->flush (index, NULL));
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "yz", "4d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "xy", "4d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "ab", "4d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "zy", "");
  v->close (index);
}
END_TEST

/* A run found in more words than one expression takes: proven in parts
 * (BODY), or asked in parts as candidates (HEADER, never proven). The
 * vocabulary is read a batch (2 messages) at a time as it grows. */
START_TEST (test_run_in_many_words)
{
  DovekieIndex *index = open_index (1), *reader = open_index (1);
  g_autoptr (GString) all_definite = g_string_new (NULL);
  g_autoptr (GString) all_maybe = g_string_new (NULL);
  g_autoptr (GString) hundreds = g_string_new (NULL);
  const guint count = DOVEKIE_SEARCH_PLAN_EXPR_WORDS + 44;

  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "qzv", "");
  for (guint32 uid = 1; uid <= count; uid++)
    {
      g_autofree gchar *text = g_strdup_printf ("qzv%03u tail", uid);

      add_doc (index, uid, text, text);
      g_string_append_printf (all_definite, "%s%ud", uid > 1 ? " " : "", uid);
      g_string_append_printf (all_maybe, "%s%um", uid > 1 ? " " : "", uid);
      if (uid >= 100 && uid <= 199)
        g_string_append_printf (hundreds, "%s%ud", uid > 100 ? " " : "", uid);
      if (uid == 10)
        ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "qzv", "1d 2d 3d 4d 5d 6d 7d 8d 9d 10d");
    }
  ck_assert (v->flush (index, NULL));
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "qzv", all_definite->str);
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "qzv1", hundreds->str);
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_HEADER, "qzv", all_maybe->str);
  /* several runs: words of "zv0", "tail" and the boundary "0 t" */
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "zv0 tai", "10m 20m 30m 40m 50m 60m 70m 80m 90m");
  /* a run in too many words is left out of the AND: "tail" holds */
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "qzv\ntail", all_maybe->str);
  /* no row has a ".": the character term rules every one out */
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "qzv.tail", "");
  v->close (reader);
  v->close (index);
}
END_TEST

/* optimize leaves the vocabulary log in one row, each word once (a writer
 * whose cache was full logs a word again), and every reader reads it
 * again: one that read it all still gets the words logged after, and a
 * new one gets every word. */
START_TEST (test_optimize_compacts_the_vocabulary)
{
  DovekieIndex *index = open_index (1), *reader = open_index (1), *fresh;

  for (guint32 uid = 1; uid <= 6; uid++)
    {
      g_autofree gchar *text = g_strdup_printf ("word%u common", uid);

      add_doc (index, uid, NULL, text);
    }
  ck_assert (v->flush (index, NULL));
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "ord4", "4d");
  ck_assert_int_eq (db_value ("SELECT count(*) FROM vocab_log"), 3);
  write_db ("INSERT INTO vocab_log(words) VALUES('word4\ncommon\n')");
  /* a row without its last '\n' (not written by this code) */
  write_db ("INSERT INTO vocab_log(words) VALUES('loose')");
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "ord4", "4d");
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "oose", "");
  ck_assert (v->optimize (index, NULL));
  ck_assert_int_eq (db_value ("SELECT count(*) FROM vocab_log"), 1);
  /* word1 .. word6, common and loose, each once */
  ck_assert_int_eq (db_value ("SELECT length(words) FROM vocab_log"), 6 * 6 + 7 + 6);
  add_doc (index, 7, NULL, "newcomer common");
  ck_assert (v->flush (index, NULL));
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "comer", "7d");
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "ommo", "1d 2d 3d 4d 5d 6d 7d");
  fresh = open_index (1);
  ASSERT_LOOKUP (fresh, DOVEKIE_INDEX_SCOPE_BODY, "ord2", "2d");
  ASSERT_LOOKUP (fresh, DOVEKIE_INDEX_SCOPE_BODY, "comer", "7d");
  v->close (fresh);
  v->close (reader);
  v->close (index);
}
END_TEST

/* Two processes indexing one mailbox (doveadm index and a search's
 * indexer): the one that is behind skips what the other committed, and the
 * last UID never goes back. Before, the one behind committed its own lower
 * last UID, and a search told the higher one lost the mails between. */
START_TEST (test_writers_share_last_uid)
{
  DovekieIndex *a = open_index (1), *b = open_index (1), *reader;

  ck_assert_uint_eq (last_uid_of (b), 0);
  for (guint32 uid = 1; uid <= 4; uid++)
    add_doc (a, uid, NULL, "alpha text");
  ck_assert (v->flush (a, NULL));
  /* b started from 0: 1-4 are a's, 5 and 6 its own */
  for (guint32 uid = 1; uid <= 6; uid++)
    add_doc (b, uid, NULL, "bravo text");
  ck_assert (v->flush (b, NULL));
  reader = open_index (1);
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "alpha", "1d 2d 3d 4d");
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "bravo", "5d 6d");
  /* a, still at 4, skips 5 and 6, and its commit keeps 6 */
  add_doc (a, 5, NULL, "charlie text");
  ck_assert (v->flush (a, NULL));
  ck_assert_uint_eq (last_uid_of (reader), 6);
  add_doc (a, 7, NULL, "charlie text");
  ck_assert (v->flush (a, NULL));
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "charlie", "7d");
  v->close (reader);
  v->close (b);
  v->close (a);
}
END_TEST

/* `doveadm fts rescan` empties the index while another process adds to it:
 * that writer's remaining mails would claim the emptied ones below them, so
 * it adds nothing more until its next run (get_last_uid). */
START_TEST (test_reset_under_a_writer_stops_it)
{
  DovekieIndex *a = open_index (1), *b = open_index (1), *reader = open_index (1);

  ck_assert_uint_eq (last_uid_of (a), 0);
  add_doc (a, 1, NULL, "delta text");
  add_doc (a, 2, NULL, "delta text");   /* batch of 2: committed */
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "delta", "1d 2d");
  ck_assert (v->reset (b, NULL));
  add_doc (a, 3, NULL, "delta echo");
  add_doc (a, 4, NULL, "delta echo");
  ck_assert (v->flush (a, NULL));
  ck_assert_uint_eq (last_uid_of (reader), 0);
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "delta", "");
  /* the next run starts from the emptied index */
  ck_assert_uint_eq (last_uid_of (a), 0);
  add_doc (a, 1, NULL, "delta text");
  ck_assert (v->flush (a, NULL));
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "delta", "1d");
  v->close (reader);
  v->close (b);
  v->close (a);
}
END_TEST

START_TEST (test_uncommitted_batch_is_lost_on_crash)
{
  DovekieIndex *index = open_index (1);
  DovekieIndex *other;
  guint32 last = 0;

  /* batch_size is 2: uid 1 and 2 commit, uid 3 stays pending. */
  add_doc (index, 1, NULL, "one");
  add_doc (index, 2, NULL, "two");
  add_doc (index, 3, NULL, "three");
  other = open_index (1);
  ck_assert (v->get_last_uid (other, &last, NULL));
  ck_assert_uint_eq (last, 2);
  v->close (other);
  v->close (index);
}
END_TEST

START_TEST (test_corrupt_file_is_rebuilt)
{
  DovekieIndex *index;
  guint32 last = 1;

  ck_assert (g_file_set_contents (dbpath, "this is not a database, just garbage bytes......"
                                  "................................................", -1, NULL));
  index = open_index (1);
  ck_assert (v->get_last_uid (index, &last, NULL));
  ck_assert_uint_eq (last, 0);
  add_doc (index, 1, NULL, "works again");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "again", "1d");
  v->close (index);
}
END_TEST

START_TEST (test_read_only_dir_fails_cleanly)
{
  g_autoptr (GError) error = NULL;
  DovekieIndex *index;

  if (geteuid () == 0)
    return; /* root writes anyway; the integration test covers this */
  ck_assert_int_eq (g_chmod (tmpdir, 0500), 0);
  index = dovekie_search_index_open_with (NULL, dbpath, 1, &limits, &error);
  ck_assert_ptr_null (index);
  ck_assert_ptr_nonnull (error);
}
END_TEST

/* A context that only logs and records events, as "name k=v k=v;". */
static void
fake_log (DovekieContext *ctx, DovekieLogLevel level, const gchar *message)
{
  (void) ctx; (void) level; (void) message;
}

static void
fake_emit (DovekieContext *ctx, const gchar *name, const gchar *const *fields)
{
  GString *events = ctx->module_data;

  g_string_append (events, name);
  for (guint i = 0; fields[i] != NULL && fields[i + 1] != NULL; i += 2)
    g_string_append_printf (events, " %s=%s", fields[i], fields[i + 1]);
  g_string_append_c (events, ';');
}

/* Issue 18: a mailbox deleted and created again under the same name has a
 * new index at the old path, while another process may still hold the old
 * one open. Closing that stale handle must leave the new index's files
 * alone: SQLite unlinks "<path>-wal" and "<path>-shm" by name when the last
 * connection of a file closes, but not for a file that was unlinked or
 * moved (it checks that the database is unmoved), which the fts backend
 * relies on; a third process would see the new index without its
 * committed messages otherwise. */
START_TEST (test_close_after_replaced_keeps_the_new_files)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *wal = g_strconcat (dbpath, "-wal", NULL);
  g_autofree gchar *shm = g_strconcat (dbpath, "-shm", NULL);
  DovekieIndex *old = open_index (1), *fresh, *reader;
  guint32 last = 0;

  add_doc (old, 1, NULL, "oldword");
  ck_assert (v->flush (old, &error));
  /* The mailbox is deleted (its files with it) and created again. */
  ck_assert_int_eq (g_unlink (wal), 0);
  (void) g_unlink (shm);
  ck_assert_int_eq (g_unlink (dbpath), 0);
  fresh = open_index (2);
  add_doc (fresh, 1, NULL, "newword");
  ck_assert (v->flush (fresh, &error));
  ck_assert (g_file_test (wal, G_FILE_TEST_EXISTS));

  v->close (old);
  ck_assert_msg (g_file_test (wal, G_FILE_TEST_EXISTS), "the new index lost its -wal");
  reader = open_index (2);
  ck_assert (v->get_last_uid (reader, &last, NULL));
  ck_assert_uint_eq (last, 1);
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "newword", "1d");
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "oldword", "");
  v->close (reader);
  v->close (fresh);
}
END_TEST

START_TEST (test_events)
{
  DovekieHostApi api = { .log = fake_log, .emit = fake_emit };
  g_autoptr (GString) events = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  DovekieContext ctx = { &api, events };
  DovekieIndex *index = dovekie_search_index_open_with (&ctx, dbpath, 1, &limits, &error);

  ck_assert_ptr_nonnull (index);
  /* batch_size 2: one event for uids 1-2, one at close for uid 3. */
  add_doc (index, 1, "abc", "defg");
  add_doc (index, 2, NULL, "xyz");
  ck_assert_str_eq (events->str, "dovekie_search_indexed messages=2 bytes=10;");
  g_string_truncate (events, 0);
  add_doc (index, 3, NULL, "hello");
  ck_assert (v->expunge (index, 1, &error));
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "xyz", "2d");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_TEXT, "hel\n", "3m");
  ASSERT_LOOKUP (index, DOVEKIE_INDEX_SCOPE_BODY, "  ", "unhandled");
  ck_assert_str_eq (events->str,
                    "dovekie_search_lookup scope=body definite=1 maybe=0;"
                    "dovekie_search_lookup scope=text definite=0 maybe=1;");
  g_string_truncate (events, 0);
  v->close (index);
  ck_assert_str_eq (events->str, "dovekie_search_indexed messages=1 bytes=5;");
}
END_TEST

static guint removals_left;

/* Plays a process that found the index corrupt and removed its files just
 * after this one opened them. */
static void
remove_after_open (const gchar *path)
{
  if (removals_left == 0)
    return;
  removals_left--;
  /* All three, as remove_files does. */
  g_autofree gchar *wal = g_strconcat (path, "-wal", NULL);
  g_autofree gchar *shm = g_strconcat (path, "-shm", NULL);
  (void) g_unlink (wal);
  (void) g_unlink (shm);
  ck_assert_int_eq (g_unlink (path), 0);
}

/* Bug: "attempt to write a readonly database" (SQLITE_READONLY_DBMOVED)
 * when another process removed a corrupt index's files as this one opened
 * them; the open failed and the search fell back. It now opens again. */
START_TEST (test_open_again_after_removal)
{
  g_autoptr (GError) error = NULL;
  DovekieIndex *index;
  guint32 last = 99;

  v->close (open_index (1));
  removals_left = 2;
  dovekie_search_index_test_after_open = remove_after_open;
  index = dovekie_search_index_open_with (NULL, dbpath, 1, &limits, &error);
  ck_assert_msg (index != NULL, "open: %s", error != NULL ? error->message : "?");
  ck_assert_uint_eq (removals_left, 0);
  ck_assert (g_file_test (dbpath, G_FILE_TEST_EXISTS));
  add_doc (index, 4, "Subject: x\r\n", "after the removal");
  ck_assert (v->get_last_uid (index, &last, NULL));
  ck_assert_uint_eq (last, 4);
  v->close (index);

  /* Bounded: a file removed at every open is an error, not a loop. */
  removals_left = 100;
  index = dovekie_search_index_open_with (NULL, dbpath, 1, &limits, &error);
  dovekie_search_index_test_after_open = NULL;
  ck_assert_ptr_null (index);
  ck_assert_ptr_nonnull (error);
  ck_assert_uint_lt (removals_left, 100);
  ck_assert_uint_gt (removals_left, 90);
}
END_TEST

/* Issue 17: past the writer's cache (VOCAB_KNOWN_MAX words, 64 in these
 * tests) it logged known words again: copies of one mail of random words
 * grew the vocabulary by a copy each. The flush that ends a run whose cache
 * lost words compacts the log: ten copies leave the vocabulary of one. */
START_TEST (test_vocabulary_holds_each_word_once)
{
  DovekieIndex *index = open_index (1), *reader = open_index (1);
  g_autoptr (GRand) rand = g_rand_new_with_seed (17);
  g_autoptr (GString) body = g_string_new ("zzmarkerzz ");
  g_autoptr (GString) all = g_string_new (NULL);
  gint64 one;

  for (guint i = 0; i < 300; i++)
    {
      for (guint k = 0; k < 9; k++)
        g_string_append_c (body, (gchar) ('a' + g_rand_int_range (rand, 0, 26)));
      g_string_append_c (body, ' ');
    }
  add_doc (index, 1, NULL, body->str);
  ck_assert (v->flush (index, NULL));
  one = db_value ("SELECT sum(length(words)) FROM vocab_log");
  ck_assert_int_gt (one, 300 * 10);
  g_string_append (all, "1d");
  for (guint32 uid = 2; uid <= 10; uid++)
    {
      add_doc (index, uid, NULL, body->str);
      ck_assert (v->flush (index, NULL));
      g_string_append_printf (all, " %ud", uid);
      ck_assert_int_eq (db_value ("SELECT sum(length(words)) FROM vocab_log"), one);
    }
  ck_assert_int_eq (db_value ("SELECT count(*) FROM vocab_log"), 1);
  ASSERT_LOOKUP (reader, DOVEKIE_INDEX_SCOPE_BODY, "markerz", all->str);
  v->close (reader);
  v->close (index);
}
END_TEST

static Suite *
index_suite (void)
{
  Suite *s = suite_create ("dovekie-search-index");
  struct { const gchar *name; const TTest *test; gint loops; } cases[] = {
    { "open", test_open_creates_and_reopens, 1 },
    { "open_uidvalidity", test_uidvalidity_change_empties, 1 },
    { "open_corrupt", test_corrupt_file_is_rebuilt, 1 },
    { "open_older_schema", test_older_schema_is_rebuilt, DOVEKIE_SEARCH_SCHEMA - 1 },
    { "open_newer_schema", test_newer_schema_is_refused, 1 },
    { "open_read_only", test_read_only_dir_fails_cleanly, 1 },
    { "open_again_after_removal", test_open_again_after_removal, 1 },
    { "lookup", test_lookup_scopes, 1 },
    { "expunge", test_expunge_hides, 1 },
    { "expunge_without_waiting", test_expunge_does_not_wait_for_a_writer, 1 },
    { "doc_append_chunks", test_chunks_overlap, 1 },
    { "doc_append_chunk_words", test_chunks_keep_words_whole, 1 },
    { "lookup_long_words", test_long_words_are_maybe, 1 },
    { "lookup_very_long_words", test_very_long_words_have_trigrams, 1 },
    { "doc_append_too_big", test_too_big_is_always_maybe, 1 },
    { "doc_append_invalid_utf8", test_invalid_utf8_is_stored, 1 },
    { "doc_end_batches", test_uncommitted_batch_is_lost_on_crash, 1 },
    { "lookup_run_in_many_words", test_run_in_many_words, 1 },
    { "lookup_character_terms", test_character_terms, 1 },
    { "optimize_compacts_vocabulary", test_optimize_compacts_the_vocabulary, 1 },
    { "flush_compacts_repeated_vocabulary", test_vocabulary_holds_each_word_once, 1 },
    { "two_writers", test_writers_share_last_uid, 1 },
    { "reset_under_writer", test_reset_under_a_writer_stops_it, 1 },
    { "reset_optimize", test_reset_and_optimize, 1 },
    { "keyed_scopes", test_keyed_scopes, 1 },
    { "optimize_merges_and_returns_pages", test_optimize_merges_and_returns_pages, 1 },
    { "flush_tidies", test_flush_after_a_big_run_tidies, 1 },
    { "events", test_events, 1 },
    { "close_after_replaced", test_close_after_replaced_keeps_the_new_files, 1 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      TCase *tc = tcase_create (cases[i].name);
      tcase_add_checked_fixture (tc, setup, teardown);
      tcase_add_loop_test (tc, cases[i].test, 0, MAX (cases[i].loops, 1));
      tcase_set_timeout (tc, 60);
      suite_add_tcase (s, tc);
    }
  return s;
}

int
main (void)
{
  SRunner *runner = srunner_create (index_suite ());
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? 0 : 1;
}
