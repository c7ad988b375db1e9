/* A clamd client: INSTREAM, FILDES and VERSION over unix sockets and TCP,
 * with several servers, failover, and bounded time and reply size.
 *
 * A client is used from one thread. Each call opens a fresh connection
 * (clamd closes it after one command), so nothing is kept between calls
 * but the index of the server that answered last, which is tried first
 * next time.
 */
#ifndef DOVEKIE_AV_CLAMD_H
#define DOVEKIE_AV_CLAMD_H

#include "dovekie-av.h"

G_BEGIN_DECLS

/* Bytes sent per INSTREAM chunk. */
#define DOVEKIE_AV_CLAMD_CHUNK 65536
/* At most this many servers in one list. */
#define DOVEKIE_AV_CLAMD_SERVERS_MAX 16

typedef struct _DovekieAvClamd DovekieAvClamd;

/* What separates the servers of a list: spaces, tabs and commas, mixed
 * freely; empty items are ignored. */
#define DOVEKIE_AV_CLAMD_SEPARATORS " \t,"

/* Parses `servers`, a list of "unix:/absolute/path" and "tcp:HOST:PORT"
 * (HOST a name, an IPv4 address or [IPv6]) separated by
 * DOVEKIE_AV_CLAMD_SEPARATORS. Timeouts are in milliseconds: `connect_ms`
 * per connection attempt, `scan_ms` for one whole exchange with one server
 * (sending the message and waiting for the verdict). NULL with
 * DOVEKIE_ERROR_FAILED naming the setting dovekie_av_clamd and the bad
 * item (quoted), or the whole value when it names no server. */
DovekieAvClamd *dovekie_av_clamd_new (const gchar *servers, guint connect_ms, guint scan_ms,
                                      GError **error);
/* NULL is a no-op. */
void dovekie_av_clamd_free (DovekieAvClamd *clamd);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DovekieAvClamd, dovekie_av_clamd_free)

/* Whether scans may pass the message's fd to a unix: server (FILDES)
 * instead of streaming its bytes; TRUE after dovekie_av_clamd_new. */
void dovekie_av_clamd_set_fildes (DovekieAvClamd *clamd, gboolean fildes);

/* Sends the reader's bytes to clamd and parses the verdict.
 *
 * How: FILDES when it is enabled, the server is unix:, and reader->fd
 * gives a readable regular file of at most `max_bytes` (clamd reads the
 * file itself; the fd's offset is put back afterwards, as clamd moves
 * it). If clamd answers FILDES with an error of its own ("... ERROR") or
 * with anything unparsable, or the fd cannot be sent, the same server is
 * asked again over INSTREAM: a failed FILDES never yields a verdict. Else
 * INSTREAM (the reader is read from where it is).
 *
 * Servers are tried in list order, starting with the one that answered
 * last; a server that cannot be reached, times out or answers garbage is
 * skipped after rewinding the reader. At most `max_bytes` are sent (more
 * is an error: the caller checks sizes first). On TRUE, *signature_r is the
 * signature name when INFECTED (g_free it), else NULL. FALSE with an error
 * of the DOVEKIE_ERROR domain (see dovekie-av.h); a read error of the
 * reader stops at once (DOVEKIE_ERROR_IO). */
gboolean dovekie_av_clamd_scan (DovekieAvClamd *clamd, const DovekieAvReader *reader,
                                guint64 max_bytes, DovekieAvStatus *status_r,
                                gchar **signature_r, GError **error);

/* How the last successful scan reached clamd, for logs:
 * "<server> mode=fildes", "<server> mode=instream", or
 * "<server> mode=instream-fallback" (FILDES was tried and refused); the
 * first server alone before any scan. Valid until the next call. */
const gchar *dovekie_av_clamd_scan_label (DovekieAvClamd *clamd);

/* Asks clamd for VERSION and returns "<engine>/<db version>" (g_free it).
 * Same server order and failover as a scan. */
gboolean dovekie_av_clamd_version (DovekieAvClamd *clamd, gchar **version_r, GError **error);

/* The server that answered the last successful call, as written in the
 * list ("unix:/run/clamav/clamd.ctl"); the first one before any call. */
const gchar *dovekie_av_clamd_server (DovekieAvClamd *clamd);

G_END_DECLS

#endif
