/* dovekie search module: an exact-substring candidate index for IMAP
 * SEARCH, offered to the host as the "index" service (dovekie/index.h).
 *
 * The module keeps no per-user state of its own: the host opens one index
 * per mailbox through the service and closes it when done.
 *
 * Events (dovekie_emit; Dovecot's stats service can count them):
 *   dovekie_search_indexed  per committed batch: messages, bytes (of text)
 *   dovekie_search_lookup   per answered lookup: scope (text, body or
 *                           header), definite, maybe (UIDs the host verifies)
 */
#include "dovekie-config.h"

#include <gmodule.h>

#include "dovekie/module.h"
#include "dovekie/index.h"
#include "dovekie-search-index.h"

static const DovekieSettingDef search_settings[] = {
  { "dovekie_search_batch_size", DOVEKIE_SETTING_UINT, "1000", 1, 100000, NULL,
    "messages indexed per database transaction" },
  { "dovekie_search_cache_size", DOVEKIE_SETTING_SIZE, "8M", 256 * 1024,
    G_GUINT64_CONSTANT (1) << 30, NULL, "SQLite page cache per open index" },
  { "dovekie_search_max_text", DOVEKIE_SETTING_SIZE, "64M", 64 * 1024,
    G_GUINT64_CONSTANT (1) << 30, NULL,
    "text of one message above which it is not indexed (searches then read it)" },
  { NULL, 0, NULL, 0, 0, NULL, NULL },
};

G_MODULE_EXPORT const DovekieModule dovekie_module = {
  .abi = DOVEKIE_MODULE_ABI,
  .name = "search",
  .version = PACKAGE_VERSION,
  .description = "full-text index for IMAP SEARCH with exact substring results",
  .settings = search_settings,
  .services = (const DovekieService[]) {
    { DOVEKIE_INDEX_SERVICE, &dovekie_search_index_vtable },
    { NULL, NULL },
  },
};
