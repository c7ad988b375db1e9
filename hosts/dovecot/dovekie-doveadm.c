/* doveadm sub-commands: `doveadm dovekie ...`.
 *
 * They are registered by the mail plugin itself when doveadm loads it, not
 * by a separate plugin in modules/doveadm/: that directory is compiled into
 * doveadm, so a private Dovecot (tests, sandbox) could not use it, and the
 * commands need the mail plugin anyway.
 *
 * doveadm dlopen()s mail_plugins before it looks the command up, but calls
 * their init functions only later, when a mail user is created. So the
 * registration runs as an ELF constructor at dlopen time. doveadm's
 * symbols exist only in the doveadm binary, hence weak: in every other
 * process the constructor finds doveadm_cmd_register_ver2 NULL and does
 * nothing.
 */
#include "lib.h"
#include "str.h"
#include "mail-user.h"
#include "dovekie-plugin.h"
#include "dovekie-doveadm.h"


static int
cmd_dovekie_status_run(struct doveadm_mail_cmd_context *ctx, struct mail_user *user)
{
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(user);
	const char *name, *version, *description, *services;
	unsigned int i;

	if (duser == NULL) {
		i_error("dovekie: the plugin is not enabled for user %s "
			"(add dovekie to mail_plugins)", user->username);
		doveadm_mail_failed_error(ctx, MAIL_ERROR_NOTFOUND);
		return -1;
	}
	for (i = 0; dovekie_bridge_module_info(duser->bridge, i, &name, &version,
						&description, &services); i++) {
		doveadm_print(name);
		doveadm_print(version);
		doveadm_print(services[0] == '\0' ? "-" : services);
		doveadm_print(description);
	}
	if (i == 0) {
		doveadm_print("-");
		doveadm_print("-");
		doveadm_print("-");
		doveadm_print("no module loaded (see dovekie_modules and the log)");
	}
	return 0;
}

static void
cmd_dovekie_status_init(struct doveadm_mail_cmd_context *ctx ATTR_UNUSED,
			const char *const args[] ATTR_UNUSED)
{
	/* With -A, doveadm adds the user name column itself. */
	doveadm_print_header("module", "Module", 0);
	doveadm_print_header("version", "Version", 0);
	doveadm_print_header("services", "Services", 0);
	doveadm_print_header("description", "Description", 0);
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

static struct doveadm_cmd_ver2 dovekie_cmd_status = {
	.name = "dovekie status",
	.usage = "[-u <user>|-A]",
	.mail_cmd = cmd_dovekie_status_alloc,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
};

/* Every `doveadm dovekie` command. A module's own commands live in its
   host file (declared in dovekie-doveadm.h) and are listed here. */
static struct doveadm_cmd_ver2 *const dovekie_doveadm_commands[] = {
	&dovekie_cmd_status,
	&dovekie_cmd_scan_status,
	&dovekie_cmd_retention_run,
};

static void __attribute__((constructor)) dovekie_doveadm_register(void)
{
	unsigned int i;

	if (doveadm_cmd_register_ver2 == NULL)
		return; /* not running inside doveadm */
	for (i = 0; i < N_ELEMENTS(dovekie_doveadm_commands); i++)
		doveadm_cmd_register_ver2(dovekie_doveadm_commands[i]);
}
