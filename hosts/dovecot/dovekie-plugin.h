#ifndef DOVEKIE_PLUGIN_H
#define DOVEKIE_PLUGIN_H

#include "module-context.h"
#include "message-size.h"
#include "mail-user.h"
#include "dovekie-bridge.h"

struct mail;
struct mail_namespace;
struct module;

/* The per-protocol parts (dovekie-part.h, built with DOVEKIE_PART) reach
   the user's context through a function: a part then refers to nothing
   but functions of the core, which a lazy dlopen leaves unresolved, so
   Dovecot gets as far as its dependency check and says "Plugin dovekie
   must be loaded also" when the core is missing, instead of an undefined
   symbol. */
#ifdef DOVEKIE_PART
#  define DOVEKIE_USER_CONTEXT(obj) dovekie_user_get(obj)
#else
#  define DOVEKIE_USER_CONTEXT(obj) \
	MODULE_CONTEXT(obj, dovekie_user_module)
#endif

struct dovekie_user {
	union mail_user_module_context module_ctx;
	struct mail_user *user;
	/* "dovekie: " for the loader; one child event per module. */
	struct event *event;
	HASH_TABLE(const char *, struct event *) module_events;
	struct dovekie_bridge *bridge;
	/* INBOX opened for module state (dovekie-kv.c), or NULL. */
	struct mailbox *kv_box;
	/* A kv batch (dovekie_kv_batch_begin): kv_box stays open and every
	   set goes into this one transaction. */
	struct mailbox_transaction_context *kv_batch;
	/* Writes kv_defer holds back (full attribute key -> value, "" for
	   a delete), committed together by dovekie_kv_flush. */
	HASH_TABLE(char *, char *) kv_held;
	/* kv_box is the session's own INBOX, not ours to free. */
	bool kv_box_borrowed:1;

	/* LMTP: the delivery dovekie-lmtp.c judged, for the length of its
	   local_deliver call, else NULL: the save hooks store it as judged.
	   On the user because that is the delivery's own object: lmtp makes
	   one mail_user per recipient and delivery (Dovecot's mail_deliver
	   keeps its delivery state on it too), and mail_deliver begins the
	   transaction and the save itself, so no narrower object of ours
	   exists before the save hooks run. Read through the mailbox's
	   dovekie_user (dovekie_namespace_user), so a save into another
	   user's shared mailbox is that user's to judge. */
	const struct dovekie_delivery *delivery;

	/* Dovecot 2.4, an autocreated user (a shared namespace's owner, a raw
	   user): its modules start at its first namespace use. The user's
	   own life cycle, not an operation's. */
	bool start_pending:1;
	/* POP3: the session start was reported. The POP3 session is the
	   user's one session in its process (pop3 serves one user), and the
	   flag only goes up. */
	bool pop3_started:1;
	/* The scanner failed at a sync: no sync check before this time
	   (ioloop_time); reads still judge. User-wide on purpose: it is the
	   health of the user's scanner, which every mailbox's sync asks. */
	time_t av_sync_retry_after;
	/* The modules for public namespaces (global settings), or NULL
	   until the session allocates a public mailbox. */
	struct dovekie_user *public_user;
	/* A storage error text a caller may still hold after a COPY's
	   source transaction set another (dovekie_transaction_commit()), or
	   NULL. It outlives that transaction (imap sends the text after the
	   commit), so it is kept here until the next such commit or the end
	   of the session. */
	char *held_error;
};

/* An LMTP delivery dovekie-lmtp.c judged (on its stack for the length of
   the delivery; the strings are borrowed for that call). */
struct dovekie_delivery {
	/* The keyword the stored message gets, or NULL. */
	const char *keyword;
	/* The only mailbox it may be stored into (a DIVERT: Dovecot's
	   fallback to INBOX must not store it there), or NULL. */
	const char *mailbox;
	/* Accepted where it is stored, with no divert and no keyword: the
	   stored copies get the read memo. */
	bool accepted;
};

extern MODULE_CONTEXT_DEFINE(dovekie_user_module, &mail_user_module_register);
extern const char *dovekie_plugin_version;

/* The user's dovekie context, or NULL when dovekie is not active for it. */
struct dovekie_user *dovekie_user_get(struct mail_user *user);

/* Whose modules judge the mail of namespace ns in ns->user's session: the
   session user's for its private namespaces; in a shared namespace its
   owner's (the mail_user Dovecot created for the owner, with the owner's
   settings); in a public namespace modules started from the global
   settings. NULL when dovekie is not active for the session. */
struct dovekie_user *dovekie_namespace_user(struct mail_namespace *ns);

void dovekie_plugin_init(struct module *module);
void dovekie_plugin_deinit(void);

/* Judges a stored mail with the user's save (or read) hooks. On a non-ACCEPT
   verdict the reason is in reason. */
enum dovekie_bridge_verdict
dovekie_check_mail(struct dovekie_user *duser, struct mail *mail, bool save, int origin,
		   const char *mailbox_name, char reason[DOVEKIE_BRIDGE_REASON_MAX]);
/* Judges a delivery with the user's save hooks, with everything the
   verdict says (DIVERT, DISCARD, keyword) in result. */
enum dovekie_bridge_verdict
dovekie_check_delivery(struct dovekie_user *duser, struct mail *mail,
		       const char *mailbox_name, struct dovekie_bridge_result *result);

/* dovekie-kv.c: the bridge's kv callbacks; context is the dovekie_user. */
int dovekie_kv_get(void *context, const char *module, const char *key,
		   const char **value_r, const char **error_r);
int dovekie_kv_set(void *context, const char *module, const char *key,
		   const char *value, const char **error_r);
int dovekie_kv_iter(void *context, const char *module, const char *prefix,
		    dovekie_bridge_kv_func_t *func, void *func_context,
		    const char **error_r);
int dovekie_kv_defer(void *context, const char *module, const char *key,
		     const char *value, const char **error_r);
/* Commits the writes kv_defer held (logged on failure: they were a cache). */
void dovekie_kv_flush(struct dovekie_user *duser);
void dovekie_kv_deinit(struct dovekie_user *duser);
/* Groups the kv sets that follow into one attribute transaction (one
   INBOX open, one commit), until dovekie_kv_batch_end commits it (commit)
   or drops it. Reads in a batch do not see its sets. 0 or -1. */
int dovekie_kv_batch_begin(struct dovekie_user *duser, const char **error_r);
int dovekie_kv_batch_end(struct dovekie_user *duser, bool commit, const char **error_r);

/* message at `level` on event (the host's log callback, shared by the
   mail plugin and doveadm dovekie check). */
void dovekie_event_log(struct event *event, enum dovekie_bridge_level level,
		       const char *message);
/* The clock the modules see: Dovecot's ioloop time (context unused). */
int64_t dovekie_host_now(void *context);

void dovekie_storage_hooks_init(struct module *module);
void dovekie_storage_hooks_deinit(void);

#endif
