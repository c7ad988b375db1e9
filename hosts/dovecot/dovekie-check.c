/* doveadm dovekie check [-u user | -A]
 *
 * Loads the modules the way a mail process does and says what is wrong,
 * one line per problem: "<scope>: <problem>", where scope is "global" or a
 * user name. First the global configuration (doveadm's plugin {} settings,
 * no userdb), then each user asked for (global settings plus the user's
 * userdb fields, through a real mail user, so the plugin's own code builds
 * the user's modules). A problem the global check printed is not printed
 * again for a user it applies to as well.
 *
 * Beyond the loader's problems (failed modules, misspelt settings, bad
 * loader settings) it asks what the modules depend on: the scanner
 * (antivirus), the INBOX index directory (search, users only), the
 * retention state (retention, users only) and the per-protocol parts
 * (dovekie-part.h): dovekie_fts for a user whose fts settings select
 * dovekie, and dovekie_pop3 / dovekie_lmtp in their protocol's
 * mail_plugins when the global modules, or those of a user checked, act
 * in that protocol (read from the settings a session of that protocol
 * gets, without userdb).
 *
 * Exit codes: 0 with one "ok" line when nothing is wrong; 78 (EX_CONFIG)
 * when a module failed or a setting is wrong; else 75 (EX_TEMPFAIL) when a
 * resource did not answer or a user lookup failed; else 67 (EX_NOUSER)
 * when -u names no user.
 *
 * It is a plain doveadm command, not a mail command: doveadm's mail
 * commands need a user, and the global check must run without one (the
 * package runs it after an upgrade). So it walks the users itself, with
 * mail_storage_service, as doveadm's mail commands do.
 */
/* dladdr() (see check_pin_plugin) is a GNU extension. */
#ifndef _GNU_SOURCE
#  define _GNU_SOURCE 1
#endif
#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "str-sanitize.h"
#include "ioloop.h"
#include "wildcard-match.h"
#include "safe-mkstemp.h"
#include "master-service.h"
#include "mail-namespace.h"
#include "mail-storage-private.h"
#include "mail-storage-service.h"
#include "mail-user.h"
#include "env-util.h"
#include "dovekie-plugin.h"
#include "dovekie-doveadm.h"
#include "dovekie-settings.h"
#include "dovekie-antivirus.h"
#include "dovekie-retention.h"
#include "dovekie-part.h"

#include <dlfcn.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

/* Longest problem text printed; longer ones are cut (str_sanitize). */
#define CHECK_LINE_MAX 1024

#ifndef DOVEKIE_MODULEDIR
#  error "DOVEKIE_MODULEDIR must be defined"
#endif

struct check_context {
	pool_t pool;
	struct event *event;
	/* The global check's problems: not printed again per user. */
	HASH_TABLE(const char *, void *) global;
	unsigned int config_problems, resource_problems;
	unsigned int users, missing_users, failed_users;
	/* Per part: the first scope (global, or a user) whose modules act in
	   its protocol, or NULL. */
	const char *part_needed_by[DOVEKIE_PART_COUNT];
};

/* Prints one problem line, unless it was printed for "global" already
   (which also prints each global problem once). */
static void
check_report(struct check_context *ctx, const char *scope, const char *problem,
	     bool config)
{
	if (hash_table_lookup(ctx->global, problem) != NULL)
		return;
	if (strcmp(scope, "global") == 0) {
		const char *key = p_strdup(ctx->pool, problem);

		hash_table_insert(ctx->global, key, POINTER_CAST(1));
	}
	if (config)
		ctx->config_problems++;
	else
		ctx->resource_problems++;
	doveadm_print(t_strdup_printf("%s: %s", str_sanitize(scope, 256),
				      str_sanitize(problem, CHECK_LINE_MAX)));
}

/* The loader's problems (each found once per bridge). */
static void
check_bridge_problems(struct check_context *ctx, const char *scope,
		      struct dovekie_bridge *bridge)
{
	unsigned int i, count = dovekie_bridge_problem_count(bridge);

	for (i = 0; i < count; i++)
		check_report(ctx, scope, dovekie_bridge_problem(bridge, i), TRUE);
}

static int check_scanner(struct dovekie_bridge *bridge, const char **problem_r)
{
	const char *scanner, *version, *error;

	if (!dovekie_bridge_has_antivirus(bridge))
		return 0;
	if (dovekie_bridge_av_probe(bridge, &scanner, &version, &error) == 0)
		return 0;
	/* The reason usually names the scanner already. */
	if (scanner[0] == '\0' || strstr(error, scanner) != NULL)
		*problem_r = t_strdup_printf("antivirus: the scanner does not answer: %s", error);
	else {
		*problem_r = t_strdup_printf("antivirus: the scanner %s does not answer: %s",
					     scanner, error);
	}
	return -1;
}

/* The search index lives beside Dovecot's index files: the user must be
   able to create files there. */
static int check_index_dir(struct mail_user *user, const char **problem_r)
{
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);
	struct mailbox *box;
	const char *dir;
	string_t *path;
	int fd, ret;

	box = mailbox_alloc(ns->list, "INBOX", 0);
	if (mailbox_open(box) < 0) {
		*problem_r = t_strdup_printf("search: cannot open INBOX: %s",
			mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		return -1;
	}
	ret = mailbox_get_path_to(box, MAILBOX_LIST_PATH_TYPE_INDEX, &dir);
	/* dir lives in the mailbox's pool. */
	dir = t_strdup(dir);
	mailbox_free(&box);
	if (ret < 0) {
		*problem_r = "search: cannot find INBOX's index directory";
		return -1;
	}
	if (ret == 0) {
		*problem_r = "search: INBOX has no index directory (in-memory "
			"indexes): searches fall back to Dovecot's own search";
		return -1;
	}
	path = t_str_new(256);
	str_printfa(path, "%s/.dovekie-check.", dir);
	fd = safe_mkstemp_hostpid(path, 0600, (uid_t)-1, (gid_t)-1);
	if (fd == -1) {
		*problem_r = t_strdup_printf("search: index directory %s is not "
			"writable: %m", dir);
		return -1;
	}
	i_close_fd(&fd);
	i_unlink(str_c(path));
	return 0;
}

/* The records live in INBOX's index: it must be on disk. */
static int check_retention_state(struct mail_user *user, const char **problem_r)
{
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);
	struct mailbox *box;
	const char *error;
	int ret = 0;

	if (ns == NULL) {
		*problem_r = "retention: user has no INBOX namespace";
		return -1;
	}
	box = mailbox_alloc(ns->list, "INBOX", 0);
	if (mailbox_open(box) < 0) {
		*problem_r = t_strdup_printf("retention: state unreadable: %s",
			mailbox_get_last_internal_error(box, NULL));
		ret = -1;
	} else if (dovekie_retention_index_check(box, &error) < 0) {
		*problem_r = t_strdup_printf("retention: %s", error);
		ret = -1;
	}
	mailbox_free(&box);
	return ret;
}

/* Remembers which protocol parts the modules of scope need. */
static void
check_note_parts(struct check_context *ctx, const char *scope, struct dovekie_bridge *bridge)
{
	enum dovekie_part part;

	for (part = 0; part < DOVEKIE_PART_COUNT; part++) {
		if (ctx->part_needed_by[part] == NULL &&
		    dovekie_part_protocol_needed(part, bridge))
			ctx->part_needed_by[part] = p_strdup(ctx->pool, scope);
	}
}

static void
check_host_log(void *context, enum dovekie_bridge_level level,
	       const char *module, const char *message)
{
	struct check_context *ctx = context;

	dovekie_event_log(ctx->event, level, module == NULL ? message :
			  t_strdup_printf("%s: %s", module, message));
}

/* A bridge of its own, built from the global settings as the plugin builds
   a user's (nothing is from userdb). No kv: the modules' state is per user. */
static void check_global(struct check_context *ctx)
{
	struct dovekie_bridge_host host;
	struct dovekie_bridge *bridge;
	const char *problem, *error;
	const char *const *settings;

	i_zero(&host);
	host.log = check_host_log;
	host.now = dovekie_host_now;
	host.context = ctx;
	if (dovekie_settings_global(&settings, &error) < 0) {
		check_report(ctx, "global", t_strdup_printf(
			"cannot read the dovekie settings: %s", error), TRUE);
		return;
	}
	bridge = dovekie_bridge_create(settings, NULL, DOVEKIE_MODULEDIR, &host);
	check_bridge_problems(ctx, "global", bridge);
	check_note_parts(ctx, "global", bridge);
	if (check_scanner(bridge, &problem) < 0)
		check_report(ctx, "global", problem, FALSE);
	dovekie_bridge_destroy(&bridge);
}

static void check_mail_user(struct check_context *ctx, struct mail_user *user)
{
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(user);
	const char *scope = user->username, *modules, *problem;

	ctx->users++;
	if (duser == NULL) {
		/* Only a problem when the user has modules listed. */
		modules = dovekie_settings_user_get(user, "dovekie_modules");
		if (modules != NULL && strcmp(modules, "none") != 0) {
			check_report(ctx, scope, t_strdup_printf(
				"dovekie_modules = %s, but dovekie is not in the "
				"user's mail_plugins: no module runs",
				modules), TRUE);
		}
		return;
	}
	check_bridge_problems(ctx, scope, duser->bridge);
	check_note_parts(ctx, scope, duser->bridge);
	/* The fts part loads in doveadm too (mail_plugins): asked directly. */
	problem = dovekie_part_missing(duser);
	if (problem != NULL)
		check_report(ctx, scope, problem, TRUE);
	if (check_scanner(duser->bridge, &problem) < 0)
		check_report(ctx, scope, problem, FALSE);
	if (dovekie_bridge_has_index(duser->bridge) &&
	    check_index_dir(user, &problem) < 0)
		check_report(ctx, scope, problem, FALSE);
	if (dovekie_bridge_has_retention(duser->bridge) &&
	    check_retention_state(user, &problem) < 0)
		check_report(ctx, scope, problem, FALSE);
}

/* 1 checked, 0 no such user, -1 lookup or init failed (logged). */
static int
check_user(struct check_context *ctx, struct mail_storage_service_ctx *service,
	   const char *username)
{
	struct mail_storage_service_input input;
#if !DOVECOT_PREREQ(2, 4, 0)
	struct mail_storage_service_user *service_user;
#endif
	struct mail_user *user;
	const char *error;
	int ret;

	i_zero(&input);
	input.service = "doveadm";
	input.username = username;
#if DOVECOT_PREREQ(2, 4, 0)
	/* 2.4: the user holds its service user. */
	ret = mail_storage_service_lookup_next(service, &input, &user, &error);
#else
	ret = mail_storage_service_lookup_next(service, &input, &service_user,
					       &user, &error);
#endif
	if (ret <= 0) {
		if (ret < 0)
			e_error(ctx->event, "user %s: %s", username, error);
		else
			e_error(ctx->event, "user %s does not exist", username);
		return ret;
	}
	check_mail_user(ctx, user);
	mail_user_unref(&user);
#if !DOVECOT_PREREQ(2, 4, 0)
	mail_storage_service_user_unref(&service_user);
#endif
	return 1;
}

/* mail_storage_service_deinit() unloads the mail plugins, this one
   included, while its code is still running: hold one more reference to
   our own file so that it stays mapped until doveadm exits. */
static void check_pin_plugin(void)
{
	Dl_info info;

	if (dladdr((void *)check_pin_plugin, &info) != 0 && info.dli_fname != NULL)
		(void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
}

/* username: one user, or a mask with * and ? (as doveadm -u takes);
   NULL: every user. */
static void check_users(struct check_context *ctx, const char *username)
{
	struct mail_storage_service_ctx *service;
	enum mail_storage_service_flags flags =
		MAIL_STORAGE_SERVICE_FLAG_USERDB_LOOKUP |
		MAIL_STORAGE_SERVICE_FLAG_NO_LOG_INIT |
		MAIL_STORAGE_SERVICE_FLAG_TEMP_PRIV_DROP;
	const char *name;
	int ret;

	if (doveadm_debug)
		flags |= MAIL_STORAGE_SERVICE_FLAG_DEBUG;
	check_pin_plugin();
#if DOVECOT_PREREQ(2, 4, 0)
	service = mail_storage_service_init(master_service, flags);
#else
	service = mail_storage_service_init(master_service, NULL, flags);
#endif
	if (username != NULL && strpbrk(username, "*?") == NULL) {
		T_BEGIN {
			ret = check_user(ctx, service, username);
		} T_END;
		if (ret == 0)
			ctx->missing_users++;
		else if (ret < 0)
			ctx->failed_users++;
	} else {
		/* "*", not "": 2.4's auth lists no user for an empty mask. */
		mail_storage_service_all_init_mask(service,
			username != NULL ? username : "*");
		while ((ret = mail_storage_service_all_next(service, &name)) > 0) {
			if (username != NULL && !wildcard_match_icase(name, username))
				continue;
			T_BEGIN {
				ret = check_user(ctx, service, name);
			} T_END;
			if (ret < 0)
				ctx->failed_users++;
		}
		if (ret < 0) {
			e_error(ctx->event, "listing the users failed");
			ctx->failed_users++;
		}
	}
	mail_storage_service_deinit(&service);
}

/* Whether doveconf's answer for mail_plugins names plugin as loaded: on
   2.3 a list of names ("dovekie dovekie_pop3"), on 2.4 the boollist's
   lines ("dovekie_pop3 = yes"), the last word on a name counting. */
static bool check_plugins_name(const char *answer, const char *plugin)
{
	const char *const *lines = t_strsplit(answer, "\n");
	const char *const *words, *value;
	bool loaded = FALSE;

	for (; *lines != NULL; lines++) {
		value = strstr(*lines, " = ");
		if (value != NULL) {
			if (strncmp(*lines, plugin, value - *lines) == 0 &&
			    strlen(plugin) == (size_t)(value - *lines))
				loaded = strcmp(value + 3, "yes") == 0;
			continue;
		}
		for (words = t_strsplit_spaces(*lines, ", "); *words != NULL; words++) {
			if (strcmp(*words, plugin) == 0)
				loaded = TRUE;
		}
	}
	return loaded;
}

/* Whether the global configuration's mail_plugins for protocol name
   plugin (userdb is not asked: a part is a protocol block's line). 1 yes,
   0 no, -1 with error_r.

   A part cannot be loaded here (it needs its protocol's binary), and
   doveadm cannot read another protocol's settings in-process: on 2.3 its
   settings come from the environment its first read left (DOVECONF_ENV),
   and every later read returns them whatever service it names; on 2.4 a
   storage-service lookup with that protocol did not apply the protocol's
   filter either (tried: both gave the global mail_plugins). So doveconf
   is asked, as the package's postinst did. */
static int
check_protocol_loads(const char *protocol, const char *plugin, const char **error_r)
{
	const char *argv[] = {
		DOVEKIE_DOVECONF, "-c", master_service_get_config_path(master_service),
		"-f", t_strconcat("protocol=", protocol, NULL), "-h", "mail_plugins", NULL
	};
	string_t *out = t_str_new(128);
	char buf[512];
	ssize_t n;
	int fds[2], status;
	pid_t pid;

	if (pipe(fds) < 0) {
		*error_r = t_strdup_printf("pipe() failed: %m");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		*error_r = t_strdup_printf("fork() failed: %m");
		i_close_fd(&fds[0]);
		i_close_fd(&fds[1]);
		return -1;
	}
	if (pid == 0) {
		if (dup2(fds[1], STDOUT_FILENO) < 0)
			_exit(EX_OSERR);
		i_close_fd(&fds[0]);
		i_close_fd(&fds[1]);
		env_remove("DOVECONF_ENV");
		execv(argv[0], (char *const *)argv);
		_exit(EX_UNAVAILABLE);
	}
	i_close_fd(&fds[1]);
	while ((n = read(fds[0], buf, sizeof(buf))) > 0)
		str_append_data(out, buf, n);
	i_close_fd(&fds[0]);
	if (waitpid(pid, &status, 0) < 0) {
		*error_r = t_strdup_printf("waitpid() failed: %m");
		return -1;
	}
	if (n < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		*error_r = t_strdup_printf("%s -f protocol=%s -h mail_plugins failed (status %d)",
					   argv[0], protocol, status);
		return -1;
	}
	return check_plugins_name(str_c(out), plugin) ? 1 : 0;
}

/* A protocol part the modules need but the protocol does not load refuses
   that protocol's sessions of those users (dovekie-part.h). */
static void check_parts(struct check_context *ctx)
{
	enum dovekie_part part;
	const char *protocol, *plugin, *error;
	int ret;

	for (part = 0; part < DOVEKIE_PART_COUNT; part++) {
		protocol = dovekie_part_protocol(part);
		if (protocol == NULL || ctx->part_needed_by[part] == NULL)
			continue;
		plugin = dovekie_part_plugin(part);
		ret = check_protocol_loads(protocol, plugin, &error);
		if (ret < 0) {
			check_report(ctx, "global", t_strdup_printf(
				"cannot read the settings of protocol %s: %s", protocol, error),
				FALSE);
		} else if (ret == 0) {
			check_report(ctx, "global", t_strdup_printf(
				"%s: the plugin %s is not in protocol %s's mail_plugins, and "
				"the modules (%s) act in %s: its sessions are refused; set %s",
				protocol, plugin, protocol, ctx->part_needed_by[part], protocol,
				dovekie_part_fix(part)), TRUE);
		}
	}
}

static void cmd_dovekie_check(struct doveadm_cmd_context *cctx)
{
	struct check_context ctx;
	const char *username = NULL;
	bool all_users = FALSE;

	(void)doveadm_cmd_param_str(cctx, "user", &username);
	(void)doveadm_cmd_param_bool(cctx, "all-users", &all_users);
	if (username != NULL && all_users) {
		i_error("dovekie check: -u and -A exclude each other");
		doveadm_exit_code = EX_USAGE;
		return;
	}

	i_zero(&ctx);
	ctx.pool = pool_alloconly_create("dovekie check", 1024);
	ctx.event = event_create(NULL);
	event_set_append_log_prefix(ctx.event, "dovekie: ");
	hash_table_create(&ctx.global, ctx.pool, 0, str_hash, strcmp);

	doveadm_print_init(DOVEADM_PRINT_TYPE_FLOW);
	doveadm_print_header("check", "Check", DOVEADM_PRINT_HEADER_FLAG_HIDE_TITLE);

	T_BEGIN {
		check_global(&ctx);
	} T_END;
	if (username != NULL || all_users) {
		dovekie_part_set_report_only(TRUE);
		check_users(&ctx, username);
		dovekie_part_set_report_only(FALSE);
	}
	T_BEGIN {
		check_parts(&ctx);
	} T_END;

	if (ctx.config_problems > 0)
		doveadm_exit_code = EX_CONFIG;
	else if (ctx.resource_problems > 0 || ctx.failed_users > 0)
		doveadm_exit_code = EX_TEMPFAIL;
	else if (ctx.missing_users > 0)
		doveadm_exit_code = EX_NOUSER;
	else if (username == NULL && !all_users)
		doveadm_print("ok: no problems in the global configuration");
	else {
		doveadm_print(t_strdup_printf(
			"ok: no problems in the global configuration and %u user%s",
			ctx.users, ctx.users == 1 ? "" : "s"));
	}

	hash_table_destroy(&ctx.global);
	event_unref(&ctx.event);
	pool_unref(&ctx.pool);
}

struct doveadm_cmd_ver2 dovekie_cmd_check = {
	.name = "dovekie check",
	.cmd = cmd_dovekie_check,
	.usage = "[-u <user>|-A]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('A', "all-users", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('u', "user", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
};
