/* dovekie module contract: what a module exports and what the host gives it.
 *
 * A module is a GModule shared object that exports one data symbol,
 * `dovekie_module` (DOVEKIE_MODULE_SYMBOL), of type DovekieModule. The loader
 * reads `abi` first and refuses the module unless it equals
 * DOVEKIE_MODULE_ABI; no other field is touched before that check.
 *
 * Modules never see a host type. They receive:
 *   - a DovekieContext: per user and per module; through ctx->api the module
 *     reads its validated settings, logs and asks the clock;
 *   - a DovekieMessage: a bounded reader over one message's bytes (and an fd
 *     where the host has a plain file).
 *
 * Threading: a context is used from one thread only.
 */
#ifndef DOVEKIE_MODULE_H
#define DOVEKIE_MODULE_H

#include <glib.h>

#include "dovekie/settings.h"

G_BEGIN_DECLS

/* Bumped on any incompatible change of this header or settings.h.
 * 2: DovekieVerdict gained `mailbox` and `keyword`, DovekieVerdictKind
 *    gained DIVERT and DISCARD.
 * 3: DovekieHostApi gained kv_defer. */
#define DOVEKIE_MODULE_ABI 3
#define DOVEKIE_MODULE_SYMBOL "dovekie_module"

/* Errors modules and the host report to each other (not the loader's own,
 * which use DOVEKIE_LOADER_ERROR). A macro, so modules need no symbol.
 * g_quark_from_string, not _from_static_string: GLib keeps the string of
 * the first call for good, and the first call may come from a module that
 * the loader unloads later; the next lookup then read its unmapped string
 * (ASan, loader unit test, as a fixture module was reloaded). */
#define DOVEKIE_ERROR (g_quark_from_string ("dovekie-error"))
typedef enum {
  DOVEKIE_ERROR_FAILED,      /* anything else */
  DOVEKIE_ERROR_IO,          /* reading the message failed */
  DOVEKIE_ERROR_UNAVAILABLE, /* a backend (e.g. clamd) cannot be reached */
  DOVEKIE_ERROR_TIMEOUT,     /* a backend took too long */
  DOVEKIE_ERROR_PROTOCOL,    /* a backend answered something we cannot parse */
} DovekieErrorCode;

typedef enum {
  DOVEKIE_LOG_DEBUG,
  DOVEKIE_LOG_INFO,
  DOVEKIE_LOG_WARNING,
  DOVEKIE_LOG_ERROR,
} DovekieLogLevel;

/* Where a saved message comes from. */
typedef enum {
  DOVEKIE_ORIGIN_APPEND,   /* IMAP APPEND (or any other plain save) */
  DOVEKIE_ORIGIN_COPY,     /* IMAP COPY / MOVE between mailboxes */
  DOVEKIE_ORIGIN_DELIVERY, /* LMTP (or LDA) delivery */
} DovekieSaveOrigin;

/* Who reads a message. */
typedef enum {
  DOVEKIE_READ_FETCH, /* IMAP FETCH of body data */
  DOVEKIE_READ_POP3,  /* POP3 RETR or TOP */
  DOVEKIE_READ_OTHER, /* any other reader of the full message */
  /* Not a client's read: the host found the message new at a mailbox sync,
   * before any client can fetch it. Only here may a DIVERT move it. */
  DOVEKIE_READ_SYNC,
} DovekieReadOrigin;

typedef enum {
  DOVEKIE_VERDICT_ACCEPT = 0, /* go on */
  DOVEKIE_VERDICT_REJECT,     /* refuse for good: IMAP NO, LMTP 550 5.7.1 */
  DOVEKIE_VERDICT_TEMPFAIL,   /* refuse for now: IMAP NO [UNAVAILABLE], LMTP 451 4.7.1 */
  /* Store the message into verdict->mailbox instead of where it was going
   * (created on demand, not subscribed), so nothing is lost: LMTP answers
   * 250. At a sync (DOVEKIE_READ_SYNC), the host moves the stored message
   * into `mailbox` with `keyword` and stores a short notice quoting
   * `reason` as a new message. A client's read is never diverted (it must
   * not change the mailbox): the host treats DIVERT there, and for APPEND
   * and COPY, as REJECT with `reason`. If `mailbox` is NULL or empty, the loader
   * turns the verdict into a TEMPFAIL (a module bug). */
  DOVEKIE_VERDICT_DIVERT,
  /* Store nothing but tell the sender it was taken: LMTP answers
   * 250 2.0.0 with `reason`, and the host logs it. Only for deliveries: for
   * APPEND and COPY (and reads) the host treats DISCARD as REJECT. */
  DOVEKIE_VERDICT_DISCARD,
} DovekieVerdictKind;

/* A hook's answer. Every string is owned by the verdict (g_free'd by the
 * caller; dovekie_verdict_clear frees them all). */
typedef struct {
  DovekieVerdictKind kind;
  /* Shown to the client or sender, so it names no internal detail. If
   * NULL on a non-ACCEPT verdict, the loader puts a generic text. */
  gchar *reason;
  /* DIVERT only: the mailbox (as the user sees it, e.g. "Quarantine") to
   * store the message into. Ignored for any other kind. */
  gchar *mailbox;
  /* ACCEPT and DIVERT of a delivery: an IMAP keyword (e.g. "$Infected") the
   * stored message gets, and the DIVERT of a sync: the quarantine copy's.
   * If NULL, none. It must be a valid IMAP atom
   * (no space, control, ( ) { ] % * " or backslash), else the loader turns the
   * verdict into a TEMPFAIL. Kept through the chain: a later module that
   * accepts does not drop it. Ignored for APPEND, COPY and clients' reads. */
  gchar *keyword;
} DovekieVerdict;

/* A verdict that accepts, with nothing set. */
#define DOVEKIE_VERDICT_INIT { DOVEKIE_VERDICT_ACCEPT, NULL, NULL, NULL }

/* What a module may do with an expunge it is told about. */
typedef enum {
  DOVEKIE_EXPUNGE_ALLOW = 0, /* let the host expunge it */
  DOVEKIE_EXPUNGE_KEEP,      /* the module kept the message (e.g. retention) */
} DovekieExpungeAction;

typedef struct _DovekieContext DovekieContext;
typedef struct _DovekieMessage DovekieMessage;

/* Facts about one message. Strings are valid for the duration of the call. */
typedef struct {
  const gchar *mailbox; /* mailbox name as the user sees it, never NULL */
  guint32 uid;          /* 0 when not yet assigned (a save in progress) */
  gint64 size;          /* physical size in bytes, or -1 if unknown */
} DovekieMessageInfo;

/* Facts about one POP3 session. */
typedef struct {
  const gchar *user;    /* login name as given by the client */
  guint messages;       /* messages visible in this session */
  gboolean quit_seen;   /* pop3_end only: the client said QUIT */
} DovekiePop3Info;

/* Services the host gives each context. Every function is non-NULL. */
typedef struct {
  /* Effective value of a setting this module declared: the user's value,
   * else the declared default. Valid until deinit. NULL only for a
   * declared string setting whose default is NULL and that is unset. */
  const gchar *(*get_string)(DovekieContext *ctx, const gchar *key);
  /* Validated numeric/boolean value of a declared setting. */
  guint64 (*get_uint)(DovekieContext *ctx, const gchar *key);
  gboolean (*get_bool)(DovekieContext *ctx, const gchar *key);
  /* Logs one line through the host, prefixed "dovekie-<module>: ". */
  void (*log)(DovekieContext *ctx, DovekieLogLevel level, const gchar *message);
  /* Wall clock in Unix seconds, as the host sees it (tests may shift it). */
  gint64 (*now)(DovekieContext *ctx);
  /* Reads up to `len` bytes of the message; returns the count, 0 at the
   * end, -1 with `error` set on failure. Reads are sequential. */
  gssize (*read)(DovekieMessage *msg, guint8 *buf, gsize len, GError **error);
  /* Starts reading from byte 0 again. FALSE with `error` on failure. */
  gboolean (*rewind)(DovekieMessage *msg, GError **error);
  /* A readable fd of a regular file holding exactly the message bytes,
   * from file offset 0 to its end, or -1 when the host has none
   * (compressed or encrypted storage, a dbox file holding several
   * messages, a stream in memory). The fd stays owned by the host; its
   * offset is shared with the host, so a module that moves it puts it
   * back. */
  gint (*fd)(DovekieMessage *msg);

  /* Per-user persistent key-value state of this module. The Dovecot host
   * keeps it in INBOX's private mailbox attributes under
   * vendor/vendor.dovecot/pvt/dovekie/<module>/ (needs mail_attribute_dict),
   * so it survives restarts, travels with dsync and is invisible to IMAP
   * clients. Keys: 1..200 bytes of [A-Za-z0-9._:/-]; values: UTF-8 text up
   * to 64 KiB.
   * kv_get: TRUE with *value_r set (g_free it) when found, TRUE with
   * *value_r NULL when absent, FALSE with `error` on failure. */
  gboolean (*kv_get)(DovekieContext *ctx, const gchar *key, gchar **value_r, GError **error);
  /* Stores `value`, or deletes the key when `value` is NULL. Committed
   * before it returns, except inside a batch the host opened around one
   * event (the Dovecot host does so for the retention service's POP3
   * QUIT work): then all writes of the batch commit together, or none. */
  gboolean (*kv_set)(DovekieContext *ctx, const gchar *key, const gchar *value, GError **error);
  /* Calls `func` for every key that starts with `prefix` (keys as given to
   * kv_set), in no particular order, until `func` returns FALSE. */
  gboolean (*kv_foreach)(DovekieContext *ctx, const gchar *prefix,
                         gboolean (*func)(const gchar *key, const gchar *value, gpointer data),
                         gpointer data, GError **error);

  /* Stores like kv_set, but the host may hold the write and commit it
   * with later ones, at the latest when the user's session ends (the
   * Dovecot host commits every 256 held writes, and at session end, in
   * one attribute transaction each). kv_get sees held writes. A held write
   * is lost if the process dies, so it is for state whose loss only costs
   * a repeat (a cache). FALSE with `error` when the write (or the commit
   * it triggered) failed. */
  gboolean (*kv_defer)(DovekieContext *ctx, const gchar *key, const gchar *value, GError **error);

  /* Emits a named event with fields, for counters and metrics (the
   * Dovecot host sends it as an event with category "dovekie", which
   * Dovecot's stats service can count and export). `name` is
   * [a-z0-9_]+ and should start with "dovekie_"; `fields` is key, value,
   * ..., NULL; a value made only of digits becomes a number field. */
  void (*emit)(DovekieContext *ctx, const gchar *name, const gchar *const *fields);
} DovekieHostApi;

/* The part of a context a module may touch. */
struct _DovekieContext {
  const DovekieHostApi *api;
  gpointer module_data; /* the module's own per-user state; NULL at init */
};

/* A named service: `vtable` points at the interface declared in the
 * service's header (e.g. include/dovekie/index.h for "index"). The host
 * calls it with the providing module's context. */
typedef struct {
  const gchar *name;
  gconstpointer vtable;
} DovekieService;

/* The module vtable. Every hook is optional: if NULL, the module is simply
 * not called for that event. Hooks run in the order modules are listed in
 * dovekie_modules; the first non-ACCEPT verdict stops the chain. */
typedef struct {
  guint32 abi;               /* DOVEKIE_MODULE_ABI; checked before anything else */
  const gchar *name;         /* equals the file's base name, e.g. "example" */
  const gchar *version;      /* free text, shown by status commands */
  const gchar *description;  /* one line */
  /* Settings the module accepts, terminated by an entry with name NULL.
   * If NULL, the module takes no settings. */
  const DovekieSettingDef *settings;
  /* Services this module provides to host-driven jobs (an FTS backend, a
   * doveadm command), terminated by an entry with name NULL. Two loaded
   * modules may not provide the same service. If NULL, none. */
  const DovekieService *services;

  /* Called once per user after the settings are validated. May set
   * ctx->module_data. FALSE with `error` set refuses the module for this
   * user; deinit is then not called. If NULL, nothing to set up. */
  gboolean (*init)(DovekieContext *ctx, GError **error);
  /* Called once per successful init, in reverse load order. Frees
   * ctx->module_data. If NULL, nothing to free. */
  void (*deinit)(DovekieContext *ctx);

  /* A message is about to be stored (after its bytes are written, before
   * the transaction commits). Sets `verdict`. FALSE with `error` means the
   * module itself failed; the host turns that into a tempfail. */
  gboolean (*save)(DovekieContext *ctx, DovekieSaveOrigin origin,
                   const DovekieMessageInfo *info, DovekieMessage *msg,
                   DovekieVerdict *verdict, GError **error);
  /* A client is about to read the message body, or (DOVEKIE_READ_SYNC) the
   * host found it new at a sync. Same contract as save: REJECT and TEMPFAIL
   * make the read fail with the reason (at a sync the message stays where
   * it is), DIVERT at a sync moves the message away (see
   * DOVEKIE_VERDICT_DIVERT), DISCARD is REJECT. */
  gboolean (*read)(DovekieContext *ctx, DovekieReadOrigin origin,
                   const DovekieMessageInfo *info, DovekieMessage *msg,
                   DovekieVerdict *verdict, GError **error);
  /* A message is being expunged (IMAP EXPUNGE, POP3 DELE at QUIT, doveadm).
   * `pop3` is TRUE inside a POP3 session. Returns what the host should do. */
  DovekieExpungeAction (*expunge)(DovekieContext *ctx,
                                  const DovekieMessageInfo *info, gboolean pop3);
  /* A POP3 session has opened its mailbox. */
  void (*pop3_start)(DovekieContext *ctx, const DovekiePop3Info *info);
  /* A POP3 session ends; info->quit_seen tells QUIT from a dropped link. */
  void (*pop3_end)(DovekieContext *ctx, const DovekiePop3Info *info);
} DovekieModule;

/* Convenience wrappers, so module code reads naturally. */
static inline void
dovekie_log (DovekieContext *ctx, DovekieLogLevel level, const gchar *format, ...)
  G_GNUC_PRINTF (3, 4);

static inline void
dovekie_log (DovekieContext *ctx, DovekieLogLevel level, const gchar *format, ...)
{
  va_list args;
  g_autofree gchar *message = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  ctx->api->log (ctx, level, message);
}

/* dovekie_emit (ctx, "dovekie_av_scan_finished", "verdict", "clean", NULL) */
static inline void
dovekie_emit (DovekieContext *ctx, const gchar *name, ...) G_GNUC_NULL_TERMINATED;

static inline void
dovekie_emit (DovekieContext *ctx, const gchar *name, ...)
{
  g_autoptr (GPtrArray) fields = g_ptr_array_new ();
  va_list args;
  const gchar *s;

  va_start (args, name);
  while ((s = va_arg (args, const gchar *)) != NULL)
    g_ptr_array_add (fields, (gpointer) s);
  va_end (args);
  g_ptr_array_add (fields, NULL);
  ctx->api->emit (ctx, name, (const gchar *const *) fields->pdata);
}

static inline void
dovekie_verdict_set (DovekieVerdict *verdict, DovekieVerdictKind kind, const gchar *reason)
{
  g_free (verdict->reason);
  verdict->kind = kind;
  verdict->reason = g_strdup (reason);
}

/* Sets kind DIVERT with the target mailbox and a reason. */
static inline void
dovekie_verdict_divert (DovekieVerdict *verdict, const gchar *mailbox, const gchar *reason)
{
  dovekie_verdict_set (verdict, DOVEKIE_VERDICT_DIVERT, reason);
  g_free (verdict->mailbox);
  verdict->mailbox = g_strdup (mailbox);
}

/* Sets (or with NULL clears) the keyword to add to the stored message. */
static inline void
dovekie_verdict_set_keyword (DovekieVerdict *verdict, const gchar *keyword)
{
  g_free (verdict->keyword);
  verdict->keyword = g_strdup (keyword);
}

/* Frees every string and makes the verdict an empty ACCEPT again. */
static inline void
dovekie_verdict_clear (DovekieVerdict *verdict)
{
  g_clear_pointer (&verdict->reason, g_free);
  g_clear_pointer (&verdict->mailbox, g_free);
  g_clear_pointer (&verdict->keyword, g_free);
  verdict->kind = DOVEKIE_VERDICT_ACCEPT;
}

G_END_DECLS

#endif
