/* What the index's files share: dovekie-search-index.c (open, write,
 * maintain) and dovekie-search-lookup.c (answer a search). */
#ifndef DOVEKIE_SEARCH_INDEX_PRIVATE_H
#define DOVEKIE_SEARCH_INDEX_PRIVATE_H

#include <sqlite3.h>

#include "dovekie-search-index.h"
#include "dovekie-search-plan.h"

G_BEGIN_DECLS

/* Tests only: called in open_db right after SQLite opened the file, to
 * play another process that removes it then (see open_db_settled). */
extern void (*dovekie_search_index_test_after_open) (const gchar *path);

/* The writer's cache of known words: an open-addressing set whose slots
 * hold a word's hash and where its bytes are (a length byte, then the
 * word, in `words`). A GHashTable of strings cost three cache misses a
 * lookup (hashes, keys, the string) and a strcmp; this one two (the slot,
 * the word), and none for a word whose hash differs. */
typedef struct {
  guint32 hash;   /* 0: empty slot */
  guint32 offset; /* into words */
} DovekieVocabSlot;

typedef struct {
  DovekieVocabSlot *slots;
  guint mask;  /* slots - 1; 0 before the first word */
  guint count; /* words held */
  GByteArray *words;
} DovekieVocabSet;

struct _DovekieIndex {
  DovekieContext *ctx;
  gchar *path;
  sqlite3 *db;
  guint32 uidvalidity;
  DovekieSearchLimits limits;

  /* Prepared once when the database opens (open_db), reset after each use. */
  sqlite3_stmt *insert_body;
  sqlite3_stmt *insert_header;
  sqlite3_stmt *set_meta;
  sqlite3_stmt *get_meta;
  sqlite3_stmt *add_gone;
  sqlite3_stmt *add_unindexed;
  sqlite3_stmt *load_gone;
  sqlite3_stmt *load_unindexed;
  sqlite3_stmt *match_body;
  sqlite3_stmt *match_header;
  sqlite3_stmt *insert_vocab;
  sqlite3_stmt *read_vocab;

  /* The writer's cache of short words in the vocabulary or in
   * vocab_added, at most VOCAB_KNOWN_MAX: filled
   * from vocab_text up to vocab_known_upto by the first row of each batch
   * (vocab_catch_up()), and by the words a batch adds. Words leave the vocabulary only when the index
   * is reset, so it is emptied when a run starts (start_run), when
   * begin() finds the index reset, when a write rolls back and when
   * vocab_text is read again. */
  DovekieVocabSet vocab_known;
  gsize vocab_known_upto;
  /* FALSE from begin() until the batch's first row has caught up. */
  gboolean vocab_current;
  /* The cache lost words (it was full, or the vocabulary did not fit in
   * it) since the vocabulary was last compacted: the words logged since
   * may repeat, and the flush that ends the run compacts them. */
  gboolean vocab_forgot;
  /* Words of the batch, each ending in '\n', that flush_vocab() has yet
   * to log, before the transaction commits. */
  GString *vocab_added;
  /* The vocabulary as the lookup last read it: '\n', then each word
   * followed by '\n' (empty: not read yet), up to vocab_log row
   * vocab_seq, of index generation vocab_generation and vocabulary
   * epoch vocab_epoch (see compact_vocab()). */
  GString *vocab_text;
  gint64 vocab_seq;
  gint64 vocab_generation;
  gint64 vocab_epoch;

  gboolean in_txn;
  guint batch_docs;
  /* Messages committed since the index was opened or last tidied. */
  guint run_docs;
  /* Messages of the batch skipped by doc_begin (already in the index). */
  guint batch_skipped;
  /* Bytes of text in the batch, for the dovekie_search_indexed event. */
  guint64 batch_bytes;
  /* Highest uid written, committed or not; committed with the batch. At
   * the start of each transaction it is raised to the committed one, so it
   * never goes back (see begin()). */
  guint32 last_uid;
  /* meta "generation" as this handle last read it; reset changes it. */
  gint64 generation;
  /* The index was reset by another process during this indexing run:
   * the messages still to come would leave a gap below them, so they are
   * skipped until get_last_uid starts a new run. */
  gboolean stale;
  /* Expunges that found the write lock taken (index_expunge): UIDs
   * (guint32) marked gone by the next transaction this handle begins, or
   * at close. */
  GArray *pending_gone;
  /* busy_wait(): how long to wait for the write lock, and since when. */
  gint64 busy_usec;
  gint64 busy_since;
  /* A corrupt file was replaced while writing: later writes would give an
   * index that claims messages it lacks, so they fail until reopened. */
  gboolean poisoned;
  /* open_db found an index of an older schema: it is rebuilt. */
  gboolean outdated;

  /* The message being added. */
  gboolean doc_open;
  /* The message is already in the index, or the run is stale: its text
   * is dropped. */
  gboolean doc_skip;
  guint32 doc_uid;
  guint64 doc_bytes;
  gboolean doc_too_big;
  GString *chunk[DOVEKIE_INDEX_FIELD_COUNT];
};

static inline gboolean
sql_fail (DovekieIndex *index, GError **error, const gchar *what)
{
  int code = sqlite3_extended_errcode (index->db);

  g_set_error (error, DOVEKIE_ERROR,
               (code & 0xff) == SQLITE_BUSY ? DOVEKIE_ERROR_TIMEOUT : DOVEKIE_ERROR_IO,
               "%s: %s: %s", index->path, what, sqlite3_errmsg (index->db));
  return FALSE;
}

/* Brings vocab_text up to date, inside the caller's transaction: the
 * vocab_log rows added since it was read, or all of them when the index
 * was reset or its vocabulary compacted since. */
gboolean dovekie_search_vocab_read (DovekieIndex *index, GError **error);

/* Answers a planned lookup (dovekie-search-lookup.c): definite UIDs, maybe
 * UIDs and the messages not indexed, without the expunged ones. */
gboolean dovekie_search_lookup_run (DovekieIndex *index, DovekieIndexScope scope,
                                    DovekieSearchPlan *plan, DovekieIndexAddFunc add,
                                    gpointer data, GError **error);

G_END_DECLS

#endif
