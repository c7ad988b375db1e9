/* doveadm dovekie rescan [-u user | -A] [--restart] [--max-messages N] [mailbox ...]
 *
 * Rescans stored mail with the in-process libclamav engine: every message
 * of the named mailboxes (default: all but the quarantine mailbox) that was
 * not judged with the engine's current signature-DB version. The verdict
 * cache answers for a message already judged with that version (a digest
 * read, no scan); a new detection is moved into the quarantine mailbox,
 * the action a delivery would have got, so nothing is lost. A run
 * resumes where the last one stopped; --max-messages stops a run after
 * that many messages (the next run goes on); --restart starts again.
 *
 * The policy is the antivirus module's (rescan_mailbox in
 * dovekie/antivirus.h): the resume marks (per mailbox GUID and
 * UIDVALIDITY, and DB version: the next run starts after the highest UID
 * done, a new DB version starts every mailbox again), the batches, the
 * --max-messages budget, the counts, what an infected message gets, and
 * the log lines. This file walks the mailboxes, refuses other users' mail,
 * opens a mailbox, gives the module the Dovecot steps of a rescan (list
 * the UIDs, a batch's lock, sync and transactions, read a message, move
 * one into quarantine, commit) and prints the table, one row per
 * mailbox. */
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
	const char *quarantine;
	/* --max-messages: what is left of it, over every mailbox. */
	uint64_t budget;
	/* rescan_all: a listed mailbox failed. */
	bool failed;
};

/* One mailbox being rescanned, what the module's steps work on. */
struct rescan_mailbox {
	struct rescan_run *run;
	struct mailbox *box;
	ARRAY_TYPE(uint32_t) uids;
	/* A batch, from rescan_batch_begin() to rescan_batch_end(). */
	struct file_lock *lock;
	struct mailbox_transaction_context *t;
	struct mail *mail;
	struct mailbox_transaction_context *qt;
	bool moved;
	/* Opened at the first move, kept for the mailbox. */
	struct mailbox *qbox;
};

/* The UIDs after `after`, ascending. */
static int
rescan_list(void *context, uint32_t after, const uint32_t **uids_r,
	    unsigned int *count_r, const char **error_r)
{
	struct rescan_mailbox *rbox = context;
	struct mailbox_transaction_context *t;
	struct mail_search_args *args;
	struct mail_search_arg *arg;
	struct mail_search_context *search;
	struct mail *mail;
	int ret = 0;

	array_clear(&rbox->uids);
	args = mail_search_build_init();
	arg = mail_search_build_add(args, SEARCH_UIDSET);
	p_array_init(&arg->value.seqset, args->pool, 1);
	seq_range_array_add_range(&arg->value.seqset, after + 1, (uint32_t)-1);
	t = mailbox_transaction_begin(rbox->box, 0, "dovekie rescan list");
	search = mailbox_search_init(t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	while (mailbox_search_next(search, &mail))
		array_push_back(&rbox->uids, &mail->uid);
	if (mailbox_search_deinit(&search) < 0) {
		*error_r = mailbox_get_last_internal_error(rbox->box, NULL);
		ret = -1;
	}
	mailbox_transaction_rollback(&t);
	*uids_r = array_get(&rbox->uids, count_r);
	return ret;
}

/* Under the lock the sessions' sync check moves mail under
   (dovekie-av-sync.c), after a sync that shows what another mover took
   meanwhile: a message is moved into quarantine once. */
static int rescan_batch_begin(void *context, const char **error_r)
{
	struct rescan_mailbox *rbox = context;
	const char *error;

	if (dovekie_av_sync_lock(rbox->box, &rbox->lock, &error) <= 0) {
		*error_r = t_strdup_printf("cannot lock %s: %s",
			dovekie_log_quote(mailbox_get_vname(rbox->box)), error);
		return -1;
	}
	if (mailbox_sync(rbox->box, 0) < 0) {
		*error_r = t_strdup_printf("cannot sync %s: %s",
			dovekie_log_quote(mailbox_get_vname(rbox->box)),
			mailbox_get_last_internal_error(rbox->box, NULL));
		file_lock_free(&rbox->lock);
		return -1;
	}
	/* The verdicts the batch stores go into one attribute transaction,
	   committed with the batch (one write instead of one per message). */
	if (dovekie_kv_batch_begin(rbox->run->duser, error_r) < 0) {
		file_lock_free(&rbox->lock);
		return -1;
	}
	/* Its reads are the job's, its expunges quarantine moves. */
	rbox->t = dovekie_transaction_begin(rbox->box, 0, "dovekie rescan",
					    DOVEKIE_OWN_READS | DOVEKIE_OWN_MOVES);
	rbox->mail = mail_alloc(rbox->t, 0, NULL);
	rbox->moved = FALSE;
	return 0;
}

static int
rescan_read(void *context, uint32_t uid, dovekie_bridge_av_reader_t *func,
	    void *func_context, const char **error_r)
{
	struct rescan_mailbox *rbox = context;
	int ret;

	if (!mail_set_uid(rbox->mail, uid))
		return 0; /* expunged meanwhile */
	T_BEGIN {
		ret = dovekie_read_mail(rbox->mail, func, func_context, error_r);
		if (ret < 0)
			*error_r = p_strdup(rbox->run->user->pool, *error_r);
	} T_END;
	return ret < 0 ? -1 : 1;
}

/* A copy in the quarantine mailbox's transaction, an expunge in the
   batch's. */
static int
rescan_move(void *context, uint32_t uid, const char *mailbox, const char *keyword,
	    const char **error_r)
{
	struct rescan_mailbox *rbox = context;
	struct rescan_run *run = rbox->run;

	i_assert(rbox->mail->uid == uid);
	if (rbox->qbox == NULL) {
		rbox->qbox = dovekie_quarantine_open(run->user, run->duser->event, mailbox,
						     error_r);
		if (rbox->qbox == NULL)
			return -1;
	}
	if (rbox->qt == NULL) {
		rbox->qt = dovekie_transaction_begin(rbox->qbox,
			MAILBOX_TRANSACTION_FLAG_EXTERNAL, "dovekie rescan quarantine",
			DOVEKIE_OWN_SAVES);
	}
	if (dovekie_quarantine_move(rbox->mail, rbox->qt, keyword, error_r) < 0)
		return -1;
	rbox->moved = TRUE;
	return 0;
}

static int rescan_batch_end(void *context, bool commit, const char **error_r)
{
	struct rescan_mailbox *rbox = context;
	struct mail_transaction_commit_changes changes;
	const char *vname = mailbox_get_vname(rbox->box);
	const char *kv_error;
	int ret = 0;

	mail_free(&rbox->mail);
	/* The verdicts are stored whatever happens to the moves: they are a
	   cache, and one that is lost is only scanned again. */
	if (dovekie_kv_batch_end(rbox->run->duser, TRUE, &kv_error) < 0) {
		i_warning("dovekie: rescan: cannot store the verdicts of %s: %s", vname,
			  kv_error);
	}
	/* The copies first: a crash between the commits leaves a duplicate in
	   quarantine, never a lost message. */
	if (rbox->qt != NULL && commit) {
		if (mailbox_transaction_commit_get_changes(&rbox->qt, &changes) < 0) {
			*error_r = t_strdup_printf("cannot commit to %s: %s",
				mailbox_get_vname(rbox->qbox),
				mailbox_get_last_internal_error(rbox->qbox, NULL));
			commit = FALSE;
			ret = -1;
		} else {
			/* For a release: back where it came from. */
			dovekie_quarantine_record_origin(rbox->run->duser, &changes, vname);
			pool_unref(&changes.pool);
		}
	}
	if (rbox->qt != NULL)
		mailbox_transaction_rollback(&rbox->qt);
	if (!commit) {
		mailbox_transaction_rollback(&rbox->t);
	} else if (mailbox_transaction_commit(&rbox->t) < 0 ||
		   /* The sync is what makes maildir unlink the moved files. */
		   (rbox->moved && mailbox_sync(rbox->box, 0) < 0)) {
		*error_r = t_strdup_printf("cannot commit to %s: %s", vname,
			mailbox_get_last_internal_error(rbox->box, NULL));
		ret = -1;
	}
	file_lock_free(&rbox->lock);
	return ret;
}

static void
rescan_log(void *context, enum dovekie_bridge_level level, const char *line)
{
	struct rescan_mailbox *rbox = context;

	dovekie_event_log(rbox->run->duser->event, level, line);
}

static const struct dovekie_bridge_av_rescan_host rescan_host = {
	.list = rescan_list,
	.batch_begin = rescan_batch_begin,
	.read = rescan_read,
	.move = rescan_move,
	.batch_end = rescan_batch_end,
	.log = rescan_log,
};

static void
rescan_print(const char *vname, const struct dovekie_bridge_av_rescan_counts *counts)
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
	struct rescan_mailbox rbox;
	struct dovekie_bridge_av_rescan_job job;
	struct dovekie_bridge_av_rescan_counts counts;
	struct mailbox_metadata metadata;
	struct mailbox_status status;
	const char *vname = mailbox_get_vname(box);
	const char *error;
	int ret;

	if (mailbox_open(box) < 0 || mailbox_sync(box, 0) < 0 ||
	    mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &metadata) < 0) {
		i_error("dovekie: rescan: cannot open %s of %s: %s", dovekie_log_quote(vname),
			run->user->username, mailbox_get_last_internal_error(box, NULL));
		return -1;
	}
	mailbox_get_open_status(box, STATUS_UIDVALIDITY | STATUS_MESSAGES, &status);
	i_zero(&job);
	job.user = run->user->username;
	job.mailbox = vname;
	job.mailbox_key = t_strdup_printf("%s.%u", guid_128_to_string(metadata.guid),
					  status.uidvalidity);
	job.messages = status.messages;
	job.is_quarantine = strcmp(vname, run->quarantine) == 0;
	job.restart = run->cmd->restart;
	job.budget = run->cmd->max_messages > 0 ? &run->budget : NULL;
	i_zero(&rbox);
	rbox.run = run;
	rbox.box = box;
	i_array_init(&rbox.uids, 256);
	/* The module has logged why it failed. */
	ret = dovekie_bridge_av_rescan_mailbox(run->duser->bridge, &rescan_host, &rbox, &job,
					       &counts, &error);
	if (rbox.qbox != NULL)
		mailbox_free(&rbox.qbox);
	array_free(&rbox.uids);
	if (counts.listed)
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
	return run->cmd->max_messages == 0 || run->budget > 0;
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
	const char *quarantine, *error = "";
	unsigned int i;
	int ret = 0;

	if (!dovekie_doveadm_module_runs(_ctx, user, duser, "antivirus",
					 duser != NULL && dovekie_bridge_has_antivirus(duser->bridge)))
		return -1;
	i_zero(&run);
	run.cmd = ctx;
	run.duser = duser;
	run.user = user;
	run.budget = ctx->max_messages;
	if (dovekie_bridge_av_quarantine_mailbox(duser->bridge, &quarantine) < 0 ||
	    dovekie_bridge_av_rescan_begin(duser->bridge, &error) < 0) {
		i_error("dovekie: rescan for %s cannot start: %s", user->username, error);
		doveadm_mail_failed_error(_ctx, MAIL_ERROR_TEMP);
		return -1;
	}
	run.quarantine = p_strdup(user->pool, quarantine);
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
