#ifndef DOVEKIE_PLUGIN_H
#define DOVEKIE_PLUGIN_H

#include "module-context.h"
#include "mail-user.h"
#include "dovekie-bridge.h"

struct mail;
struct module;

#define DOVEKIE_USER_CONTEXT(obj) \
	MODULE_CONTEXT(obj, dovekie_user_module)

struct dovekie_user {
	union mail_user_module_context module_ctx;
	struct mail_user *user;
	/* "dovekie: " for the loader; one child event per module. */
	struct event *event;
	HASH_TABLE(const char *, struct event *) module_events;
	struct dovekie_bridge *bridge;
	/* INBOX opened for module state (dovekie-kv.c), or NULL. */
	struct mailbox *kv_box;

	/* LMTP: the message was already judged by the delivery hook, so the
	   save hooks must not judge it again. */
	bool delivery_checked:1;
	/* We are reading a message for a hook: our own read hook stays out. */
	bool in_hook:1;
	/* POP3: the session start was reported. */
	bool pop3_started:1;
};

extern MODULE_CONTEXT_DEFINE(dovekie_user_module, &mail_user_module_register);
extern const char *dovekie_plugin_version;

void dovekie_plugin_init(struct module *module);
void dovekie_plugin_deinit(void);

/* Judges a stored mail with the user's save (or read) hooks. On a non-ACCEPT
   verdict the reason is in reason. */
enum dovekie_bridge_verdict
dovekie_check_mail(struct dovekie_user *duser, struct mail *mail, bool save, int origin,
		   const char *mailbox_name, char reason[DOVEKIE_BRIDGE_REASON_MAX]);

/* dovekie-kv.c: the bridge's kv callbacks; context is the dovekie_user. */
int dovekie_kv_get(void *context, const char *module, const char *key,
		   const char **value_r, const char **error_r);
int dovekie_kv_set(void *context, const char *module, const char *key,
		   const char *value, const char **error_r);
int dovekie_kv_iter(void *context, const char *module, const char *prefix,
		    dovekie_bridge_kv_func_t *func, void *func_context,
		    const char **error_r);
void dovekie_kv_deinit(struct dovekie_user *duser);

void dovekie_storage_hooks_init(struct module *module);
void dovekie_storage_hooks_deinit(void);
/* Both are no-ops outside the pop3 / lmtp processes. */
void dovekie_pop3_hooks_init(void);
void dovekie_pop3_hooks_deinit(void);
void dovekie_lmtp_hooks_init(void);
void dovekie_lmtp_hooks_deinit(void);

#endif
