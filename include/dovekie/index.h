/* dovekie "index" service: a full-text candidate index for one mailbox.
 *
 * A module that provides the service name "index" points its
 * DovekieService.vtable at a DovekieIndexVtable. The host (e.g. the Dovecot
 * fts backend) calls it with the providing module's context.
 *
 * Text contract. The host feeds each message as the texts its own
 * sequential search compares against (headers as "Name: value\r\n", decoded
 * body parts, normalized address lists), already passed through the host's
 * comparator normalizer (Dovecot: i;unicode-casemap). Needles go through
 * the same normalizer. The index therefore folds nothing itself: it matches
 * code points exactly, and its answer for a needle is
 *   - definite: messages that certainly contain it;
 *   - maybe: a superset of the remaining matches, which the host verifies.
 * Every message that contains the needle is in one of the two sets, unless
 * the answer is "not handled" (the needle is too short), and then the host
 * searches by itself.
 *
 * Lifetime and threading: an index handle belongs to one context and is
 * used from one thread. Writes are batched in transactions: a crash loses
 * at most the uncommitted batch, and get_last_uid then reports the last
 * committed message, so the host indexes the rest again.
 *
 * Several processes may write one index at once (Dovecot: `doveadm index`
 * and the indexer of a search). The index keeps "every message up to the
 * last UID is in it" true for all of them: the last UID never goes back
 * except by reset, a writer skips the messages another one has committed,
 * and a writer whose index was reset under it stops adding until the host
 * asks get_last_uid again. A lookup answers from one consistent state and
 * says which last UID that state covers.
 */
#ifndef DOVEKIE_INDEX_H
#define DOVEKIE_INDEX_H

#include <glib.h>

#include "dovekie/module.h"

G_BEGIN_DECLS

#define DOVEKIE_INDEX_SERVICE "index"

typedef struct _DovekieIndex DovekieIndex;

/* Which text of a message a piece belongs to. The keyed fields (SUBJECT
 * to BCC) hold exactly the text that Dovecot's search key of that name
 * compares, each instance of the header of the message (not of its parts)
 * followed by a line feed. */
typedef enum {
  DOVEKIE_INDEX_FIELD_HEADER = 0,  /* every header of every MIME part, as TEXT sees it */
  DOVEKIE_INDEX_FIELD_BODY = 1,    /* decoded text/ and message/ part bodies, as BODY sees it */
  DOVEKIE_INDEX_FIELD_SUBJECT = 2, /* Subject, white space compressed, decoded */
  DOVEKIE_INDEX_FIELD_FROM = 3,    /* From, as a normalized address list, decoded */
  DOVEKIE_INDEX_FIELD_TO = 4,      /* To, likewise */
  DOVEKIE_INDEX_FIELD_CC = 5,      /* Cc, likewise */
  DOVEKIE_INDEX_FIELD_BCC = 6,     /* Bcc, likewise */
} DovekieIndexField;
#define DOVEKIE_INDEX_FIELD_COUNT 7

/* What a needle is searched in. */
typedef enum {
  DOVEKIE_INDEX_SCOPE_TEXT = 0,    /* HEADER or BODY fields */
  DOVEKIE_INDEX_SCOPE_BODY = 1,    /* BODY field only */
  DOVEKIE_INDEX_SCOPE_HEADER = 2,  /* one named header's value: HEADER field; never definite */
  /* The search keys SUBJECT, FROM, TO, CC, BCC: their keyed field; a
   * needle that the index proves there is definite. */
  DOVEKIE_INDEX_SCOPE_SUBJECT = 3,
  DOVEKIE_INDEX_SCOPE_FROM = 4,
  DOVEKIE_INDEX_SCOPE_TO = 5,
  DOVEKIE_INDEX_SCOPE_CC = 6,
  DOVEKIE_INDEX_SCOPE_BCC = 7,
} DovekieIndexScope;
#define DOVEKIE_INDEX_SCOPE_COUNT 8

/* Called once per matching UID, in ascending UID order; `definite` tells
 * a proven match from a candidate. */
typedef void (*DovekieIndexAddFunc) (gpointer data, guint32 uid, gboolean definite);

typedef struct {
  /* Opens (creating if needed) the index stored in the file `path`.
   * `uidvalidity` is the mailbox's; an index built for another
   * uidvalidity is emptied. A corrupt or unreadable file is logged,
   * removed and created again. NULL with `error` (DOVEKIE_ERROR) when the
   * file cannot be created or opened (e.g. a read-only directory). Free
   * with close. */
  DovekieIndex *(*open) (DovekieContext *ctx, const gchar *path, guint32 uidvalidity,
                         GError **error);
  /* Commits pending writes (errors are logged) and frees. NULL is a no-op. */
  void (*close) (DovekieIndex *index);

  /* Highest UID whose text is committed, 0 for an empty index. Outside a
   * batch it also starts a new indexing run: a writer that stopped adding
   * because the index was reset under it adds again from here. */
  gboolean (*get_last_uid) (DovekieIndex *index, guint32 *last_uid_r, GError **error);

  /* Adding one message: doc_begin, any number of doc_append, doc_end.
   * Appends to one field are concatenated; `text` is UTF-8 of `len` bytes
   * (invalid sequences are replaced, so a stray byte can never hide a
   * match). A message larger than dovekie_search_max_text is logged and
   * recorded as unindexed: every lookup then returns it as maybe. doc_end
   * commits when a batch (dovekie_search_batch_size) is full. After a FALSE
   * return the message is dropped and the next doc_begin starts clean.
   * A message at or below the last UID (another process indexed it first)
   * is skipped, as is every message of a run the index was reset under. */
  gboolean (*doc_begin) (DovekieIndex *index, guint32 uid, GError **error);
  gboolean (*doc_append) (DovekieIndex *index, DovekieIndexField field, const gchar *text,
                          gsize len, GError **error);
  gboolean (*doc_end) (DovekieIndex *index, GError **error);

  /* Forgets a message: it is never returned again. */
  gboolean (*expunge) (DovekieIndex *index, guint32 uid, GError **error);
  /* Commits the pending batch. */
  gboolean (*flush) (DovekieIndex *index, GError **error);

  /* Looks `needle` (normalized UTF-8, NUL-terminated) up in `scope`.
   * *handled_r is FALSE when the index cannot narrow the search (no run of
   * three searchable characters); nothing is added then. Otherwise `add`
   * is called for every definite and maybe UID, and *last_uid_r is the
   * last UID of the state the answer was read from. A UID up to it that
   * `add` is not called for cannot match (a host relies on this for NOT);
   * the answer says nothing about messages above it (another process may
   * have reset the index since the host asked get_last_uid). FALSE with
   * `error` on an index failure; a corrupt index is also removed, so the
   * next indexing run rebuilds it. */
  gboolean (*lookup) (DovekieIndex *index, DovekieIndexScope scope, const gchar *needle,
                      DovekieIndexAddFunc add, gpointer data, guint32 *last_uid_r,
                      gboolean *handled_r, GError **error);

  /* Empties the index (last UID 0), so everything is indexed again. */
  gboolean (*reset) (DovekieIndex *index, GError **error);
  /* Merges the index segments and truncates the write-ahead log. */
  gboolean (*optimize) (DovekieIndex *index, GError **error);
} DovekieIndexVtable;

G_END_DECLS

#endif
