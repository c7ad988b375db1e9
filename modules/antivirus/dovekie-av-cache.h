/* The verdict cache's pieces: the message digest and the stored record.
 *
 * A verdict is stored per user through the host's kv store under
 * "v/<sha256 hex of the message>" with the value
 *   "<db version> clean"  or  "<db version> infected <signature>"
 * or, for a message an admin released from quarantine (`doveadm dovekie
 * quarantine release`), "<db version> released <signature>": clean for
 * that version, so it is not caught again until the DB changes.
 * so a message is scanned once per signature-DB version, however often it
 * is fetched, copied or appended again.
 */
#ifndef DOVEKIE_AV_CACHE_H
#define DOVEKIE_AV_CACHE_H

#include "dovekie-av.h"

G_BEGIN_DECLS

#define DOVEKIE_AV_DIGEST_LEN 32
#define DOVEKIE_AV_CACHE_PREFIX "v/"

/* Reads the whole message from `reader` (from where it stands) and hashes
 * it with SHA-256 into digest. *size_r is the number of bytes read. When
 * `keep` is not NULL the bytes are appended to it too. Reading stops early,
 * with *too_big_r TRUE and digest unset, once more than `max_bytes` were
 * read. FALSE with DOVEKIE_ERROR_IO (read) or _FAILED (OpenSSL). */
gboolean dovekie_av_digest (const DovekieAvReader *reader, guint64 max_bytes,
                            guint8 digest[DOVEKIE_AV_DIGEST_LEN], guint64 *size_r,
                            gboolean *too_big_r, GByteArray *keep, GError **error);

/* "v/" + 64 lower-case hex digits; g_free it. */
gchar *dovekie_av_cache_key (const guint8 digest[DOVEKIE_AV_DIGEST_LEN]);

/* Formats a record; `signature` is used only when INFECTED. g_free it. */
gchar *dovekie_av_cache_format (const gchar *version, DovekieAvStatus status,
                                const gchar *signature);

/* Formats a "released" record. g_free it. */
gchar *dovekie_av_cache_format_released (const gchar *version, const gchar *signature);
/* Parses a stored record (foreign bytes: it may have been edited or come
 * from an older release). On TRUE *version_r (g_free) and, when INFECTED
 * or released (status CLEAN), *signature_r (g_free; else NULL) are set. FALSE, with nothing allocated,
 * on anything malformed. */
gboolean dovekie_av_cache_parse (const gchar *value, gchar **version_r, DovekieAvStatus *status_r,
                                 gchar **signature_r);

G_END_DECLS

#endif
