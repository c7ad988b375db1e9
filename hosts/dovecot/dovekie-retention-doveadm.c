/* doveadm dovekie retention run [-u user | -A] [--dry-run]
 *
 * Runs the retention expiry over each user's INBOX: prints one row per
 * message it expunges (or would, with --dry-run) and logs the same through
 * the module. Registered with the other
 * commands by dovekie-doveadm.c.
 */
#include "lib.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "dovekie-plugin.h"
#include "dovekie-doveadm.h"
#include "dovekie-retention.h"


struct retention_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	bool dry_run;
};

static void retention_print(void *context ATTR_UNUSED,
			    const struct dovekie_retention_action *action)
{
	doveadm_print(action->mailbox);
	doveadm_print_num(action->uid);
	doveadm_print(action->reason);
	doveadm_print(action->dry_run ? "would-expunge" : "expunged");
}

static int
cmd_retention_run(struct doveadm_mail_cmd_context *_ctx, struct mail_user *user)
{
	struct retention_cmd_context *ctx = (struct retention_cmd_context *)_ctx;
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(user);
	struct mail_namespace *ns;
	struct mailbox *box;
	const char *error;
	int ret;

	if (!dovekie_doveadm_module_runs(_ctx, user, duser, "retention",
					 duser != NULL && dovekie_bridge_has_retention(duser->bridge)))
		return -1;
	ns = mail_namespace_find_inbox(user->namespaces);
	if (ns == NULL) {
		i_error("dovekie: user %s has no INBOX", user->username);
		doveadm_mail_failed_error(_ctx, MAIL_ERROR_NOTFOUND);
		return -1;
	}
	box = mailbox_alloc(ns->list, "INBOX", 0);
	if (mailbox_open(box) < 0) {
		i_error("dovekie: cannot open INBOX of %s: %s", user->username,
			mailbox_get_last_internal_error(box, NULL));
		doveadm_mail_failed_error(_ctx, MAIL_ERROR_TEMP);
		mailbox_free(&box);
		return -1;
	}
	ret = dovekie_retention_expire(duser, box, ctx->dry_run, retention_print,
				       ctx, NULL, &error);
	if (ret < 0) {
		i_error("dovekie: retention run for %s failed: %s",
			user->username, error);
		doveadm_mail_failed_error(_ctx, MAIL_ERROR_TEMP);
	}
	mailbox_free(&box);
	return ret < 0 ? -1 : 0;
}

DOVEKIE_DOVEADM_INIT(cmd_retention_init)
{
	struct retention_cmd_context *ctx = (struct retention_cmd_context *)_ctx;
	bool dry_run;

	ctx->dry_run = doveadm_cmd_param_bool(_ctx->cctx, "dry-run", &dry_run) && dry_run;
	doveadm_print_header("mailbox", "Mailbox", 0);
	doveadm_print_header("uid", "UID", 0);
	doveadm_print_header("reason", "Reason", 0);
	doveadm_print_header("action", "Action", 0);
}

static struct doveadm_mail_cmd_context *cmd_retention_alloc(void)
{
	struct retention_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct retention_cmd_context);
	dovekie_doveadm_accept_options(&ctx->ctx, "n");
	ctx->ctx.v.init = cmd_retention_init;
	ctx->ctx.v.run = cmd_retention_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 dovekie_cmd_retention_run = {
	.name = "dovekie retention run",
	.usage = "[-u <user>|-A] [--dry-run]",
	.mail_cmd = cmd_retention_alloc,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('n', "dry-run", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAMS_END
};
