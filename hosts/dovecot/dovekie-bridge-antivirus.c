/* GLib side of the antivirus service: counts a user's cached verdicts. */
#include "dovekie-config.h"

#include <stdlib.h>
#include <string.h>

#include "dovekie/loader.h"
#include "dovekie/antivirus.h"
#include "dovekie-bridge-private.h"
#include "dovekie-antivirus.h"

static const DovekieAntivirusService *
av_service (struct dovekie_bridge *bridge, DovekieContext **ctx_r)
{
  DovekieLoader *loader = bridge != NULL ? dovekie_bridge_get_loader (bridge) : NULL;

  *ctx_r = NULL;
  if (loader == NULL)
    return NULL;
  return dovekie_loader_service (loader, DOVEKIE_ANTIVIRUS_SERVICE, ctx_r);
}

bool
dovekie_bridge_has_antivirus (struct dovekie_bridge *bridge)
{
  DovekieContext *ctx;
  return av_service (bridge, &ctx) != NULL;
}

/* Keys are "<version>\t<verdict>"; values are counts. */
static void
count_verdict (const gchar *version, const gchar *verdict, gpointer data)
{
  GHashTable *counts = data;
  gchar *key = g_strconcat (version, "\t", verdict, NULL);
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (counts, key));

  g_hash_table_replace (counts, key, GUINT_TO_POINTER (n + 1));
}

static int
compare_keys (const void *a, const void *b)
{
  return strcmp (*(const gchar *const *) a, *(const gchar *const *) b);
}

int
dovekie_bridge_av_status (struct dovekie_bridge *bridge, dovekie_bridge_av_row_func_t *row,
                          void *context, char error_r[DOVEKIE_BRIDGE_REASON_MAX])
{
  DovekieContext *ctx;
  const DovekieAntivirusService *svc = av_service (bridge, &ctx);
  g_autoptr (GHashTable) counts = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree gpointer *keys = NULL;
  guint n = 0;

  if (svc == NULL)
    {
      g_strlcpy (error_r, "the antivirus module is not loaded", DOVEKIE_BRIDGE_REASON_MAX);
      return -1;
    }
  counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  if (!svc->foreach_verdict (ctx, count_verdict, counts, &error))
    {
      g_strlcpy (error_r, error != NULL ? error->message : "unknown error",
                 DOVEKIE_BRIDGE_REASON_MAX);
      return -1;
    }
  keys = g_hash_table_get_keys_as_array (counts, &n);
  qsort (keys, n, sizeof (gpointer), compare_keys);
  for (guint i = 0; i < n; i++)
    {
      const gchar *key = keys[i];
      const gchar *tab = strchr (key, '\t');
      g_autofree gchar *version = g_strndup (key, (gsize) (tab - key));

      row (context, version, tab + 1,
           GPOINTER_TO_UINT (g_hash_table_lookup (counts, key)));
    }
  return 0;
}
