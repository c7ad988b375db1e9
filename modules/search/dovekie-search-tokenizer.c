/* FTS5 tokenizer "dovekie_gram". See dovekie-search-tokenizer.h. */
#include "dovekie-config.h"

#include "dovekie/module.h"
#include "dovekie-search-plan.h"
#include "dovekie-search-tokenizer.h"

/* The tokenizer has no state; FTS5 still wants a distinct handle. */
static int tokenizer_handle;

static int
gram_create (void *ctx, const char **args, int n_args, Fts5Tokenizer **tokenizer_r)
{
  (void) ctx;
  (void) args;
  if (n_args != 0)
    return SQLITE_ERROR;
  *tokenizer_r = (Fts5Tokenizer *) &tokenizer_handle;
  return SQLITE_OK;
}

static void
gram_delete (Fts5Tokenizer *tokenizer)
{
  (void) tokenizer;
}

typedef struct {
  void *ctx;
  int (*token) (void *ctx, int flags, const char *token, int len, int start, int end);
  int rc;
} GramEmit;

static gboolean
emit_gram (gpointer data, const gchar *term, gsize len)
{
  GramEmit *emit = data;
  /* Offsets only serve auxiliary functions (highlight, snippet), which
   * need stored content: this index has none. */
  emit->rc = emit->token (emit->ctx, 0, term, (int) len, 0, 0);
  return emit->rc == SQLITE_OK;
}

static int
gram_tokenize (Fts5Tokenizer *tokenizer, void *ctx, int flags, const char *text, int len,
               int (*token) (void *ctx, int flags, const char *token, int len, int start,
                             int end))
{
  GramEmit emit = { ctx, token, SQLITE_OK };

  (void) tokenizer;
  if (len <= 0)
    return SQLITE_OK;
  /* A query term is a gram already (or a prefix of one). */
  if ((flags & FTS5_TOKENIZE_QUERY) != 0)
    return token (ctx, 0, text, len, 0, len);
  (void) dovekie_search_terms_foreach_unique (text, (gsize) len, emit_gram, &emit);
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
dovekie_search_tokenizer_register (sqlite3 *db, GError **error)
{
  static fts5_tokenizer vtable = {
    .xCreate = gram_create,
    .xDelete = gram_delete,
    .xTokenize = gram_tokenize,
  };
  fts5_api *api = get_fts5_api (db);

  if (api == NULL || api->iVersion < 2)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "SQLite has no usable FTS5");
      return FALSE;
    }
  if (api->xCreateTokenizer (api, DOVEKIE_SEARCH_TOKENIZER, NULL, &vtable, NULL) != SQLITE_OK)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "cannot register %s: %s",
                   DOVEKIE_SEARCH_TOKENIZER, sqlite3_errmsg (db));
      return FALSE;
    }
  return TRUE;
}
