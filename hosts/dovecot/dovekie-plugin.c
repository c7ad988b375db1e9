/* Dovecot 2.3 mail plugin: one dovekie loader per mail user. */
#include "lib.h"
#include "istream.h"
#include "ioloop.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "strnum.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage-settings.h"
#include "mail-storage-hooks.h"
#include "dovekie-plugin.h"
#include "dovekie-settings.h"
#include "dovekie-storage.h"
#include "dovekie-retention.h"
#include "dovekie-part.h"

/* Set by the build: where the packaged GModules live. */
#ifndef DOVEKIE_MODULEDIR
#  error "DOVEKIE_MODULEDIR must be defined"
#endif

const char *dovekie_plugin_version = DOVECOT_ABI_VERSION;

struct dovekie_user_module dovekie_user_module =
	MODULE_CONTEXT_INIT(&mail_user_module_register);

struct dovekie_user *dovekie_user_get(struct mail_user *user)
{
	return MODULE_CONTEXT(user, dovekie_user_module);
}

static struct event_category event_category_dovekie = {
	.name = "dovekie",
};

static struct event *
dovekie_module_event(struct dovekie_user *duser, const char *module)
{
	struct event *event;

	if (module == NULL)
		return duser->event;
	event = hash_table_lookup(duser->module_events, module);
	if (event == NULL) {
		const char *name = p_strdup(duser->user->pool, module);

		event = event_create(duser->user->event);
		event_add_category(event, &event_category_dovekie);
		event_add_str(event, "dovekie_module", name);
		event_set_append_log_prefix(event,
			t_strdup_printf("dovekie-%s: ", name));
		hash_table_insert(duser->module_events, name, event);
	}
	return event;
}

void dovekie_event_log(struct event *event, enum dovekie_bridge_level level,
		       const char *message)
{
	switch (level) {
	case DOVEKIE_BRIDGE_DEBUG:
		e_debug(event, "%s", message);
		break;
	case DOVEKIE_BRIDGE_INFO:
		e_info(event, "%s", message);
		break;
	case DOVEKIE_BRIDGE_WARNING:
		e_warning(event, "%s", message);
		break;
	case DOVEKIE_BRIDGE_ERROR:
		e_error(event, "%s", message);
		break;
	}
}

static void
dovekie_host_log(void *context, enum dovekie_bridge_level level,
		 const char *module, const char *message)
{
	struct dovekie_user *duser = context;

	dovekie_event_log(dovekie_module_event(duser, module), level, message);
}

/* Module counters become named events: Dovecot's stats service can count
   them (metric { filter = event=dovekie_av_scan_finished }) and export
   them over OpenMetrics. They are sent at debug level, so they cost
   nothing unless a filter or mail_debug asks for them. */
static void
dovekie_host_emit(void *context, const char *module, const char *name,
		  const char *const *fields)
{
	struct dovekie_user *duser = context;
	struct event_passthrough *e;
	unsigned int i;
	uintmax_t number;

	e = event_create_passthrough(dovekie_module_event(duser, module))->
		set_name(name);
	for (i = 0; fields != NULL && fields[i] != NULL; i += 2) {
		if (str_to_uintmax(fields[i + 1], &number) == 0)
			e->add_int(fields[i], (intmax_t)number);
		else
			e->add_str(fields[i], fields[i + 1]);
	}
	e_debug(e->event(), "event %s", name);
}

/* The bridge's strings out: Dovecot's data stack, as every error_r. */
const char *dovekie_bridge_keep(const char *text)
{
	return t_strdup(text);
}

int64_t dovekie_host_now(void *context ATTR_UNUSED)
{
	return (int64_t)ioloop_time;
}

/* Tears down what dovekie_user_start() set up. Runs while the namespaces
   still exist: modules may save state while they are torn down. */
static void dovekie_user_stop(struct dovekie_user *duser)
{
	dovekie_bridge_destroy(&duser->bridge);
	/* The modules are gone: what they held back is committed now. */
	dovekie_kv_flush(duser);
	dovekie_kv_deinit(duser);
}

static void dovekie_user_free_events(struct dovekie_user *duser)
{
	struct hash_iterate_context *iter;
	const char *name;
	struct event *event;

	iter = hash_table_iterate_init(duser->module_events);
	while (hash_table_iterate(iter, duser->module_events, &name, &event))
		event_unref(&event);
	hash_table_iterate_deinit(&iter);
	hash_table_destroy(&duser->module_events);
	event_unref(&duser->event);
}

/* The state mailbox must be closed before the user's refcount is
   checked. */
static void dovekie_user_deinit_pre(struct mail_user *user)
{
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(user);

	/* The fts part's backend holds module objects: close them first. */
	dovekie_part_release_user(user);
	dovekie_user_stop(duser);
	if (duser->public_user != NULL)
		dovekie_user_stop(duser->public_user);
	duser->module_ctx.super.deinit_pre(user);
}

static void dovekie_user_deinit(struct mail_user *user)
{
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(user);

	/* Normally done by deinit_pre already; this covers users that were
	   never fully initialized. */
	dovekie_user_stop(duser);
	if (duser->public_user != NULL) {
		dovekie_user_stop(duser->public_user);
		dovekie_user_free_events(duser->public_user);
		i_free(duser->public_user->held_error);
	}
	dovekie_user_free_events(duser);
	i_free(duser->held_error);
	duser->module_ctx.super.deinit(user);
}

/* A POP3 session may delete mail, and deletions are what the retention
   module decides about: while a module guarding POP3 is not running, the
   login itself fails (the client gets -ERR [SYS/TEMP] before +OK), so no
   session can delete against the configured policy. */
static void dovekie_refuse_pop3_if_guarded(struct dovekie_user *duser)
{
	struct mail_user *user = duser->user;
	const char *module, *why;

	if (strcmp(user->service, "pop3") != 0 || user->error != NULL ||
	    !dovekie_bridge_guarded(duser->bridge, DOVEKIE_BRIDGE_GUARD_POP3,
				    &module, &why))
		return;
	/* Dovecot logs this error itself (without the user in its prefix),
	   so it names the user and is the refusal's one log line. */
	user->error = p_strdup_printf(user->pool, "dovekie: refusing the POP3 "
		"login of %s: module %s is configured but not running: %s",
		user->username, module, why);
}

/* The retention module refuses a POP3 login whose client name it does not
   accept. pop3 logs user->error once (as an error of the pop3 process)
   when the user cannot be set up, so the refusal is one log line. */
static void dovekie_retention_refuse_login(struct dovekie_user *duser)
{
	struct mail_user *user = duser->user;
	const char *why;

	if (strcmp(user->service, "pop3") != 0 || user->error != NULL)
		return;
	why = dovekie_bridge_retention_login_error(duser->bridge);
	if (why == NULL)
		return;
	user->error = p_strdup_printf(user->pool,
		"dovekie: refusing the POP3 login: %s", why);
}

static struct dovekie_user *dovekie_user_alloc(struct mail_user *user)
{
	struct dovekie_user *duser;

	duser = p_new(user->pool, struct dovekie_user, 1);
	duser->user = user;
	duser->event = event_create(user->event);
	event_add_category(duser->event, &event_category_dovekie);
	event_set_append_log_prefix(duser->event, "dovekie: ");
	hash_table_create(&duser->module_events, user->pool, 0, str_hash, strcmp);
	return duser;
}

static void
dovekie_user_start(struct dovekie_user *duser, const char *const *settings,
		   const char *const *userdb_keys)
{
	struct dovekie_bridge_host host;

	i_zero(&host);
	host.log = dovekie_host_log;
	host.now = dovekie_host_now;
	host.context = duser;
	host.kv_get = dovekie_kv_get;
	host.kv_set = dovekie_kv_set;
	host.kv_iter = dovekie_kv_iter;
	host.kv_defer = dovekie_kv_defer;
	host.emit = dovekie_host_emit;
	duser->bridge = dovekie_bridge_create(settings, userdb_keys,
					      DOVEKIE_MODULEDIR, &host);
}

/* The settings user's modules start with. The owner of a shared namespace
   (a mail_user Dovecot creates in the reader's session, user->creator set)
   gets the global values with the owner's own userdb fields, never the
   reader's (issue 16, invariant 11). */
static int
dovekie_user_settings(struct mail_user *user, const char *const **settings_r,
		      const char *const **userdb_keys_r, const char **error_r)
{
	if (user->creator != NULL) {
		if (dovekie_settings_owner(user, settings_r, userdb_keys_r, error_r) < 0) {
			*error_r = t_strdup_printf("cannot read the settings of %s, "
				"owner of a shared namespace of %s: %s", user->username,
				user->creator->username, *error_r);
			return -1;
		}
		return 0;
	}
	*userdb_keys_r = dovekie_settings_userdb_keys(user);
	if (dovekie_settings_user(user, settings_r, error_r) < 0) {
		*error_r = t_strdup_printf("cannot read the settings of %s: %s",
					   user->username, *error_r);
		return -1;
	}
	return 0;
}

/* Starts the user's modules with its settings. */
static void dovekie_user_begin(struct dovekie_user *duser, bool login)
{
	struct mail_user *user = duser->user;

	/* The reader's session logs for the owner: say whose modules speak. */
	if (user->creator != NULL)
		event_set_append_log_prefix(duser->event, t_strdup_printf(
			"dovekie: owner %s: ", user->username));
	T_BEGIN {
		static const char *const no_settings[] = { NULL };
		const char *const *settings, *const *userdb_keys, *error = NULL;

		if (dovekie_user_settings(user, &settings, &userdb_keys, &error) < 0 &&
		    login) {
			/* No settings, no modules: every one listed
			   would guard, but which are listed is unknown.
			   For a shared namespace's owner the error fails
			   the namespace: Dovecot logs it and the reader
			   cannot open the owner's mailboxes. */
			user->error = p_strdup_printf(user->pool, "dovekie: %s", error);
			settings = no_settings;
			userdb_keys = no_settings;
		} else if (error != NULL && !login) {
			/* A start that waited (2.4) comes after the namespace
			   was made, which can no longer fail. The modules the
			   global settings list start failed, so what they
			   guard refuses, as for a bad value: a userdb key
			   that may never come from userdb is the loader's
			   way to fail every listed module. */
			e_error(duser->event, "%s", error);
			if (dovekie_settings_global(&settings, &error) < 0)
				settings = no_settings;
			userdb_keys = t_strsplit("dovekie_module_dir", " ");
		}
		dovekie_user_start(duser, settings, userdb_keys);
	} T_END;
	/* A login is refused for the session's own user, never for the
	   owner of a shared namespace it opens (nor lmtp's raw mail user). */
	if (login && user->creator == NULL && !user->autocreated) T_BEGIN {
		dovekie_part_refuse_missing(duser);
		dovekie_refuse_pop3_if_guarded(duser);
		dovekie_retention_refuse_login(duser);
	} T_END;
	e_debug(duser->event, "%u module(s) loaded for service %s",
		dovekie_bridge_module_count(duser->bridge), user->service);
}

static void dovekie_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct dovekie_user *duser;

	duser = dovekie_user_alloc(user);
	duser->module_ctx.super = *v;
	user->vlast = &duser->module_ctx.super;
	v->deinit = dovekie_user_deinit;
	v->deinit_pre = dovekie_user_deinit_pre;
	MODULE_CONTEXT_SET(user, dovekie_user_module, duser);
#if DOVECOT_PREREQ(2, 4, 0)
	/* 2.4 runs this hook for the owner of a shared namespace inside
	   mail_storage_service_lookup_next(), before shared-storage.c sets
	   owner->creator: read now, the owner's settings would be the
	   reader's. An autocreated user's modules start at its first
	   namespace use (dovekie_namespace_user), when it is known whose
	   user it is. */
	if (user->autocreated && user->creator == NULL) {
		duser->start_pending = TRUE;
		return;
	}
#endif
	dovekie_user_begin(duser, TRUE);
}

/* duser's modules, started now if their start waited (see above). */
static struct dovekie_user *dovekie_user_started(struct dovekie_user *duser)
{
	if (duser != NULL && duser->start_pending) {
		duser->start_pending = FALSE;
		dovekie_user_begin(duser, FALSE);
	}
	return duser;
}

/* The modules for a public namespace of the session: the global settings,
   never the session user's userdb overrides, started at the first public
   mailbox. A failure to read them leaves no settings, so every listed
   module guards (reads refused) as for a bad value. */
static struct dovekie_user *dovekie_user_public(struct dovekie_user *duser)
{
	struct dovekie_user *pub;

	if (duser->public_user != NULL)
		return duser->public_user;
	pub = dovekie_user_alloc(duser->user);
	event_set_append_log_prefix(pub->event, "dovekie: public: ");
	T_BEGIN {
		static const char *const no_settings[] = { NULL };
		const char *const *settings, *error;

		if (dovekie_settings_public(duser->user, &settings, &error) < 0) {
			e_error(duser->event, "cannot read the global settings for "
				"public namespaces: %s", error);
			settings = no_settings;
		}
		dovekie_user_start(pub, settings, no_settings);
	} T_END;
	duser->public_user = pub;
	return pub;
}

struct dovekie_user *dovekie_namespace_user(struct mail_namespace *ns)
{
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(ns->user);
	struct dovekie_user *owner;

	if (duser == NULL)
		return NULL;
	switch (ns->type) {
	case MAIL_NAMESPACE_TYPE_PRIVATE:
		break;
	case MAIL_NAMESPACE_TYPE_SHARED:
		/* The shared namespaces' template (prefix shared/) has no
		   owner and no mail. */
		owner = ns->owner == NULL ? NULL : DOVEKIE_USER_CONTEXT(ns->owner);
		if (owner != NULL)
			return dovekie_user_started(owner);
		break;
	case MAIL_NAMESPACE_TYPE_PUBLIC:
		return dovekie_user_public(duser);
	}
	return dovekie_user_started(duser);
}

static struct mail_storage_hooks dovekie_mail_storage_hooks = {
	.mail_user_created = dovekie_mail_user_created,
	.mailbox_allocated = dovekie_mailbox_allocated,
	.mail_allocated = dovekie_mail_allocated,
};

/* The per-protocol parts (dovekie-part.h) are plugins of their own that
   depend on this one; they register themselves from their init. */
void dovekie_plugin_init(struct module *module)
{
	mail_storage_hooks_add(module, &dovekie_mail_storage_hooks);
}

void dovekie_plugin_deinit(void)
{
	mail_storage_hooks_remove(&dovekie_mail_storage_hooks);
}
