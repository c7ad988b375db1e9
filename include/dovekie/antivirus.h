/* The "antivirus" service: what the antivirus module tells the host's
 * `doveadm dovekie scan-status` about a user's verdict cache.
 *
 * A host looks it up with dovekie_loader_service (loader, "antivirus", &ctx)
 * and calls every function with that ctx. All functions are non-NULL.
 */
#ifndef DOVEKIE_ANTIVIRUS_H
#define DOVEKIE_ANTIVIRUS_H

#include <glib.h>

#include "dovekie/module.h"

G_BEGIN_DECLS

#define DOVEKIE_ANTIVIRUS_SERVICE "antivirus"

/* One cached verdict: the signature-DB version it was made with and
 * "clean", "infected" or "malformed" (a record that cannot be parsed;
 * version is then ""). Strings are valid for the call. */
typedef void (*DovekieAntivirusVerdictFunc) (const gchar *version, const gchar *verdict,
                                             gpointer data);

typedef struct {
  /* Calls func once per record of the user's verdict cache, in no
   * particular order. FALSE with `error` when the store cannot be read. */
  gboolean (*foreach_verdict) (DovekieContext *ctx, DovekieAntivirusVerdictFunc func,
                               gpointer data, GError **error);
} DovekieAntivirusService;

G_END_DECLS

#endif
