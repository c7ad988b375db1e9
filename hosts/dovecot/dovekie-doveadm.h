/* For the files that define `doveadm dovekie ...` commands.
 *
 * doveadm's functions exist only in the doveadm binary, so every file that
 * uses them declares them weak: the plugin still loads in imap, pop3 and
 * lmtp. The commands are registered in one place, dovekie-doveadm.c, from
 * an ELF constructor (see there for why).
 */
#ifndef DOVEKIE_DOVEADM_H
#define DOVEKIE_DOVEADM_H

#include "doveadm-print.h"
#include "doveadm-mail.h"
#include "doveadm-settings.h"

#pragma weak doveadm_cmd_register_ver2
#pragma weak doveadm_mail_cmd_alloc_size
#pragma weak doveadm_print_init
#pragma weak doveadm_print_header
#pragma weak doveadm_print
#pragma weak doveadm_print_num
#pragma weak doveadm_mail_failed_error
#pragma weak doveadm_cmd_param_str
#pragma weak doveadm_cmd_param_bool
#pragma weak doveadm_cmd_param_int64
#pragma weak doveadm_cmd_param_array
/* Variables of doveadm, read only by commands (so only inside doveadm). */
#pragma weak doveadm_settings
#pragma weak doveadm_exit_code
#pragma weak doveadm_debug

/* The commands, defined in their own files. */
extern struct doveadm_cmd_ver2 dovekie_cmd_check;         /* dovekie-check.c */
extern struct doveadm_cmd_ver2 dovekie_cmd_status;        /* dovekie-status.c */
extern struct doveadm_cmd_ver2 dovekie_cmd_scan_status;   /* dovekie-av-doveadm.c */
extern struct doveadm_cmd_ver2 dovekie_cmd_rescan;        /* dovekie-av-rescan.c */
extern struct doveadm_cmd_ver2 dovekie_cmd_quarantine_list;    /* dovekie-quarantine-doveadm.c */
extern struct doveadm_cmd_ver2 dovekie_cmd_quarantine_release;
extern struct doveadm_cmd_ver2 dovekie_cmd_quarantine_delete;
extern struct doveadm_cmd_ver2 dovekie_cmd_quarantine_expire;
extern struct doveadm_cmd_ver2 dovekie_cmd_retention_run; /* dovekie-retention-doveadm.c */

struct dovekie_user;

/* Dovecot 2.3 gives a mail command its options through getopt (v.parse_arg)
   and its positional arguments as init's second parameter; 2.4 removed both,
   and a command reads every parameter by name from ctx->cctx. dovekie's
   commands read them by name on both (2.3 fills cctx as well), so only
   init's signature differs: write it as
       DOVEKIE_DOVEADM_INIT(cmd_x_init) { ...read _ctx->cctx... }
   and, for a command with options, call dovekie_doveadm_accept_options()
   from its alloc function so that 2.3's getopt lets them through. */
#if DOVECOT_PREREQ(2, 4, 0)
#  define DOVEKIE_DOVEADM_INIT(name) \
	static void name(struct doveadm_mail_cmd_context *_ctx ATTR_UNUSED)
#else
#  define DOVEKIE_DOVEADM_INIT(name) \
	static void name(struct doveadm_mail_cmd_context *_ctx ATTR_UNUSED, \
			 const char *const _args[] ATTR_UNUSED)
#endif
/* `letters` are getopt's option string, e.g. "Rm:" (ignored on 2.4). */
void dovekie_doveadm_accept_options(struct doveadm_mail_cmd_context *ctx,
				    const char *letters);
/* The strings of positional array parameter `name`, never NULL. */
const char *const *dovekie_doveadm_args(struct doveadm_mail_cmd_context *ctx,
					const char *name);

/* For a mail command that needs `module` (e.g. "antivirus"): returns true
   when `runs`; else logs why not, "failed to start for user U: <reason>"
   (exit code EX_CONFIG) or "not loaded for user U" (NOTFOUND), and marks
   the command failed. duser may be NULL. */
bool dovekie_doveadm_module_runs(struct doveadm_mail_cmd_context *ctx,
				 struct mail_user *user, struct dovekie_user *duser,
				 const char *module, bool runs);

#endif
