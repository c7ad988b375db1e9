/* The search module's index: one SQLite FTS5 database per mailbox.
 *
 * Schema (version 9; an index of an older version is removed and rebuilt):
 *   body_terms(t)    FTS5, tokenizer dovekie_gram (the terms of
 *                    dovekie-search-plan.h: short words whole, character
 *                    terms since schema 8, triples of non-word characters
 *                    since schema 9), detail=none,
 *                    contentless: the BODY field, rowid = uid.
 *   header_terms(t)  the same for the other fields,
 *                    rowid = uid * 8 + DovekieIndexField.
 *   The body, most of the index, has a table of its own so that its
 *   doclists store uid gaps, not gaps 8 times as large: 10% smaller
 *   (schema 4 had every field in one table). A long text is stored as
 *   several rows with the same rowid whose chunks overlap by
 *   DOVEKIE_SEARCH_WORD_BYTES bytes.
 *   gone(uid)   expunged messages (a contentless FTS5 table of this SQLite
 *               cannot delete rows): filtered out of every lookup.
 *   unindexed(uid)  messages too large to index: always "maybe".
 *   meta(key, value)  schema, uidvalidity, last_uid, generation (changed
 *               by every reset; see begin() in dovekie-search-index.c),
 *               vocab_epoch (changed when optimize rewrites vocab_log).
 *   vocab_log(seq, words)  the vocabulary: every short word of two code
 *               points or more (three before schema 8) in any row, one row per batch that added
 *               any ('\n' after each word), which a lookup reads once and
 *               then from the seq it reached, and scans in memory for the
 *               words that contain a needle's run. A word may be logged
 *               more than once (a writer only remembers so many);
 *               optimize leaves each once, in one row.
 * The rows of a message, its new words and last_uid are committed in one
 * transaction.
 */
#ifndef DOVEKIE_SEARCH_INDEX_H
#define DOVEKIE_SEARCH_INDEX_H

#include <glib.h>

#include "dovekie/index.h"

G_BEGIN_DECLS

#define DOVEKIE_SEARCH_SCHEMA 9
/* header_terms: rowid = uid << DOVEKIE_SEARCH_FIELD_BITS | field */
#define DOVEKIE_SEARCH_FIELD_BITS 3
G_STATIC_ASSERT (DOVEKIE_INDEX_FIELD_COUNT <= 1 << DOVEKIE_SEARCH_FIELD_BITS);
/* Messages an indexing run writes before its last flush tidies the index. */
#define DOVEKIE_SEARCH_TIDY_DOCS 1000
/* Bytes of one stored row before a text is split. Each row gives the
 * distinct grams of its long words again (FTS5 keeps a message's term
 * once, but looks each one up): 1 MiB instead of 256 KiB took indexing a
 * 10 MB single word from 4.2 s to 2.2 s (peak RSS of doveadm 28 MB). */
#define DOVEKIE_SEARCH_CHUNK (1024 * 1024)

extern const DovekieIndexVtable dovekie_search_index_vtable;

/* The settings an index uses; read from the context by open(). */
typedef struct {
  guint batch_size;   /* messages per write transaction */
  guint64 cache_size; /* SQLite page cache, bytes */
  guint64 max_text;   /* bytes of text per message before it is left unindexed */
} DovekieSearchLimits;

/* open() with explicit limits, for tests and tools without a context
 * (`ctx` may then be NULL: log lines go to g_log). */
DovekieIndex *dovekie_search_index_open_with (DovekieContext *ctx, const gchar *path,
                                              guint32 uidvalidity,
                                              const DovekieSearchLimits *limits,
                                              GError **error);

G_END_DECLS

#endif
