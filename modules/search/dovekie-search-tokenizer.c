/* FTS5 tokenizer "dovekie_gram". See dovekie-search-tokenizer.h. */
#include "dovekie-config.h"

#include "dovekie/module.h"
#include "dovekie-search-plan.h"
#include "dovekie-search-tokenizer.h"

/* What the tokenizer of a connection knows: who gets the words. */
typedef struct {
  DovekieSearchWordFunc on_word;
  gpointer data;
} Tokenizer;

static int
tokenizer_create (void *ctx, const char **args, int n_args, Fts5Tokenizer **tokenizer_r)
{
  (void) args;
  if (n_args != 0)
    return SQLITE_ERROR;
  /* The context of its registration, which lives as long as the
   * connection: a tokenizer has nothing of its own. */
  *tokenizer_r = (Fts5Tokenizer *) ctx;
  return SQLITE_OK;
}

static void
tokenizer_delete (Fts5Tokenizer *tokenizer)
{
  (void) tokenizer;
}

typedef struct {
  const Tokenizer *tokenizer;
  void *ctx;
  int (*token) (void *ctx, int flags, const char *token, int len, int start, int end);
  int rc;
} TermEmit;

static gboolean
emit_term (gpointer data, const gchar *term, gsize len)
{
  TermEmit *emit = data;

  /* Offsets only serve auxiliary functions (highlight, snippet), which
   * need stored content: this index has none. */
  emit->rc = emit->token (emit->ctx, 0, term, (int) len, 0, 0);
  if (emit->rc == SQLITE_OK && emit->tokenizer->on_word != NULL &&
      dovekie_search_term_is_word (term, len))
    emit->tokenizer->on_word (emit->tokenizer->data, term, len);
  return emit->rc == SQLITE_OK;
}

static int
tokenizer_tokenize (Fts5Tokenizer *fts5_tokenizer, void *ctx, int flags, const char *text,
                    int len,
                    int (*token) (void *ctx, int flags, const char *token, int len, int start,
                                  int end))
{
  const Tokenizer *tokenizer = (const Tokenizer *) fts5_tokenizer;
  TermEmit emit = { tokenizer, ctx, token, SQLITE_OK };

  if (len <= 0)
    return SQLITE_OK;
  /* A query term is a term already (or a prefix of one). */
  if ((flags & FTS5_TOKENIZE_QUERY) != 0)
    return token (ctx, 0, text, len, 0, len);
  (void) dovekie_search_terms_foreach_unique (text, (gsize) len, emit_term, &emit);
  return emit.rc;
}

static fts5_api *
get_fts5_api (sqlite3 *db)
{
  fts5_api *api = NULL;
  sqlite3_stmt *stmt = NULL;

  if (sqlite3_prepare_v2 (db, "SELECT fts5(?1)", -1, &stmt, NULL) != SQLITE_OK)
    return NULL;
  sqlite3_bind_pointer (stmt, 1, (void *) &api, "fts5_api_ptr", NULL);
  (void) sqlite3_step (stmt);
  sqlite3_finalize (stmt);
  return api;
}

gboolean
dovekie_search_tokenizer_register (sqlite3 *db, DovekieSearchWordFunc on_word, gpointer data,
                                   GError **error)
{
  static fts5_tokenizer vtable = {
    .xCreate = tokenizer_create,
    .xDelete = tokenizer_delete,
    .xTokenize = tokenizer_tokenize,
  };
  Tokenizer *gram = g_new (Tokenizer, 1);
  fts5_api *api = get_fts5_api (db);

  gram->on_word = on_word;
  gram->data = data;
  if (api == NULL || api->iVersion < 2)
    {
      g_free (gram);
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "SQLite has no usable FTS5");
      return FALSE;
    }
  /* SQLite frees `gram` with the connection. */
  if (api->xCreateTokenizer (api, DOVEKIE_SEARCH_TOKENIZER, gram, &vtable, g_free) != SQLITE_OK)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "cannot register %s: %s",
                   DOVEKIE_SEARCH_TOKENIZER, sqlite3_errmsg (db));
      return FALSE;
    }
  return TRUE;
}
