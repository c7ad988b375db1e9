/* doveadm dovekie status [-u user | -A]
 *
 * What an admin checks first, one row per fact (area, name, state):
 *   module     each loaded module: version, services, description; each
 *              listed module that failed to start: "failed: <reason>"
 *   antivirus  the scanner: reachable (and its DB version) or why not
 *   search     each mailbox: messages indexed / total, index bytes
 *   retention  INBOX: downloaded, DELEd, due to expire (a dry run of the
 *              expiry plan; it also drops records of messages that are gone)
 * Exit code 75 (tempfail) when the scanner or the retention state cannot
 * be reached, else 78 (EX_CONFIG) when a listed module failed to start.
 * Registered with the other commands by dovekie-doveadm.c.
 */
#include "lib.h"
#include "str.h"
#include "strnum.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "mail-user.h"
#include "mail-storage-private.h"
#include "mailbox-list-iter.h"
#include "dovekie-plugin.h"
#include "dovekie-doveadm.h"
#include "dovekie-fts.h"
#include "dovekie-antivirus.h"
#include "dovekie-retention.h"
#include "dovekie-storage.h"

#include <sys/stat.h>
#include <sysexits.h>

static void status_row(const char *area, const char *name, const char *state)
{
	doveadm_print(area);
	doveadm_print(name);
	doveadm_print(state);
}

/* Returns -1 when a listed module failed to start. */
static int status_modules(struct dovekie_user *duser)
{
	const char *name, *version, *description, *services, *reason;
	unsigned int i, j, guards;

	for (i = 0; dovekie_bridge_module_info(duser->bridge, i, &name, &version,
						&description, &services); i++) {
		status_row("module", name, t_strdup_printf("%s; services: %s; %s",
			   version, services[0] == '\0' ? "-" : services, description));
	}
	for (j = 0; dovekie_bridge_failed_info(duser->bridge, j, &name,
						&reason, &guards); j++)
		status_row("module", name, t_strdup_printf("failed: %s", reason));
	if (i == 0 && j == 0)
		status_row("module", "-", "no module loaded (see dovekie_modules and the log)");
	return j == 0 ? 0 : -1;
}

static int status_scanner(struct dovekie_user *duser)
{
	const char *scanner, *version, *error;

	if (!dovekie_bridge_has_antivirus(duser->bridge))
		return 0;
	if (dovekie_bridge_av_probe(duser->bridge, &scanner, &version, &error) < 0) {
		status_row("antivirus", scanner[0] == '\0' ? "-" : scanner,
			   t_strdup_printf("unreachable: %s", error));
		return -1;
	}
	status_row("antivirus", scanner, t_strdup_printf("reachable; DB version %s", version));
	return 0;
}

/* One row per selectable mailbox: how much of it the index covers. */
static void status_index_mailbox(struct dovekie_user *duser, struct mailbox *box)
{
	struct dovekie_bridge_index *index;
	struct mailbox_status status;
	const char *dir, *path, *error;
	uint32_t last_uid = 0, seq1 = 0, seq2 = 0;
	uoff_t bytes = 0;
	struct stat st;
	const char *const *suffix;
	static const char *const suffixes[] = { "", "-wal", NULL };

	if (mailbox_open(box) < 0 || mailbox_sync(box, 0) < 0) {
		status_row("search", mailbox_get_vname(box), t_strdup_printf(
			"cannot open: %s", mailbox_get_last_internal_error(box, NULL)));
		return;
	}
	mailbox_get_open_status(box, STATUS_MESSAGES | STATUS_UIDVALIDITY, &status);
	if (mailbox_get_path_to(box, MAILBOX_LIST_PATH_TYPE_INDEX, &dir) <= 0) {
		status_row("search", mailbox_get_vname(box), "no index directory");
		return;
	}
	path = t_strconcat(dir, "/" DOVEKIE_FTS_INDEX_FILE, NULL);
	if (stat(path, &st) < 0) {
		status_row("search", mailbox_get_vname(box), t_strdup_printf(
			"not indexed: 0/%u messages", status.messages));
		return;
	}
	for (suffix = suffixes; *suffix != NULL; suffix++) {
		if (stat(t_strconcat(path, *suffix, NULL), &st) == 0)
			bytes += st.st_size;
	}
	if (dovekie_bridge_index_open(duser->bridge, path, status.uidvalidity,
				      &index, &error) < 0) {
		status_row("search", mailbox_get_vname(box), t_strdup_printf(
			"index unusable (rebuilt on the next search): %s", error));
		return;
	}
	if (dovekie_bridge_index_last_uid(index, &last_uid, &error) < 0) {
		dovekie_bridge_index_close(&index);
		status_row("search", mailbox_get_vname(box), t_strdup_printf(
			"index unreadable: %s", error));
		return;
	}
	dovekie_bridge_index_close(&index);
	if (last_uid > 0)
		mailbox_get_seq_range(box, 1, last_uid, &seq1, &seq2);
	status_row("search", mailbox_get_vname(box), t_strdup_printf(
		"indexed %u/%u messages; index %"PRIuUOFF_T" bytes",
		seq1 == 0 ? 0 : seq2 - seq1 + 1, status.messages, bytes));
}

/* dovekie_mailbox_func_t: the search row of one mailbox. */
static bool status_index_listed(void *context, const struct mailbox_info *info)
{
	struct mailbox *box = mailbox_alloc(info->ns->list, info->vname, MAILBOX_FLAG_READONLY);

	status_index_mailbox(context, box);
	mailbox_free(&box);
	return TRUE;
}

static void status_index(struct dovekie_user *duser, struct mail_user *user)
{
	if (!dovekie_bridge_has_index(duser->bridge))
		return;
	if (dovekie_foreach_mailbox(user, status_index_listed, duser) < 0)
		status_row("search", "-", "cannot list the mailboxes");
}

static int status_retention(struct dovekie_user *duser, struct mail_user *user)
{
	struct dovekie_bridge_retention_summary summary;
	struct mail_namespace *ns;
	struct mailbox *box;
	const char *errstr;
	int due = -1;

	if (!dovekie_bridge_has_retention(duser->bridge))
		return 0;
	ns = mail_namespace_find_inbox(user->namespaces);
	box = mailbox_alloc(ns->list, "INBOX", 0);
	if (mailbox_open(box) == 0)
		due = dovekie_retention_expire(duser, box, TRUE, NULL, NULL, &summary, &errstr);
	else
		errstr = mailbox_get_last_internal_error(box, NULL);
	mailbox_free(&box);
	if (due < 0) {
		status_row("retention", "INBOX", t_strdup_printf("state unreadable: %s", errstr));
		return -1;
	}
	status_row("retention", "INBOX", t_strdup_printf(
		"downloaded %u; DELEd (hidden or kept) %u; due to expire %s%s",
		summary.downloaded, summary.deleted,
		dec2str(due),
		summary.corrupt == 0 ? "" : t_strdup_printf(
			"; unreadable records %u (their messages are kept)", summary.corrupt)));
	return due < 0 ? -1 : 0;
}

static int
cmd_dovekie_status_run(struct doveadm_mail_cmd_context *ctx, struct mail_user *user)
{
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(user);
	bool failed;
	int ret = 0;

	if (duser == NULL) {
		i_error("dovekie: the plugin is not enabled for user %s "
			"(add dovekie to mail_plugins)", user->username);
		doveadm_mail_failed_error(ctx, MAIL_ERROR_NOTFOUND);
		return -1;
	}
	/* A module that failed or answers badly is shown, and the exit code
	   says so: 78 (EX_CONFIG) for a failed module, else 75. */
	failed = status_modules(duser) < 0;
	if (status_scanner(duser) < 0)
		ret = -1;
	status_index(duser, user);
	if (status_retention(duser, user) < 0)
		ret = -1;
	if (ret < 0)
		doveadm_mail_failed_error(ctx, MAIL_ERROR_TEMP);
	if (failed) {
		/* doveadm_mail_failed_error() has no code for a configuration
		   error; a tempfail still wins, as there. */
		if (ctx->exit_code != EX_TEMPFAIL)
			ctx->exit_code = EX_CONFIG;
		ret = -1;
	}
	return ret;
}

DOVEKIE_DOVEADM_INIT(cmd_dovekie_status_init)
{
	/* With -A, doveadm adds the user name column itself. */
	doveadm_print_header("area", "Area", 0);
	doveadm_print_header("name", "Name", 0);
	doveadm_print_header("state", "State", 0);
}

static struct doveadm_mail_cmd_context *cmd_dovekie_status_alloc(void)
{
	struct doveadm_mail_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct doveadm_mail_cmd_context);
	ctx->v.init = cmd_dovekie_status_init;
	ctx->v.run = cmd_dovekie_status_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return ctx;
}

struct doveadm_cmd_ver2 dovekie_cmd_status = {
	.name = "dovekie status",
	.usage = "[-u <user>|-A]",
	.mail_cmd = cmd_dovekie_status_alloc,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
};

