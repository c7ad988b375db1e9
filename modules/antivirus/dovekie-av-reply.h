/* Strict parsers for clamd's replies (foreign bytes).
 *
 * clamd answers one command with one reply, ends it with its z-mode NUL and
 * closes the connection. dovekie_av_reply_frame checks that framing on
 * everything received until the close; the parsers then take the reply
 * without its terminator, as a byte buffer that need not be NUL-terminated
 * and may contain anything. None allocates on failure.
 */
#ifndef DOVEKIE_AV_REPLY_H
#define DOVEKIE_AV_REPLY_H

#include "dovekie-av.h"

G_BEGIN_DECLS

/* Longest reply line accepted from clamd, in bytes. */
#define DOVEKIE_AV_REPLY_MAX 1024

/* Checks that `raw`, all the bytes clamd sent for one command before it
 * closed the connection, is exactly one reply: at least one byte, one NUL,
 * and that NUL last. On TRUE *reply_len_r is the reply's length without
 * the NUL. FALSE with DOVEKIE_ERROR_PROTOCOL on nothing, on no terminator,
 * and on anything after the terminator: a second result in any order
 * ("stream: OK\0stream: X FOUND\0") is not a verdict, nor is trailing
 * garbage. */
gboolean dovekie_av_reply_frame (const gchar *raw, gsize len, gsize *reply_len_r, GError **error);

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
