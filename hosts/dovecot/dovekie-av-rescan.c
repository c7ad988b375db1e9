/* doveadm dovekie rescan [-u user | -A] [--restart] [--max-messages N] [mailbox ...]
 *
 * Rescans stored mail with the in-process libclamav engine: every message
 * of the named mailboxes (default: all but the quarantine mailbox) that was
 * not judged with the engine's current signature-DB version. The verdict
 * cache answers for a message already judged with that version (a digest
 * read, no scan); a new detection is moved into the quarantine mailbox,
 * the action a delivery would have got, so nothing is lost.
 *
 * Resumable: after each batch the highest UID done is stored per mailbox
 * (GUID and UIDVALIDITY) and DB version, and the next run starts after it.
 * A new DB version starts every mailbox again. --max-messages stops a run
 * after that many messages (the next run goes on); --restart ignores the
 * marks. Progress goes to the log every batch; the table printed at the
 * end has one row per mailbox.
 */
#include "lib.h"
#include "strnum.h"
#include "array.h"
#include "guid.h"
#include "mail-namespace.h"
#include "mail-search-build.h"
#include "mail-storage.h"
#include "mailbox-list-iter.h"
#include "seq-range-array.h"
#include "dovekie-plugin.h"
#include "dovekie-doveadm.h"
#include "dovekie-quarantine.h"
#include "dovekie-log-quote.h"
#include "dovekie-storage.h"
#include "dovekie-antivirus.h"
#include "dovekie-av-sync.h"
#include "file-lock.h"

/* Messages per transaction and per stored mark. */
#define RESCAN_BATCH 100

struct rescan_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	const char *const *mailboxes;
	bool restart;
	/* 0: no limit. */
	uint64_t max_messages;
};

/* One user's run. */
struct rescan_run {
	struct rescan_cmd_context *cmd;
	struct dovekie_user *duser;
	struct mail_user *user;
	/* In the user's pool. */
	const char *version;
	const char *quarantine;
	/* Messages looked at by this run, over every mailbox. */
	uint64_t checked;
	/* rescan_all: a listed mailbox failed. */
	bool failed;
};

/* One mailbox's figures, printed as a row. */
struct rescan_counts {
	uint32_t resumed_after;
	unsigned int total, checked, scanned, cached, infected, moved, too_big;
	bool stopped;
};

struct rescan_message_ctx {
	struct rescan_run *run;
	/* The batch's: the result's strings outlive the read's data stack
	   frame. */
	pool_t pool;
	struct dovekie_bridge_av_rescan result;
};

static int
rescan_read(void *context, const struct dovekie_bridge_message *msg,
	    const struct dovekie_bridge_source *source, const char **error_r)
{
	struct rescan_message_ctx *mctx = context;

	if (dovekie_bridge_av_rescan_message(mctx->run->duser->bridge, msg, source,
					     &mctx->result, error_r) < 0)
		return -1;
	mctx->result.signature = p_strdup(mctx->pool, mctx->result.signature);
	mctx->result.keyword = p_strdup(mctx->pool, mctx->result.keyword);
	return 0;
}

static void rescan_log(struct rescan_run *run, const char *line)
{
	e_info(run->duser->event, "rescan %s", line);
}

/* The UIDs after `after`, ascending. */
static int
rescan_list(struct mailbox *box, uint32_t after, ARRAY_TYPE(uint32_t) *uids,
	    const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mail_search_args *args;
	struct mail_search_arg *arg;
	struct mail_search_context *search;
	struct mail *mail;
	int ret = 0;

	args = mail_search_build_init();
	arg = mail_search_build_add(args, SEARCH_UIDSET);
	p_array_init(&arg->value.seqset, args->pool, 1);
	seq_range_array_add_range(&arg->value.seqset, after + 1, (uint32_t)-1);
	t = mailbox_transaction_begin(box, 0, "dovekie rescan list");
	search = mailbox_search_init(t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	while (mailbox_search_next(search, &mail))
		array_push_back(uids, &mail->uid);
	if (mailbox_search_deinit(&search) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		ret = -1;
	}
	mailbox_transaction_rollback(&t);
	return ret;
}

/* Scans one batch of UIDs in one transaction (and one of the quarantine
   mailbox for what moves). Sets *done_r to the last UID finished: the
   batch's last unless something failed. */
static int
rescan_batch_locked(struct rescan_run *run, struct mailbox *box, struct mailbox **qbox,
		    const uint32_t *uids, unsigned int count, struct rescan_counts *counts,
		    uint32_t *done_r, const char **error_r)
{
	struct mail_transaction_commit_changes changes;
	struct mailbox_transaction_context *t, *qt = NULL;
	struct mail *mail;
	struct rescan_message_ctx mctx;
	const char *vname = mailbox_get_vname(box);
	const char *kv_error;
	pool_t pool;
	bool is_quarantine = strcmp(vname, run->quarantine) == 0;
	unsigned int i, moved_before = counts->moved;
	int ret = 0;

	*done_r = 0;
	/* The verdicts the batch stores go into one attribute transaction,
	   committed with the batch (one write instead of one per message). */
	if (dovekie_kv_batch_begin(run->duser, error_r) < 0) {
		*error_r = p_strdup(run->user->pool, *error_r);
		return -1;
	}
	/* Its reads are the job's, its expunges quarantine moves. */
	t = dovekie_transaction_begin(box, 0, "dovekie rescan",
				      DOVEKIE_OWN_READS | DOVEKIE_OWN_MOVES);
	mail = mail_alloc(t, 0, NULL);
	pool = pool_alloconly_create("dovekie rescan batch", 1024);
	for (i = 0; i < count && ret == 0; i++) {
		if (!mail_set_uid(mail, uids[i]))
			continue; /* expunged meanwhile */
		i_zero(&mctx);
		mctx.run = run;
		mctx.pool = pool;
		T_BEGIN {
			ret = dovekie_read_mail(mail, rescan_read, &mctx, error_r);
			if (ret < 0)
				*error_r = p_strdup(run->user->pool, *error_r);
		} T_END;
		if (ret < 0)
			break;
		counts->checked++;
		run->checked++;
		if (mctx.result.status == DOVEKIE_BRIDGE_AV_TOO_BIG) {
			counts->too_big++;
			continue;
		}
		if (mctx.result.cached)
			counts->cached++;
		else
			counts->scanned++;
		if (mctx.result.status != DOVEKIE_BRIDGE_AV_INFECTED)
			continue;
		counts->infected++;
		if (is_quarantine) {
			rescan_log(run, t_strdup_printf(
				"user=%s mailbox=%s uid=%u signature=%s action=none (already in quarantine)",
				run->user->username, dovekie_log_quote(vname), mail->uid,
				mctx.result.signature));
			continue;
		}
		if (*qbox == NULL) {
			*qbox = dovekie_quarantine_open(run->user, run->duser->event,
							run->quarantine, error_r);
			if (*qbox == NULL) {
				*error_r = p_strdup(run->user->pool, *error_r);
				ret = -1;
				break;
			}
		}
		if (qt == NULL)
			qt = dovekie_transaction_begin(*qbox, MAILBOX_TRANSACTION_FLAG_EXTERNAL,
						       "dovekie rescan quarantine", DOVEKIE_OWN_SAVES);
		if (dovekie_quarantine_move(mail, qt, mctx.result.keyword, error_r) < 0) {
			*error_r = p_strdup(run->user->pool, *error_r);
			ret = -1;
			break;
		}
		counts->moved++;
		rescan_log(run, t_strdup_printf(
			"user=%s mailbox=%s uid=%u signature=%s action=quarantine mailbox=%s",
			run->user->username, dovekie_log_quote(vname), mail->uid,
			mctx.result.signature, dovekie_log_quote(run->quarantine)));
	}
	mail_free(&mail);
	pool_unref(&pool);
	/* The verdicts are stored whatever happens to the moves: they are a
	   cache, and one that is lost is only scanned again. */
	if (dovekie_kv_batch_end(run->duser, TRUE, &kv_error) < 0) {
		i_warning("dovekie: rescan: cannot store the verdicts of %s: %s", vname,
			  kv_error);
	}
	/* The copies first: a crash between the commits leaves a duplicate in
	   quarantine, never a lost message. */
	if (qt != NULL && ret == 0) {
		if (mailbox_transaction_commit_get_changes(&qt, &changes) < 0) {
			*error_r = p_strdup_printf(run->user->pool, "cannot commit to %s: %s",
				run->quarantine, mailbox_get_last_internal_error(*qbox, NULL));
			ret = -1;
		} else {
			/* For a release: back where it came from. */
			dovekie_quarantine_record_origin(run->duser, &changes, vname);
			pool_unref(&changes.pool);
		}
	}
	if (qt != NULL)
		mailbox_transaction_rollback(&qt);
	if (ret < 0) {
		mailbox_transaction_rollback(&t);
		return -1;
	}
	/* The sync is what makes maildir unlink the moved files. */
	if (mailbox_transaction_commit(&t) < 0 ||
	    (counts->moved > moved_before && mailbox_sync(box, 0) < 0)) {
		*error_r = p_strdup_printf(run->user->pool, "cannot commit to %s: %s",
			vname, mailbox_get_last_internal_error(box, NULL));
		return -1;
	}
	*done_r = count > 0 ? uids[count - 1] : 0;
	return 0;
}

/* rescan_batch_locked() under the lock the sessions' sync check moves
   mail under (dovekie-av-sync.c), after a sync that shows what another
   mover took meanwhile: a message is moved into quarantine once. */
static int
rescan_batch(struct rescan_run *run, struct mailbox *box, struct mailbox **qbox,
	     const uint32_t *uids, unsigned int count, struct rescan_counts *counts,
	     uint32_t *done_r, const char **error_r)
{
	struct file_lock *lock;
	const char *error;
	int ret;

	*done_r = 0;
	ret = dovekie_av_sync_lock(box, &lock, &error);
	if (ret <= 0) {
		*error_r = p_strdup_printf(run->user->pool, "cannot lock %s: %s",
					   dovekie_log_quote(mailbox_get_vname(box)), error);
		return -1;
	}
	if (mailbox_sync(box, 0) < 0) {
		*error_r = p_strdup_printf(run->user->pool, "cannot sync %s: %s",
			dovekie_log_quote(mailbox_get_vname(box)),
			mailbox_get_last_internal_error(box, NULL));
		ret = -1;
	} else {
		ret = rescan_batch_locked(run, box, qbox, uids, count, counts, done_r, error_r);
	}
	file_lock_free(&lock);
	return ret;
}

static void rescan_print(const char *vname, const struct rescan_counts *counts)
{
	doveadm_print(vname);
	doveadm_print_num(counts->resumed_after);
	doveadm_print_num(counts->checked);
	doveadm_print_num(counts->scanned);
	doveadm_print_num(counts->cached);
	doveadm_print_num(counts->too_big);
	doveadm_print_num(counts->infected);
	doveadm_print_num(counts->moved);
	doveadm_print(counts->stopped ? "partial" : "done");
}

static int rescan_mailbox(struct rescan_run *run, struct mailbox *box)
{
	struct dovekie_bridge *bridge = run->duser->bridge;
	struct mailbox *qbox = NULL;
	struct mailbox_metadata metadata;
	struct mailbox_status status;
	struct rescan_counts counts;
	ARRAY_TYPE(uint32_t) uids;
	const char *vname = mailbox_get_vname(box);
	const char *key, *error = NULL;
	const uint32_t *all;
	unsigned int count, pos, n;
	uint32_t done;
	int ret = 0;

	i_zero(&counts);
	if (mailbox_open(box) < 0 || mailbox_sync(box, 0) < 0 ||
	    mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &metadata) < 0) {
		i_error("dovekie: rescan: cannot open %s of %s: %s", dovekie_log_quote(vname),
			run->user->username, mailbox_get_last_internal_error(box, NULL));
		return -1;
	}
	mailbox_get_open_status(box, STATUS_UIDVALIDITY | STATUS_MESSAGES, &status);
	key = t_strdup_printf("%s.%u", guid_128_to_string(metadata.guid), status.uidvalidity);
	if (!run->cmd->restart &&
	    dovekie_bridge_av_rescan_get_mark(bridge, key, run->version,
					      &counts.resumed_after, &error) < 0) {
		i_error("dovekie: rescan: cannot read the mark of %s of %s: %s",
			dovekie_log_quote(vname),
			run->user->username, error);
		return -1;
	}
	counts.total = status.messages;
	i_array_init(&uids, 256);
	if (rescan_list(box, counts.resumed_after, &uids, &error) < 0) {
		i_error("dovekie: rescan: cannot list %s of %s: %s", dovekie_log_quote(vname),
			run->user->username, error);
		array_free(&uids);
		return -1;
	}
	all = array_get(&uids, &count);
	rescan_log(run, t_strdup_printf(
		"start user=%s mailbox=%s version=%s messages=%u after_uid=%u to_check=%u",
		run->user->username, dovekie_log_quote(vname), run->version, status.messages,
		counts.resumed_after, count));
	for (pos = 0; pos < count; pos += n) {
		n = I_MIN(RESCAN_BATCH, count - pos);
		if (run->cmd->max_messages > 0) {
			if (run->checked >= run->cmd->max_messages) {
				counts.stopped = TRUE;
				break;
			}
			n = I_MIN(n, run->cmd->max_messages - run->checked);
		}
		if (rescan_batch(run, box, &qbox, all + pos, n, &counts, &done, &error) < 0) {
			i_error("dovekie: rescan of %s of %s stopped: %s", dovekie_log_quote(vname),
				run->user->username, error);
			counts.stopped = TRUE;
			ret = -1;
			break;
		}
		if (dovekie_bridge_av_rescan_set_mark(bridge, key, run->version, done,
						      &error) < 0) {
			/* The work is done; the next run only repeats it. */
			i_warning("dovekie: rescan: cannot store the mark of %s of %s: %s",
				  dovekie_log_quote(vname), run->user->username, error);
		}
		rescan_log(run, t_strdup_printf(
			"progress user=%s mailbox=%s checked=%u/%u infected=%u",
			run->user->username, dovekie_log_quote(vname), pos + n, count,
			counts.infected));
	}
	if (qbox != NULL)
		mailbox_free(&qbox);
	array_free(&uids);
	rescan_log(run, t_strdup_printf(
		"%s user=%s mailbox=%s checked=%u scanned=%u cached=%u too_big=%u infected=%u moved=%u",
		counts.stopped ? "stopped" : "done", run->user->username,
		dovekie_log_quote(vname),
		counts.checked, counts.scanned, counts.cached, counts.too_big,
		counts.infected, counts.moved));
	rescan_print(vname, &counts);
	return ret;
}

static int rescan_named(struct rescan_run *run, const char *vname)
{
	struct mail_namespace *ns = mail_namespace_find(run->user->namespaces, vname);
	struct mailbox *box;
	int ret;

	/* Another user's mail never moves into this user's quarantine: a
	   shared mailbox is rescanned as its owner (-u owner), a public one
	   as a user whose private namespace holds the public folders. */
	if (ns->type == MAIL_NAMESPACE_TYPE_SHARED) {
		i_error("dovekie: rescan: %s of %s is in a shared namespace: rescan it as its owner",
			dovekie_log_quote(vname), run->user->username);
		return -1;
	}
	if (ns->type == MAIL_NAMESPACE_TYPE_PUBLIC) {
		i_error("dovekie: rescan: %s of %s is in a public namespace, which has no owner: "
			"rescan it as a user whose private namespace holds the public folders",
			dovekie_log_quote(vname), run->user->username);
		return -1;
	}
	box = mailbox_alloc(ns->list, vname, MAILBOX_FLAG_IGNORE_ACLS);

	ret = rescan_mailbox(run, box);
	mailbox_free(&box);
	return ret;
}

/* dovekie_mailbox_func_t: one mailbox of rescan_all. */
static bool rescan_listed(void *context, const struct mailbox_info *info)
{
	struct rescan_run *run = context;

	if (strcmp(info->vname, run->quarantine) != 0 &&
	    rescan_named(run, info->vname) < 0)
		run->failed = TRUE;
	return run->cmd->max_messages == 0 || run->checked < run->cmd->max_messages;
}

static int rescan_all(struct rescan_run *run)
{
	int ret = 0;

	run->failed = FALSE;
	if (dovekie_foreach_mailbox(run->user, rescan_listed, run) < 0) {
		i_error("dovekie: rescan: cannot list the mailboxes of %s",
			run->user->username);
		ret = -1;
	}
	return run->failed ? -1 : ret;
}

static int
cmd_rescan_run(struct doveadm_mail_cmd_context *_ctx, struct mail_user *user)
{
	struct rescan_cmd_context *ctx = (struct rescan_cmd_context *)_ctx;
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(user);
	struct rescan_run run;
	const char *quarantine, *version, *error = "";
	unsigned int i;
	int ret = 0;

	if (!dovekie_doveadm_module_runs(_ctx, user, duser, "antivirus",
					 duser != NULL && dovekie_bridge_has_antivirus(duser->bridge)))
		return -1;
	i_zero(&run);
	run.cmd = ctx;
	run.duser = duser;
	run.user = user;
	if (dovekie_bridge_av_quarantine_mailbox(duser->bridge, &quarantine) < 0 ||
	    dovekie_bridge_av_rescan_begin(duser->bridge, &version, &error) < 0) {
		i_error("dovekie: rescan for %s cannot start: %s", user->username, error);
		doveadm_mail_failed_error(_ctx, MAIL_ERROR_TEMP);
		return -1;
	}
	run.quarantine = p_strdup(user->pool, quarantine);
	run.version = p_strdup(user->pool, version);
	if (ctx->mailboxes != NULL && ctx->mailboxes[0] != NULL) {
		for (i = 0; ctx->mailboxes[i] != NULL; i++) {
			T_BEGIN {
				if (rescan_named(&run, ctx->mailboxes[i]) < 0)
					ret = -1;
			} T_END;
		}
	} else {
		ret = rescan_all(&run);
	}
	if (ret < 0)
		doveadm_mail_failed_error(_ctx, MAIL_ERROR_TEMP);
	return ret;
}

DOVEKIE_DOVEADM_INIT(cmd_rescan_init)
{
	struct rescan_cmd_context *ctx = (struct rescan_cmd_context *)_ctx;
	bool restart;
	int64_t max;

	ctx->restart = doveadm_cmd_param_bool(_ctx->cctx, "restart", &restart) && restart;
	if (doveadm_cmd_param_int64(_ctx->cctx, "max-messages", &max)) {
		/* A usage error ends the command the way doveadm's own do
		   (its error path for a failed option reads freed memory). */
		if (max <= 0) {
			i_fatal_status(EX_USAGE, "dovekie rescan: --max-messages wants a "
				       "positive number, not %"PRId64, max);
		}
		ctx->max_messages = (uint64_t)max;
	}
	ctx->mailboxes = p_strarray_dup(_ctx->pool,
					dovekie_doveadm_args(_ctx, "mailbox"));
	doveadm_print_header("mailbox", "Mailbox", 0);
	doveadm_print_header("after", "After UID", 0);
	doveadm_print_header("checked", "Checked", 0);
	doveadm_print_header("scanned", "Scanned", 0);
	doveadm_print_header("cached", "Cached", 0);
	doveadm_print_header("too_big", "Too big", 0);
	doveadm_print_header("infected", "Infected", 0);
	doveadm_print_header("moved", "Quarantined", 0);
	doveadm_print_header("state", "State", 0);
}

static struct doveadm_mail_cmd_context *cmd_rescan_alloc(void)
{
	struct rescan_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct rescan_cmd_context);
	dovekie_doveadm_accept_options(&ctx->ctx, "Rm:");
	ctx->ctx.v.init = cmd_rescan_init;
	ctx->ctx.v.run = cmd_rescan_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 dovekie_cmd_rescan = {
	.name = "dovekie rescan",
	.usage = "[-u <user>|-A] [--restart] [--max-messages <n>] [<mailbox> ...]",
	.mail_cmd = cmd_rescan_alloc,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('R', "restart", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('m', "max-messages", CMD_PARAM_INT64, 0)
DOVEADM_CMD_PARAM('\0', "mailbox", CMD_PARAM_ARRAY, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
