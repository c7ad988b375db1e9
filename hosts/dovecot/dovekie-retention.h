/* The retention service across the bridge (plain C; see
 * include/dovekie/retention.h for the contract), and the Dovecot-side
 * retention hooks.
 *
 * Bridge functions: strings returned are borrowed until the bridge is
 * destroyed; errors come back in *error_r, in Dovecot's data stack (the
 * seam's convention, dovekie-bridge.h). Each is a no-op
 * (false / 0 / -1 as documented) when no loaded module provides the
 * "retention" service.
 */
#ifndef DOVEKIE_RETENTION_BRIDGE_H
#define DOVEKIE_RETENTION_BRIDGE_H

#include "dovekie-bridge.h"

struct module;
struct mail_storage_hooks;
struct mailbox;
struct mailbox_transaction_context;
struct mail_index_view;
struct dovekie_user;

/* Values equal DovekieRetentionReason. */
enum dovekie_bridge_retention_reason {
	DOVEKIE_BRIDGE_RETENTION_KEEP = 0,
	DOVEKIE_BRIDGE_RETENTION_EXPIRED = 1,
	DOVEKIE_BRIDGE_RETENTION_MAX_AGE = 2,
	DOVEKIE_BRIDGE_RETENTION_QUOTA = 3,
};

/* Sizes of the stored record and table (the module's layout; the
   bridge checks that they equal DOVEKIE_RETENTION_PACKED_SIZE and
   DOVEKIE_RETENTION_TABLE_SIZE). */
#define DOVEKIE_BRIDGE_RETENTION_PACKED_SIZE 24
#define DOVEKIE_BRIDGE_RETENTION_TABLE_SIZE (8 + 64 * 65 + 64 * 8 + 16)

struct dovekie_bridge_retention_message {
	uint32_t uid;
	int64_t saved;
	int64_t size;
	/* carries the hide keyword */
	bool hidden;
	/* its record as stored; all zero: none */
	unsigned char packed[DOVEKIE_BRIDGE_RETENTION_PACKED_SIZE];
};

/* The records of one mailbox inside one open transaction (see
   DovekieRetentionStore in include/dovekie/retention.h). Each function
   returns 0, or -1 with *error_r set. */
struct dovekie_bridge_retention_store {
	const unsigned char *table;
	int (*get)(struct dovekie_bridge_retention_store *store, uint32_t uid,
		   unsigned char *packed, const char **error_r);
	int (*put)(struct dovekie_bridge_retention_store *store, uint32_t uid,
		   const unsigned char *packed, const char **error_r);
	int (*put_table)(struct dovekie_bridge_retention_store *store,
			 const unsigned char *table, const char **error_r);
};

bool dovekie_bridge_has_retention(struct dovekie_bridge *bridge);
/* The hide keyword, or NULL without the service. */
const char *dovekie_bridge_retention_keyword(struct dovekie_bridge *bridge);
/* table: INBOX's table (TABLE_SIZE bytes) after the QUIT. TRUE if the
   expiry plan may expunge something now. */
bool dovekie_bridge_retention_expire_at_quit(struct dovekie_bridge *bridge,
					     const unsigned char *table);
/* The listing starts: the INBOX's table (TABLE_SIZE bytes). */
void dovekie_bridge_retention_pop3_listing(struct dovekie_bridge *bridge,
					   const unsigned char *table);
bool dovekie_bridge_retention_pop3_hidden(struct dovekie_bridge *bridge, uint32_t uid,
					  const unsigned char *packed);
/* NULL, or why this user's login name may not open a POP3 session (its
   client name is not valid). Borrowed until the bridge is destroyed. */
const char *dovekie_bridge_retention_login_error(struct dovekie_bridge *bridge);
/* TRUE if a POP3 DELE changes nothing for this user (dele = ignore). */
bool dovekie_bridge_retention_dele_ignored(struct dovekie_bridge *bridge);
/* hide_r must have room for n_deleted UIDs; *n_hide_r is set. 0 or -1. */
int dovekie_bridge_retention_pop3_quit(struct dovekie_bridge *bridge,
				       struct dovekie_bridge_retention_store *store,
				       const uint32_t *retrieved, unsigned int n_retrieved,
				       const uint32_t *deleted, unsigned int n_deleted,
				       uint32_t *hide_r, unsigned int *n_hide_r,
				       const char **error_r);
/* Counts of the retention records, for `doveadm dovekie status`. */
struct dovekie_bridge_retention_summary {
	unsigned int records, downloaded, deleted, corrupt;
};
/* reasons_r and unhide_r have room for n; unhide_r gets the UIDs of
   hidden messages whose keyword the host must remove (*n_unhide_r of
   them, each one of messages). summary_r may be NULL. 0 or -1. */
int dovekie_bridge_retention_plan(struct dovekie_bridge *bridge,
				  struct dovekie_bridge_retention_store *store,
				  const struct dovekie_bridge_retention_message *messages,
				  unsigned int n, uint64_t quota_used, uint64_t quota_limit,
				  enum dovekie_bridge_retention_reason *reasons_r,
				  uint32_t *unhide_r, unsigned int *n_unhide_r,
				  struct dovekie_bridge_retention_summary *summary_r,
				  const char **error_r);
/* Moves the records of older versions (kv entries) into store; *n_r of
   them. 0 or -1 (nothing moved). */
int dovekie_bridge_retention_migrate(struct dovekie_bridge *bridge,
				     struct dovekie_bridge_retention_store *store,
				     unsigned int *n_r, const char **error_r);
/* TRUE if a table (TABLE_SIZE bytes) carries the migrated mark. */
bool dovekie_bridge_retention_table_migrated(const unsigned char *table);
void dovekie_bridge_retention_done(struct dovekie_bridge *bridge,
				   const uint32_t *uids, unsigned int n);
/* Logs one Info line with the module's prefix ("dovekie-retention: "). */
void dovekie_bridge_retention_log(struct dovekie_bridge *bridge, const char *message);
const char *dovekie_bridge_retention_reason_name(enum dovekie_bridge_retention_reason reason);

/* ---- Dovecot side ---- */

/* dovekie-retention-pop3.c, in the dovekie_pop3 plugin: the POP3 listing
   filter and QUIT recording. Called from its plugin init / deinit; init
   returns the mail storage hooks it added (the part's, dovekie-part.h). */
const struct mail_storage_hooks *dovekie_retention_hooks_init(struct module *module);
void dovekie_retention_hooks_deinit(void);

/* dovekie-retention-index.c: the records in INBOX's index (the
   "dovekie-retention" extension: a header with the client table, one
   record per message).
   A store over transaction t (on an opened box): */
struct dovekie_retention_index {
	struct dovekie_bridge_retention_store store;
	/* puts go here */
	struct mailbox_transaction_context *t;
	/* gets read here: the index as it was at init */
	struct mail_index_view *fresh;
	uint32_t ext_id;
	/* the table's size in the index: smaller when an older version
	   wrote it; the first put_table grows it */
	size_t stored_size;
	unsigned char table[DOVEKIE_BRIDGE_RETENTION_TABLE_SIZE];
};
void dovekie_retention_index_init(struct dovekie_retention_index *idx,
				  struct mailbox_transaction_context *t);
/* Before t is committed or rolled back. */
void dovekie_retention_index_deinit(struct dovekie_retention_index *idx);
/* The extension's id in box's index (registered on first use). */
uint32_t dovekie_retention_ext_id(struct mailbox *box);
/* The table in view (zero when there is none; bytes an older, shorter
   table lacks are zero). Returns its size in the index, 0 when none. */
size_t dovekie_retention_index_table(struct mail_index_view *view, uint32_t ext_id,
				     unsigned char table[DOVEKIE_BRIDGE_RETENTION_TABLE_SIZE]);
/* The record of seq in view (zero when none) */
void dovekie_retention_index_record(struct mail_index_view *view, uint32_t seq,
				    uint32_t ext_id, unsigned char *packed);
/* 0 when box (opened) can keep records, else -1 with error_r: in-memory
   indexes would lose them at the end of the process. */
int dovekie_retention_index_check(struct mailbox *box, const char **error_r);
/* Moves the records of an older version from the kv store into box's
   index once (until the table carries the migrated mark). 0, or -1 with
   error_r (nothing moved; tried again next time). */
int dovekie_retention_migrate(struct dovekie_user *duser, struct mailbox *box,
			      const char **error_r);

/* dovekie-retention-expire.c: runs the expiry plan over box (the user's
   INBOX, opened) and expunges what it allows, unless dry_run. Each action
   is logged and, when print is set, passed to it. summary_r (may be
   NULL) gets the counts of the records. Returns the number of messages
   expunged (or that would be), or -1 with error_r set. */
struct dovekie_retention_action {
	const char *user;
	const char *mailbox;
	uint32_t uid;
	const char *reason;
	bool dry_run;
};
int dovekie_retention_expire(struct dovekie_user *duser, struct mailbox *box, bool dry_run,
			     void (*print)(void *context, const struct dovekie_retention_action *action),
			     void *context, struct dovekie_bridge_retention_summary *summary_r,
			     const char **error_r);

#endif
