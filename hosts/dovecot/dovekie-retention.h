/* The retention service across the bridge (plain C; see
 * include/dovekie/retention.h for the contract), and the Dovecot-side
 * retention hooks.
 *
 * Bridge functions: strings returned are borrowed until the bridge is
 * destroyed; errors come back in caller-owned buffers. Each is a no-op
 * (false / 0 / -1 as documented) when no loaded module provides the
 * "retention" service.
 */
#ifndef DOVEKIE_RETENTION_BRIDGE_H
#define DOVEKIE_RETENTION_BRIDGE_H

#include "dovekie-bridge.h"

struct module;
struct mailbox;
struct dovekie_user;

/* Values equal DovekieRetentionReason. */
enum dovekie_bridge_retention_reason {
	DOVEKIE_BRIDGE_RETENTION_KEEP = 0,
	DOVEKIE_BRIDGE_RETENTION_EXPIRED = 1,
	DOVEKIE_BRIDGE_RETENTION_MAX_AGE = 2,
	DOVEKIE_BRIDGE_RETENTION_QUOTA = 3,
};

struct dovekie_bridge_retention_message {
	uint32_t uid;
	int64_t saved;
	int64_t size;
	/* carries the hide keyword */
	bool hidden;
};

bool dovekie_bridge_has_retention(struct dovekie_bridge *bridge);
/* The hide keyword, or NULL without the service. */
const char *dovekie_bridge_retention_keyword(struct dovekie_bridge *bridge);
bool dovekie_bridge_retention_expire_at_quit(struct dovekie_bridge *bridge);
bool dovekie_bridge_retention_pop3_hidden(struct dovekie_bridge *bridge, uint32_t uid);
/* NULL, or why this user's login name may not open a POP3 session (its
   client name is not valid). Borrowed until the bridge is destroyed. */
const char *dovekie_bridge_retention_login_error(struct dovekie_bridge *bridge);
/* TRUE if a POP3 DELE changes nothing for this user (dele = ignore). */
bool dovekie_bridge_retention_dele_ignored(struct dovekie_bridge *bridge);
/* hide_r must have room for n_deleted UIDs; *n_hide_r is set. 0 or -1. */
int dovekie_bridge_retention_pop3_quit(struct dovekie_bridge *bridge,
				       const uint32_t *retrieved, unsigned int n_retrieved,
				       const uint32_t *deleted, unsigned int n_deleted,
				       uint32_t *hide_r, unsigned int *n_hide_r,
				       char error_r[DOVEKIE_BRIDGE_REASON_MAX]);
/* reasons_r and unhide_r have room for n; unhide_r gets the UIDs of
   hidden messages whose keyword the host must remove (*n_unhide_r of
   them, each one of messages). 0 or -1. */
int dovekie_bridge_retention_plan(struct dovekie_bridge *bridge,
				  const struct dovekie_bridge_retention_message *messages,
				  unsigned int n, uint64_t quota_used, uint64_t quota_limit,
				  enum dovekie_bridge_retention_reason *reasons_r,
				  uint32_t *unhide_r, unsigned int *n_unhide_r,
				  char error_r[DOVEKIE_BRIDGE_REASON_MAX]);
void dovekie_bridge_retention_done(struct dovekie_bridge *bridge,
				   const uint32_t *uids, unsigned int n);
/* Counts of the retention records, for `doveadm dovekie status`. */
struct dovekie_bridge_retention_summary {
	unsigned int records, downloaded, deleted, corrupt;
};
/* 0, or -1 with error_r. */
int dovekie_bridge_retention_summary(struct dovekie_bridge *bridge,
				     struct dovekie_bridge_retention_summary *summary_r,
				     char error_r[DOVEKIE_BRIDGE_REASON_MAX]);
/* Logs one Info line with the module's prefix ("dovekie-retention: "). */
void dovekie_bridge_retention_log(struct dovekie_bridge *bridge, const char *message);
const char *dovekie_bridge_retention_reason_name(enum dovekie_bridge_retention_reason reason);

/* ---- Dovecot side ---- */

/* dovekie-retention-pop3.c: the POP3 listing filter and QUIT recording.
   No-ops outside pop3. Called from dovekie_plugin_init / _deinit. */
void dovekie_retention_hooks_init(struct module *module);
void dovekie_retention_hooks_deinit(void);
/* In the mail_user_created hook of a pop3 process: refuses the login
   (sets user->error, logs why) when the login's client name is not valid
   for the retention module. Nothing when another error is already set. */
void dovekie_retention_refuse_login(struct dovekie_user *duser);

/* dovekie-retention-expire.c: runs the expiry plan over box (the user's
   INBOX, opened) and expunges what it allows, unless dry_run. Each action
   is logged and, when print is set, passed to it. Returns the number of
   messages expunged (or that would be), or -1 with error_r set. */
struct dovekie_retention_action {
	const char *user;
	const char *mailbox;
	uint32_t uid;
	const char *reason;
	bool dry_run;
};
int dovekie_retention_expire(struct dovekie_user *duser, struct mailbox *box, bool dry_run,
			     void (*print)(void *context, const struct dovekie_retention_action *action),
			     void *context, const char **error_r);

#endif
