/* The search module's FTS5 tokenizer "dovekie_gram".
 *
 * A document's terms are those of dovekie_search_terms_foreach (suffixes
 * of short words, marked grams of long ones). A query string is one
 * term, verbatim: the planner only sends terms and term prefixes. The
 * tokenizer folds nothing, so terms match bytes exactly.
 */
#ifndef DOVEKIE_SEARCH_TOKENIZER_H
#define DOVEKIE_SEARCH_TOKENIZER_H

#include <glib.h>
#include <sqlite3.h>

G_BEGIN_DECLS

#define DOVEKIE_SEARCH_TOKENIZER "dovekie_gram"

/* Registers the tokenizer on `db` (once per connection, before any
 * statement that uses an FTS5 table made with it). FALSE with `error`
 * (DOVEKIE_ERROR) when this SQLite has no FTS5. */
gboolean dovekie_search_tokenizer_register (sqlite3 *db, GError **error);

G_END_DECLS

#endif
