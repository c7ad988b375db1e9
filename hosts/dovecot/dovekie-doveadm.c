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
 * nothing. Unlike the pop3, lmtp and fts parts (dovekie-part.h), the
 * commands stay in the core plugin: `doveadm dovekie check` must be there
 * whenever dovekie is loaded at all, to diagnose the configuration.
 */
#include "lib.h"
#include <sysexits.h>
#include "dovekie-plugin.h"
#include "dovekie-doveadm.h"

/* Every `doveadm dovekie` command, each defined in its own file (declared
   in dovekie-doveadm.h). */
static struct doveadm_cmd_ver2 *const dovekie_doveadm_commands[] = {
	&dovekie_cmd_check,
	&dovekie_cmd_status,
	&dovekie_cmd_scan_status,
	&dovekie_cmd_rescan,
	&dovekie_cmd_quarantine_list,
	&dovekie_cmd_quarantine_release,
	&dovekie_cmd_quarantine_delete,
	&dovekie_cmd_quarantine_expire,
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

bool dovekie_doveadm_module_runs(struct doveadm_mail_cmd_context *ctx,
				 struct mail_user *user, struct dovekie_user *duser,
				 const char *module, bool runs)
{
	const char *name, *reason;
	unsigned int i;

	if (duser != NULL && runs)
		return TRUE;
	for (i = 0; duser != NULL &&
		    dovekie_bridge_failed_info(duser->bridge, i, &name, &reason, NULL); i++) {
		if (strcmp(name, module) == 0) {
			i_error("dovekie: the %s module failed to start for user %s: %s",
				module, user->username, reason);
			ctx->exit_code = EX_CONFIG;
			return FALSE;
		}
	}
	i_error("dovekie: the %s module is not loaded for user %s "
		"(see mail_plugins and dovekie_modules)", module, user->username);
	doveadm_mail_failed_error(ctx, MAIL_ERROR_NOTFOUND);
	return FALSE;
}

#if !DOVECOT_PREREQ(2, 4, 0)
/* 2.3 runs getopt over the options before init; every letter the command
   declared is accepted here and read by name in init. */
static bool dovekie_doveadm_accept(struct doveadm_mail_cmd_context *ctx ATTR_UNUSED,
				   int c ATTR_UNUSED)
{
	return TRUE;
}
#endif

void dovekie_doveadm_accept_options(struct doveadm_mail_cmd_context *ctx,
				    const char *letters)
{
#if DOVECOT_PREREQ(2, 4, 0)
	(void)ctx;
	(void)letters;
#else
	ctx->getopt_args = letters;
	ctx->v.parse_arg = dovekie_doveadm_accept;
#endif
}

const char *const *dovekie_doveadm_args(struct doveadm_mail_cmd_context *ctx,
					const char *name)
{
	static const char *const none[] = { NULL };
	const char *const *args;

	if (!doveadm_cmd_param_array(ctx->cctx, name, &args) || args == NULL)
		return none;
	return args;
}
