/* libdovekie: loads dovekie modules for one user and dispatches host events.
 *
 * The host (e.g. the Dovecot adapter) creates one DovekieLoader per mail
 * user, with that user's settings, then calls the dispatch functions. GLib
 * only: no host type appears here.
 */
#ifndef DOVEKIE_LOADER_H
#define DOVEKIE_LOADER_H

#include <glib.h>

#include "dovekie/module.h"

G_BEGIN_DECLS

#define DOVEKIE_LOADER_ERROR (dovekie_loader_error_quark ())
GQuark dovekie_loader_error_quark (void);

typedef enum {
  DOVEKIE_LOADER_ERROR_UNKNOWN_MODULE, /* name is not a dovekie module and no file has it */
  DOVEKIE_LOADER_ERROR_MISSING_FILE,   /* a dovekie module whose file is not installed */
  DOVEKIE_LOADER_ERROR_OPEN,           /* the file exists but dlopen failed */
  DOVEKIE_LOADER_ERROR_PERMISSION,     /* unsafe owner or mode */
  DOVEKIE_LOADER_ERROR_MISSING_SYMBOL, /* no `dovekie_module` symbol */
  DOVEKIE_LOADER_ERROR_ABI,            /* ABI number mismatch */
  DOVEKIE_LOADER_ERROR_INIT,           /* the module's init failed */
  DOVEKIE_LOADER_ERROR_SETTING,        /* a bad or unknown setting */
  DOVEKIE_LOADER_ERROR_DUPLICATE,      /* module listed twice, or a service provided twice */
} DovekieLoaderError;

/* Settings the loader itself owns. */
#define DOVEKIE_SETTING_MODULES "dovekie_modules"
#define DOVEKIE_SETTING_MODULE_DIR "dovekie_module_dir"
#define DOVEKIE_SETTING_CLOCK_OFFSET "dovekie_test_clock_offset"

/* The loader's own settings (NULL-name terminated). */
extern const DovekieSettingDef dovekie_loader_settings[];

/* Callback of DovekieHost.kv_foreach; FALSE stops the iteration. */
typedef gboolean (*DovekieKvFunc) (const gchar *key, const gchar *value, gpointer data);

/* What the host provides to the loader. `log` and `now` must be non-NULL;
 * `data` is passed back unchanged. The kv functions may be NULL, and then
 * a module's kv calls fail with "not supported by this host". `module` is
 * the namespace (the module's name); keys and values are already checked
 * by the loader (see DovekieHostApi.kv_get). */
typedef struct {
  void (*log) (gpointer data, DovekieLogLevel level, const gchar *module, const gchar *message);
  gint64 (*now) (gpointer data);
  gpointer data;
  gboolean (*kv_get) (gpointer data, const gchar *module, const gchar *key, gchar **value_r,
                      GError **error);
  gboolean (*kv_set) (gpointer data, const gchar *module, const gchar *key, const gchar *value,
                      GError **error);
  gboolean (*kv_foreach) (gpointer data, const gchar *module, const gchar *prefix,
                          DovekieKvFunc func, gpointer func_data, GError **error);
  /* May be NULL: events are then dropped. Name and fields are checked. */
  void (*emit) (gpointer data, const gchar *module, const gchar *name,
                const gchar *const *fields);
  /* May be NULL: a module's kv_defer is then a kv_set. See
   * DovekieHostApi.kv_defer. */
  gboolean (*kv_defer) (gpointer data, const gchar *module, const gchar *key, const gchar *value,
                        GError **error);
} DovekieHost;

/* The limits of kv keys and values. */
#define DOVEKIE_KV_KEY_MAX 200
#define DOVEKIE_KV_VALUE_MAX (64 * 1024)
/* Whether `key` is a valid kv key (1..DOVEKIE_KV_KEY_MAX of [A-Za-z0-9._:/-]). */
gboolean dovekie_kv_key_valid (const gchar *key);

typedef struct _DovekieLoader DovekieLoader;

/* What a module that is listed for a user but failed to start stands
 * guard over. While such a module is failed, the dispatch functions refuse
 * what it guards with a TEMPFAIL instead of letting it through unguarded
 * (DESIGN.md principle 7, "fail closed"). */
typedef enum {
  DOVEKIE_GUARD_NONE = 0,
  DOVEKIE_GUARD_SAVE = 1 << 0, /* deliveries, APPEND, COPY and MOVE */
  DOVEKIE_GUARD_READ = 1 << 1, /* reads of message bodies */
  DOVEKIE_GUARD_POP3 = 1 << 2, /* POP3 sessions, which may delete */
} DovekieGuard;

/* The reason text given to clients and senders for a guarded refusal. */
#define DOVEKIE_GUARD_REASON \
  "Mail checks are unavailable because of a server configuration problem, try again later"

/* Settings that decide which code runs or what time it is: accepted only
 * from the global configuration, never from a user's own record. */
gboolean dovekie_setting_is_global_only (const gchar *key);

/* Creates a loader for one user. `settings` maps keys to values (only the
 * `dovekie_*` keys are read; the table is copied). `default_module_dir` is
 * used when dovekie_module_dir is unset. Never fails: problems with single
 * modules are logged once through host->log and the module is skipped, so
 * the mail session goes on. Free with dovekie_loader_free(). */
DovekieLoader *dovekie_loader_new (GHashTable *settings,
                                   const gchar *default_module_dir,
                                   const DovekieHost *host);

/* Like dovekie_loader_new, but `user_keys` (NULL-terminated, may be NULL)
 * names the keys of `settings` that came from the user's own record (a
 * userdb field) rather than the global configuration. A global-only key
 * among them (see dovekie_setting_is_global_only) fails every listed
 * module. Problems name their origin ("from userdb"). */
DovekieLoader *dovekie_loader_new_full (GHashTable *settings,
                                        const gchar *const *user_keys,
                                        const gchar *default_module_dir,
                                        const DovekieHost *host);

/* Modules listed in dovekie_modules that failed to start (a bad or
 * unknown setting of theirs, a missing or unsafe file, an ABI mismatch,
 * an init error, a bad loader setting), in list order. `name_r` and
 * `reason_r` are owned by the loader; `reason_r` names the setting and the
 * value where one is to blame. FALSE when index is out of range. */
guint dovekie_loader_failed_count (DovekieLoader *loader);
gboolean dovekie_loader_failed_info (DovekieLoader *loader, guint index, const gchar **name_r,
                                     const gchar **reason_r, DovekieGuard *guards_r);
/* The first failed module that guards `guard`: TRUE with its name and
 * reason (owned by the loader), FALSE when nothing guarding it failed. */
gboolean dovekie_loader_guarded (DovekieLoader *loader, DovekieGuard guard,
                                 const gchar **name_r, const gchar **reason_r);

/* Every problem the loader found while it was created (failed modules,
 * misspelt settings, bad loader settings), each once, in the order found;
 * owned by the loader. Each is also logged once as an error. */
guint dovekie_loader_problem_count (DovekieLoader *loader);
const gchar *dovekie_loader_problem (DovekieLoader *loader, guint index);

/* Loads one module by name into the loader. Used by dovekie_loader_new for
 * each name of dovekie_modules, and by tests. FALSE with `error` (domain
 * DOVEKIE_LOADER_ERROR) on failure; nothing is then kept of that module. */
gboolean dovekie_loader_load (DovekieLoader *loader, const gchar *name, GError **error);

/* Rejects `dovekie_*` keys that no module could declare: neither the
 * loader, nor a loaded module, nor the prefix of a dovekie module or of a
 * listed one (the options of a module a user does not load are not
 * misspellings). Called by dovekie_loader_new after loading. */
gboolean dovekie_loader_check_unknown (DovekieLoader *loader, GError **error);

/* Deinits the modules in reverse order and unloads them. NULL is a no-op. */
void dovekie_loader_free (DovekieLoader *loader);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DovekieLoader, dovekie_loader_free)

/* Names of the loaded modules in load order; owned by the loader. */
guint dovekie_loader_count (DovekieLoader *loader);
const gchar *dovekie_loader_module_name (DovekieLoader *loader, guint index);
const DovekieModule *dovekie_loader_module (DovekieLoader *loader, guint index);
/* The vtable of `service` and, in *ctx_r, the providing module's context;
 * NULL (and *ctx_r NULL) when no loaded module provides it. */
gconstpointer dovekie_loader_service (DovekieLoader *loader, const gchar *service,
                                      DovekieContext **ctx_r);
/* The context of a loaded module, or NULL if it is not loaded. */
DovekieContext *dovekie_loader_context (DovekieLoader *loader, const gchar *name);

/* Reader callbacks the host implements for DovekieMessage. */
typedef struct {
  gssize (*read) (gpointer data, guint8 *buf, gsize len, GError **error);
  gboolean (*rewind) (gpointer data, GError **error);
  gint (*fd) (gpointer data);
} DovekieMessageSource;

/* A DovekieMessage over a host's source, for the service calls that take
 * one (the dispatch functions below make their own). */
DovekieMessage *dovekie_message_new (const DovekieMessageSource *source, gpointer data);
void dovekie_message_free (DovekieMessage *msg);

/* Dispatch. Each runs the matching hook of every loaded module in order.
 * The verdict functions return the first non-ACCEPT verdict; a module that
 * fails (returns FALSE) yields TEMPFAIL with a generic reason, and the
 * module's error is logged once; so does a verdict that breaks the
 * contract (DIVERT without a mailbox, an invalid keyword). `verdict` must
 * be zeroed by the caller (DOVEKIE_VERDICT_INIT) and its strings (reason,
 * mailbox, keyword) freed with dovekie_verdict_clear or g_free. */
void dovekie_loader_dispatch_save (DovekieLoader *loader, DovekieSaveOrigin origin,
                                   const DovekieMessageInfo *info,
                                   const DovekieMessageSource *source, gpointer source_data,
                                   DovekieVerdict *verdict);
void dovekie_loader_dispatch_read (DovekieLoader *loader, DovekieReadOrigin origin,
                                   const DovekieMessageInfo *info,
                                   const DovekieMessageSource *source, gpointer source_data,
                                   DovekieVerdict *verdict);
/* KEEP if any module keeps the message. */
DovekieExpungeAction dovekie_loader_dispatch_expunge (DovekieLoader *loader,
                                                      const DovekieMessageInfo *info,
                                                      gboolean pop3);
void dovekie_loader_dispatch_pop3_start (DovekieLoader *loader, const DovekiePop3Info *info);
void dovekie_loader_dispatch_pop3_end (DovekieLoader *loader, const DovekiePop3Info *info);

/* Whether any loaded module has the given hook, or a failed module guards
 * it; lets the host skip work. While a module guarding save or read is
 * failed, dispatch_save and dispatch_read answer TEMPFAIL with
 * DOVEKIE_GUARD_REASON, and dispatch_expunge answers KEEP inside a POP3
 * session while a module guarding POP3 is failed; each refusal logs one
 * error naming the module and why it is not running. */
gboolean dovekie_loader_wants_save (DovekieLoader *loader);
gboolean dovekie_loader_wants_read (DovekieLoader *loader);
gboolean dovekie_loader_wants_expunge (DovekieLoader *loader);

/* Setting parsers, shared by the loader and tests. Whole-string, range
 * checked; the error names the setting. */
gboolean dovekie_setting_validate (const DovekieSettingDef *def, const gchar *value,
                                   guint64 *number_r, GError **error);

G_END_DECLS

#endif
