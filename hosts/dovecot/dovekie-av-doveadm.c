/* doveadm dovekie scan-status [-u user | -A]
 *
 * Counts each user's antivirus verdict cache per signature-DB version and
 * verdict (clean, infected, malformed): one row per user and pair. Registered with
 * the other commands by dovekie-doveadm.c.
 */
#include "lib.h"
#include "mail-storage.h"
#include "dovekie-plugin.h"
#include "dovekie-doveadm.h"
#include "dovekie-antivirus.h"


static void
scan_status_row(void *context, const char *version, const char *verdict,
		unsigned int count)
{
	const char *username = context;

	doveadm_print(username);
	doveadm_print(version);
	doveadm_print(verdict);
	doveadm_print_num(count);
}

static int
cmd_scan_status_run(struct doveadm_mail_cmd_context *ctx, struct mail_user *user)
{
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(user);
	const char *error;
	int ret;

	if (!dovekie_doveadm_module_runs(ctx, user, duser, "antivirus",
					 duser != NULL && dovekie_bridge_has_antivirus(duser->bridge)))
		return -1;
	T_BEGIN {
		ret = dovekie_bridge_av_status(duser->bridge, scan_status_row,
					       (void *)user->username, &error);
		if (ret < 0) {
			i_error("dovekie: scan-status for %s failed: %s",
				user->username, error);
		}
	} T_END;
	if (ret < 0) {
		doveadm_mail_failed_error(ctx, MAIL_ERROR_TEMP);
		return -1;
	}
	return 0;
}

DOVEKIE_DOVEADM_INIT(cmd_scan_status_init)
{
	doveadm_print_header("username", "Username", 0);
	doveadm_print_header("version", "DB version", 0);
	doveadm_print_header("verdict", "Verdict", 0);
	doveadm_print_header("count", "Count", 0);
}

static struct doveadm_mail_cmd_context *cmd_scan_status_alloc(void)
{
	struct doveadm_mail_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct doveadm_mail_cmd_context);
	ctx->v.init = cmd_scan_status_init;
	ctx->v.run = cmd_scan_status_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return ctx;
}

struct doveadm_cmd_ver2 dovekie_cmd_scan_status = {
	.name = "dovekie scan-status",
	.usage = "[-u <user>|-A]",
	.mail_cmd = cmd_scan_status_alloc,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
};
