/* In-process libclamav: one engine per process, for long-lived jobs (the
 * doveadm rescan), small signature sets and the sandbox.
 *
 * A full ClamAV database needs about 1.2 GiB, far above Dovecot's default
 * vsz_limit, so online scanning in imap/lmtp processes should use clamd.
 *
 * The engine is built on first use and kept until dovekie_av_engine_shutdown
 * (the module stays resident, so it survives a user's deinit). Asking for
 * other settings (another DB directory or other limits) builds a new one.
 * All functions are thread-safe.
 */
#ifndef DOVEKIE_AV_ENGINE_H
#define DOVEKIE_AV_ENGINE_H

#include "dovekie-av.h"

G_BEGIN_DECLS

typedef struct {
  guint64 max_scansize;   /* bytes scanned per message, containers included */
  guint64 max_filesize;   /* largest single file (attachment, member) scanned */
  guint32 max_recursion;  /* container nesting depth */
  guint32 max_files;      /* files scanned per message */
  guint32 max_scantime_ms;/* time per message */
} DovekieAvLimits;

/* Makes sure an engine for `db_dir` and `limits` is ready: builds it on
 * first use; afterwards, at most every `check_secs` seconds, asks
 * cl_statchkdir whether the directory changed and rebuilds if so. A failed
 * rebuild keeps the old engine. *notice_r (g_free it) is set to a line
 * worth logging when an engine was (re)built or a rebuild failed, else
 * NULL. FALSE with DOVEKIE_ERROR_UNAVAILABLE when no engine could be built. */
gboolean dovekie_av_engine_prepare (const gchar *db_dir, const DovekieAvLimits *limits,
                                    guint check_secs, gchar **notice_r, GError **error);

/* Scans `len` bytes (a whole message; libclamav decodes MIME, archives...)
 * with the prepared engine. *signature_r as for dovekie_av_clamd_scan.
 * FALSE with DOVEKIE_ERROR_TIMEOUT (scan time limit) or _FAILED. */
gboolean dovekie_av_engine_scan (const guint8 *data, gsize len, DovekieAvStatus *status_r,
                                 gchar **signature_r, GError **error);

/* "<libclamav version>/<DB version>" of the prepared engine (g_free it),
 * in the same form as dovekie_av_clamd_version. */
gchar *dovekie_av_engine_version (void);

/* What dovekie_av_engine_version would say once an engine is built on
 * `db_dir`, read from the headers of its .cvd/.cld files (cl_cvdhead)
 * and the unofficial files' fingerprint, without loading a signature:
 * cheap enough for a status command. FALSE with `error` when db_dir
 * cannot be read or holds no signature file at all. */
gboolean dovekie_av_engine_peek_version (const gchar *db_dir, gchar **version_r, GError **error);

/* Frees the engine (tests, and the module's unload). */
void dovekie_av_engine_shutdown (void);

G_END_DECLS

#endif
