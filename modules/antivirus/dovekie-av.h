/* dovekie antivirus: types shared by the module's units.
 *
 * The units are host-agnostic and GLib-only: the reply parser
 * (dovekie-av-reply.c), the clamd client (dovekie-av-clamd.c), the
 * in-process libclamav engine (dovekie-av-engine.c), the verdict cache
 * codec (dovekie-av-cache.c), the quarantine notice (dovekie-av-notice.c)
 * and the module itself (dovekie-antivirus.c).
 */
#ifndef DOVEKIE_AV_H
#define DOVEKIE_AV_H

#include <glib.h>

#include "dovekie/module.h"

G_BEGIN_DECLS

/* What a scanner found. */
typedef enum {
  DOVEKIE_AV_CLEAN = 0,
  DOVEKIE_AV_INFECTED,
} DovekieAvStatus;

/* Longest signature name we accept from a scanner, in bytes. */
#define DOVEKIE_AV_SIGNATURE_MAX 200
/* Longest DB version text, e.g. "1.4.6/27500". */
#define DOVEKIE_AV_VERSION_MAX 64

/* A scanner's bytes come from here: read returns the count, 0 at the end,
 * -1 with `error` set; rewind starts again at byte 0 (used on failover).
 * fd, if not NULL, returns a readable fd of a regular file that holds
 * exactly the bytes read yields (from file offset 0), or -1 when there is
 * none; the fd stays the reader's (clamd's FILDES reads it directly). */
typedef struct {
  gssize (*read) (gpointer data, guint8 *buf, gsize len, GError **error);
  gboolean (*rewind) (gpointer data, GError **error);
  gpointer data;
  gint (*fd) (gpointer data);
} DovekieAvReader;

/* Errors are reported in the DOVEKIE_ERROR domain:
 *   DOVEKIE_ERROR_UNAVAILABLE  no scanner could be reached
 *   DOVEKIE_ERROR_TIMEOUT      a scanner took too long
 *   DOVEKIE_ERROR_PROTOCOL     a scanner answered something unparsable,
 *                              or reported an error of its own
 *   DOVEKIE_ERROR_IO           the message could not be read
 *   DOVEKIE_ERROR_FAILED       anything else (e.g. bad configuration) */

G_END_DECLS

#endif
