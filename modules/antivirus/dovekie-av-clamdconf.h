/* What the antivirus module reads of clamd's own configuration file.
 *
 * The verdict cache is keyed by the signature files clamd loads. clamd's
 * VERSION only moves with the official .cvd/.cld files, so the module looks
 * at the directory itself: the one dovekie_av_clamd_database names, or the
 * DatabaseDirectory of clamd.conf (dovekie_av_clamd_conf) when that file
 * describes a clamd the module talks to (its LocalSocket is one of the
 * unix: servers of dovekie_av_clamd, or its TCPSocket one of the tcp:
 * servers on the loopback).
 *
 * DIAGNOSTICS: errors are DOVEKIE_ERROR_FAILED and name the file and line.
 */
#ifndef DOVEKIE_AV_CLAMDCONF_H
#define DOVEKIE_AV_CLAMDCONF_H

#include "dovekie-av.h"

G_BEGIN_DECLS

/* clamd's compiled-in DatabaseDirectory on Debian. */
#define DOVEKIE_AV_CLAMD_DEFAULT_DB "/var/lib/clamav"
/* Largest clamd.conf read; Debian's is about 2 KB, the commented example 30 KB. */
#define DOVEKIE_AV_CLAMDCONF_MAX (1024 * 1024)

typedef struct {
  gchar *local_socket;       /* NULL when not set */
  guint tcp_port;            /* 0 when not set */
  gchar *database_directory; /* never NULL: clamd's default when not set */
} DovekieAvClamdConf;

void dovekie_av_clamdconf_free (DovekieAvClamdConf *conf);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DovekieAvClamdConf, dovekie_av_clamdconf_free)

/* Parses clamd.conf text (`name` is for errors). Lines are "Option value"
 * or comments (#); other options are skipped. NULL on a line with a NUL
 * or an option of ours without a value, or a TCPSocket that is not a port. */
DovekieAvClamdConf *dovekie_av_clamdconf_parse (const gchar *text, gsize len, const gchar *name,
                                                GError **error);

/* Reads and parses the file at path. NULL with *missing_r TRUE (and no
 * error) when there is no such file; NULL with error when it cannot be
 * read, is larger than DOVEKIE_AV_CLAMDCONF_MAX or does not parse. */
DovekieAvClamdConf *dovekie_av_clamdconf_read (const gchar *path, gboolean *missing_r,
                                               GError **error);

/* Whether the clamd that conf describes is one of `servers` (the
 * dovekie_av_clamd list: unix:/path and tcp:HOST:PORT, separated by spaces
 * or commas). */
gboolean dovekie_av_clamdconf_serves (const DovekieAvClamdConf *conf, const gchar *servers);

G_END_DECLS

#endif
