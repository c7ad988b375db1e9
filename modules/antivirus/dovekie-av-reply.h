/* Strict parsers for clamd's replies (foreign bytes).
 *
 * Both take the reply without its terminator (clamd's z-mode NUL), as a
 * byte buffer that need not be NUL-terminated and may contain anything.
 * Neither allocates on failure.
 */
#ifndef DOVEKIE_AV_REPLY_H
#define DOVEKIE_AV_REPLY_H

#include "dovekie-av.h"

G_BEGIN_DECLS

/* Longest reply line accepted from clamd, in bytes. */
#define DOVEKIE_AV_REPLY_MAX 1024

/* Parses an INSTREAM reply:
 *   "stream: OK"              -> CLEAN
 *   "stream: <name> FOUND"    -> INFECTED, *signature_r = name (g_free it)
 *   "stream: <text> ERROR", "<text> ERROR" (clamd's own error, e.g.
 *   "INSTREAM size limit exceeded. ERROR") and anything else -> FALSE with
 *   DOVEKIE_ERROR_PROTOCOL. A name is 1..DOVEKIE_AV_SIGNATURE_MAX bytes of
 *   printable ASCII without spaces. *signature_r is NULL unless INFECTED. */
gboolean dovekie_av_reply_parse (const gchar *reply, gsize len, DovekieAvStatus *status_r,
                                 gchar **signature_r, GError **error);

/* Parses a VERSION reply, "ClamAV <engine>[/<db>[/<date>]]", into
 * "<engine>/<db>" (db "0" when clamd has no official DB loaded); g_free
 * *version_r. FALSE with DOVEKIE_ERROR_PROTOCOL on anything else. */
gboolean dovekie_av_version_parse (const gchar *reply, gsize len, gchar **version_r,
                                   GError **error);

G_END_DECLS

#endif
