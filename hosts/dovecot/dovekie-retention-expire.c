/* The retention expiry run over one INBOX, shared by the end of a POP3
 * session and `doveadm dovekie retention run`.
 *
 * It lists every message (UID, save date, physical size, whether it has
 * the hide keyword, its record in the index), asks the module for its plan, and in one transaction
 * expunges exactly the planned messages and removes the keyword from those
 * the module unhides (hidden with no DELE on record). While the plan is open, the module's expunge hook lets
 * those (and only those) through, even in a POP3 session. */
#include "lib.h"
#include "array.h"
#include "mail-storage-private.h"
#include "mail-namespace.h"
#include "mail-search-build.h"
#include "quota.h"
#include "dovekie-plugin.h"
#include "dovekie-retention.h"
#include "dovekie-log-quote.h"

ARRAY_DEFINE_TYPE(dovekie_retention_message, struct dovekie_bridge_retention_message);

/* Dovecot's quota plugin, when mail_plugins loads it (before us: lib10 <
   lib90): its functions are found at our dlopen. Weak because it is
   genuinely optional (unlike the fts plugin for the dovekie_fts part, it
   is no dependency: only dovekie_retention_quota_percent reads it), so
   the plugin loads without it, and the quota rule then has nothing to go
   by. */
#pragma weak quota_root_iter_init
#pragma weak quota_root_iter_next
#pragma weak quota_root_iter_deinit
#pragma weak quota_get_resource

/* A progress line every this many messages on large runs. */
#define RETENTION_PROGRESS_EVERY 10000

static bool retention_has_keyword(struct mail *mail, const char *keyword)
{
	const char *const *kw;

	for (kw = mail_get_keywords(mail); *kw != NULL; kw++) {
		if (strcasecmp(*kw, keyword) == 0)
			return TRUE;
	}
	return FALSE;
}

static int
retention_list(struct mailbox *box, struct mailbox_transaction_context *t,
	       const char *keyword, uint32_t ext_id,
	       ARRAY_TYPE(dovekie_retention_message) *messages,
	       const char **error_r)
{
	struct mail_search_args *args;
	struct mail_search_context *ctx;
	struct mail *mail;
	time_t saved;
	uoff_t size;

	args = mail_search_build_init();
	mail_search_build_add_all(args);
	ctx = mailbox_search_init(t, args, NULL,
				  MAIL_FETCH_SAVE_DATE | MAIL_FETCH_PHYSICAL_SIZE |
				  MAIL_FETCH_FLAGS, NULL);
	mail_search_args_unref(&args);
	while (mailbox_search_next(ctx, &mail)) {
		struct dovekie_bridge_retention_message *msg =
			array_append_space(messages);

		msg->uid = mail->uid;
		msg->saved = mail_get_save_date(mail, &saved) < 0 ? -1 : (int64_t)saved;
		msg->size = mail_get_physical_size(mail, &size) < 0 ? -1 : (int64_t)size;
		msg->hidden = keyword != NULL && retention_has_keyword(mail, keyword);
		dovekie_retention_index_record(t->view, mail->seq, ext_id, msg->packed);
	}
	if (mailbox_search_deinit(&ctx) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	return 0;
}

/* The storage quota of box that is fullest (used / limit), in bytes: 0 0
   without the quota plugin, a quota root or a storage limit. */
static void
retention_quota(struct dovekie_user *duser, struct mailbox *box, uint64_t *used_r,
		uint64_t *limit_r)
{
	struct quota_root_iter *iter;
	struct quota_root *root;
	uint64_t used, limit;
	const char *error;

	*used_r = *limit_r = 0;
	if (quota_root_iter_init == NULL || quota_get_resource == NULL)
		return;
	iter = quota_root_iter_init(box);
	while ((root = quota_root_iter_next(iter)) != NULL) {
		/* 2.4 takes the mailbox, 2.3 its name. */
#if DOVECOT_PREREQ(2, 4, 0)
		switch (quota_get_resource(root, box,
#else
		switch (quota_get_resource(root, mailbox_get_vname(box),
#endif
					   QUOTA_NAME_STORAGE_BYTES, &used, &limit, &error)) {
		case QUOTA_GET_RESULT_LIMITED:
			/* used/limit > *used_r / *limit_r, without division */
			if (limit > 0 && (*limit_r == 0 ||
			    (double)used * (double)*limit_r > (double)*used_r * (double)limit)) {
				*used_r = used;
				*limit_r = limit;
			}
			break;
		case QUOTA_GET_RESULT_INTERNAL_ERROR:
			e_warning(duser->event, "quota of %s unknown: %s",
				  dovekie_log_quote(mailbox_get_vname(box)), error);
			break;
		default:
			break;
		}
	}
	quota_root_iter_deinit(&iter);
}

/* Removes the hide keyword from uids, in t (committed with the expunges). */
static int
retention_unhide(struct dovekie_user *duser, struct mailbox_transaction_context *t,
		 struct mail *mail, const char *keyword, const uint32_t *uids,
		 unsigned int count, const char **error_r)
{
	struct mailbox *box = mailbox_transaction_get_mailbox(t);
	const char *keywords[] = { keyword, NULL };
	struct mail_keywords *kw;
	unsigned int i;

	if (mailbox_keywords_create(box, keywords, &kw) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	for (i = 0; i < count; i++) {
		if (!mail_set_uid(mail, uids[i]))
			continue;
		mail_update_keywords(mail, MODIFY_REMOVE, kw);
		dovekie_bridge_retention_log(duser->bridge, t_strdup_printf(
			"unhide user=%s mailbox=%s uid=%u reason=no-record",
			mailbox_get_namespace(box)->user->username,
			dovekie_log_quote(mailbox_get_vname(box)), uids[i]));
	}
	mailbox_keywords_unref(&kw);
	return 0;
}

int dovekie_retention_expire(struct dovekie_user *duser, struct mailbox *box, bool dry_run,
			     void (*print)(void *context, const struct dovekie_retention_action *action),
			     void *context, struct dovekie_bridge_retention_summary *summary_r,
			     const char **error_r)
{
	ARRAY_TYPE(dovekie_retention_message) messages;
	ARRAY_TYPE(uint32_t) gone;
	struct dovekie_bridge *bridge = duser->bridge;
	struct mailbox_transaction_context *t;
	struct dovekie_retention_index idx;
	enum dovekie_bridge_retention_reason *reasons;
	const struct dovekie_bridge_retention_message *msgs;
	const char *keyword = dovekie_bridge_retention_keyword(bridge);
	uint32_t *unhide;
	unsigned int n_unhide;
	struct dovekie_retention_action action;
	struct mail *mail;
	unsigned int i, count, planned = 0;
	uint64_t quota_used, quota_limit;
	int ret = 0;

	if (!dovekie_bridge_has_retention(bridge)) {
		*error_r = "the retention module is not loaded for this user";
		return -1;
	}
	if (dovekie_retention_index_check(box, error_r) < 0)
		return -1;
	if (dovekie_retention_migrate(duser, box, error_r) < 0) {
		*error_r = t_strdup_printf("moving the records of an older version "
					   "into the index failed: %s", *error_r);
		return -1;
	}
	if (mailbox_sync(box, 0) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	i_array_init(&messages, 256);
	i_array_init(&gone, 16);
	t = mailbox_transaction_begin(box, 0, "dovekie retention expire");
	dovekie_retention_index_init(&idx, t);
	if (retention_list(box, t, keyword, idx.ext_id, &messages, error_r) < 0) {
		dovekie_retention_index_deinit(&idx);
		mailbox_transaction_rollback(&t);
		array_free(&messages);
		array_free(&gone);
		return -1;
	}
	msgs = array_get(&messages, &count);
	reasons = i_new(enum dovekie_bridge_retention_reason, count + 1);
	unhide = i_new(uint32_t, count + 1);
	retention_quota(duser, box, &quota_used, &quota_limit);
	ret = dovekie_bridge_retention_plan(bridge, &idx.store, msgs, count, quota_used,
					    quota_limit, reasons, unhide, &n_unhide,
					    summary_r, error_r);
	dovekie_retention_index_deinit(&idx);
	if (ret < 0) {
		mailbox_transaction_rollback(&t);
		i_free(reasons);
		i_free(unhide);
		array_free(&messages);
		array_free(&gone);
		return -1;
	}

	i_zero(&action);
	action.user = mailbox_get_namespace(box)->user->username;
	action.mailbox = mailbox_get_vname(box);
	action.dry_run = dry_run;
	mail = mail_alloc(t, 0, NULL);
	for (i = 0; i < count; i++) {
		if (i > 0 && i % RETENTION_PROGRESS_EVERY == 0) {
			dovekie_bridge_retention_log(bridge, t_strdup_printf(
				"progress user=%s mailbox=%s checked=%u/%u planned=%u",
				action.user, dovekie_log_quote(action.mailbox), i, count,
				planned));
		}
		if (reasons[i] == DOVEKIE_BRIDGE_RETENTION_KEEP ||
		    !mail_set_uid(mail, msgs[i].uid))
			continue;
		planned++;
		action.uid = msgs[i].uid;
		action.reason = dovekie_bridge_retention_reason_name(reasons[i]);
		dovekie_bridge_retention_log(bridge, t_strdup_printf(
			"%s user=%s mailbox=%s uid=%u reason=%s",
			dry_run ? "would expunge" : "expunge", action.user,
			dovekie_log_quote(action.mailbox), action.uid, action.reason));
		if (print != NULL)
			print(context, &action);
		if (!dry_run) {
			mail_expunge(mail);
			array_push_back(&gone, &msgs[i].uid);
		}
	}
	if (n_unhide > 0 && !dry_run &&
	    retention_unhide(duser, t, mail, keyword, unhide, n_unhide, error_r) < 0)
		ret = -1;
	mail_free(&mail);
	if (dry_run || ret < 0) {
		mailbox_transaction_rollback(&t);
		array_clear(&gone);
	} else if (mailbox_transaction_commit(&t) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		array_clear(&gone);
		ret = -1;
	} else if (mailbox_sync(box, 0) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		ret = -1;
	}
	/* Ends the plan; drops the records of what is gone. */
	dovekie_bridge_retention_done(bridge,
		array_count(&gone) > 0 ? array_front(&gone) : NULL, array_count(&gone));
	i_free(reasons);
	i_free(unhide);
	array_free(&messages);
	array_free(&gone);
	return ret < 0 ? -1 : (int)planned;
}
