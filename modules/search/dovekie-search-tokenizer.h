/* The search module's FTS5 tokenizer "dovekie_gram".
 *
 * A row's terms are those of dovekie_search_terms_foreach (short words,
 * marked grams of long ones, boundary terms), each distinct one given
 * once. Each short word it gives is also passed to the word function it
 * was registered with, which keeps the vocabulary. A query string is one
 * term, verbatim: the planner only sends terms and term prefixes. The
 * tokenizer folds nothing, so terms match bytes exactly.
 */
#ifndef DOVEKIE_SEARCH_TOKENIZER_H
#define DOVEKIE_SEARCH_TOKENIZER_H

#include <glib.h>
#include <sqlite3.h>

G_BEGIN_DECLS

#define DOVEKIE_SEARCH_TOKENIZER "dovekie_gram"

/* Called with each short word (`len` bytes, not terminated, valid only
 * during the call) of a row written. */
typedef void (*DovekieSearchWordFunc) (gpointer data, const gchar *word, gsize len);

/* Registers the tokenizer on `db` (once per connection, before any
 * statement that uses an FTS5 table made with it); `on_word` (may be
 * NULL) gets the words of the rows written. FALSE with `error`
 * (DOVEKIE_ERROR) when this SQLite has no FTS5. */
gboolean dovekie_search_tokenizer_register (sqlite3 *db, DovekieSearchWordFunc on_word,
                                            gpointer data, GError **error);

G_END_DECLS

#endif
