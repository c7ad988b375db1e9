/* Which per-protocol parts run, and the refusal when one that is needed
 * does not (see dovekie-part.h). */
#include "lib.h"
#include "array.h"
#include "mail-user.h"
#include "mail-storage-settings.h"
#include "mail-storage-hooks.h"
#include "dovekie-plugin.h"
#include "dovekie-retention.h"
#include "dovekie-part.h"

#if DOVECOT_PREREQ(2, 4, 0)
#  include "settings.h"
#  include "fts-settings.h"
/* The fts plugin's settings, to tell whether `fts dovekie { }` selects our
   backend. Weak because the fts plugin is genuinely optional here: this
   core plugin loads in every process, with or without fts in
   mail_plugins, and without the fts plugin no fts driver is in effect,
   so there is nothing to refuse. */
#  pragma weak fts_setting_parser_info
#endif

struct dovekie_part_state {
	bool registered;
	const struct mail_storage_hooks *hooks;
	void (*user_release)(struct mail_user *user);
};

static struct dovekie_part_state dovekie_parts[DOVEKIE_PART_COUNT];
/* doveadm dovekie check reports what would be refused, and must get the
   user to say so. */
static bool dovekie_part_report_only;

void dovekie_part_register(enum dovekie_part part,
			   const struct mail_storage_hooks *hooks,
			   void (*user_release)(struct mail_user *user))
{
	i_assert(part < DOVEKIE_PART_COUNT);
	dovekie_parts[part].registered = TRUE;
	dovekie_parts[part].hooks = hooks;
	dovekie_parts[part].user_release = user_release;
}

void dovekie_part_release_user(struct mail_user *user)
{
	unsigned int i;

	for (i = 0; i < DOVEKIE_PART_COUNT; i++) {
		if (dovekie_parts[i].user_release != NULL)
			dovekie_parts[i].user_release(user);
	}
}

void dovekie_part_unregister(enum dovekie_part part)
{
	i_assert(part < DOVEKIE_PART_COUNT);
	i_zero(&dovekie_parts[part]);
}

static bool dovekie_part_runs(struct mail_user *user, enum dovekie_part part)
{
	const struct mail_storage_hooks *hooks;

	if (!dovekie_parts[part].registered)
		return FALSE;
	if (dovekie_parts[part].hooks == NULL)
		return TRUE;
	/* A part loaded in the process runs for the users whose
	   mail_plugins name it: their hooks were chosen by that list. */
	array_foreach_elem(&user->hooks, hooks) {
		if (hooks == dovekie_parts[part].hooks)
			return TRUE;
	}
	return FALSE;
}

/* POP3 deletes and reads mail: retention decides what a DELE does and what
   the listing shows, a read guard's refusal needs the pop3 part's reply
   (else pop3 says the message was expunged). */
static bool dovekie_part_pop3_needed(struct dovekie_bridge *bridge)
{
	return dovekie_bridge_has_retention(bridge) ||
		dovekie_bridge_wants_read(bridge) ||
		dovekie_bridge_wants_expunge(bridge) ||
		dovekie_bridge_guarded(bridge, DOVEKIE_BRIDGE_GUARD_READ |
				       DOVEKIE_BRIDGE_GUARD_POP3, NULL, NULL);
}

/* A delivery is judged before it is stored (real SMTP replies, DIVERT,
   DISCARD) only by the lmtp part. */
static bool dovekie_part_lmtp_needed(struct dovekie_bridge *bridge)
{
	return dovekie_bridge_wants_save(bridge) ||
		dovekie_bridge_guarded(bridge, DOVEKIE_BRIDGE_GUARD_SAVE, NULL, NULL);
}

#if DOVECOT_PREREQ(2, 4, 0)
static bool dovekie_part_user_has_plugin(struct mail_user *user, const char *name)
{
	return str_array_find(settings_boollist_get(&user->set->mail_plugins), name);
}

static bool dovekie_part_fts_needed(struct mail_user *user)
{
	const struct fts_settings *set;
	const char *name, *error;
	bool found = FALSE;

	/* Without the fts plugin no backend is chosen. */
	if (&fts_setting_parser_info == NULL ||
	    !dovekie_part_user_has_plugin(user, "fts"))
		return FALSE;
	if (settings_get(user->event, &fts_setting_parser_info, 0, &set, &error) < 0) {
		/* The fts plugin fails this user's search setup itself. */
		e_debug(user->event, "dovekie: %s", error);
		return FALSE;
	}
	if (array_is_created(&set->fts)) {
		array_foreach_elem(&set->fts, name) {
			if (strcmp(name, "dovekie") == 0)
				found = TRUE;
		}
	}
	settings_free(set);
	return found;
}
#  define DOVEKIE_PART_POP3_FIX \
	"protocol pop3 { mail_plugins { dovekie_pop3 = yes } }"
#  define DOVEKIE_PART_LMTP_FIX \
	"protocol lmtp { mail_plugins { dovekie_lmtp = yes } }"
#  define DOVEKIE_PART_FTS_FIX \
	"mail_plugins { fts = yes dovekie = yes dovekie_fts = yes }, " \
	"or remove the fts dovekie { } filter"
#else
static bool dovekie_part_fts_needed(struct mail_user *user)
{
	const char *name = mail_user_plugin_getenv(user, "fts");

	/* Without the fts plugin no backend is chosen. */
	return name != NULL && strcmp(name, "dovekie") == 0 &&
		str_array_find(t_strsplit_spaces(user->set->mail_plugins, ", "), "fts");
}
#  define DOVEKIE_PART_POP3_FIX \
	"protocol pop3 { mail_plugins = $mail_plugins dovekie_pop3 }"
#  define DOVEKIE_PART_LMTP_FIX \
	"protocol lmtp { mail_plugins = $mail_plugins dovekie_lmtp }"
#  define DOVEKIE_PART_FTS_FIX \
	"mail_plugins = $mail_plugins fts dovekie dovekie_fts, or remove fts = dovekie"
#endif

static const struct dovekie_part_info {
	const char *plugin, *protocol, *what, *why, *fix;
} dovekie_part_infos[DOVEKIE_PART_COUNT] = {
	[DOVEKIE_PART_POP3] = {
		"dovekie_pop3", "pop3", "POP3 login",
		"the user's dovekie modules act in POP3", DOVEKIE_PART_POP3_FIX,
	},
	[DOVEKIE_PART_LMTP] = {
		"dovekie_lmtp", "lmtp", "delivery",
		"the user's dovekie modules judge deliveries", DOVEKIE_PART_LMTP_FIX,
	},
	[DOVEKIE_PART_FTS] = {
		"dovekie_fts", NULL, "session",
		"the fts settings select the dovekie backend", DOVEKIE_PART_FTS_FIX,
	},
};

bool dovekie_part_protocol_needed(enum dovekie_part part, struct dovekie_bridge *bridge)
{
	switch (part) {
	case DOVEKIE_PART_POP3:
		return dovekie_part_pop3_needed(bridge);
	case DOVEKIE_PART_LMTP:
		return dovekie_part_lmtp_needed(bridge);
	case DOVEKIE_PART_FTS:
		break;
	}
	return FALSE;
}

const char *dovekie_part_plugin(enum dovekie_part part)
{
	i_assert(part < DOVEKIE_PART_COUNT);
	return dovekie_part_infos[part].plugin;
}

const char *dovekie_part_protocol(enum dovekie_part part)
{
	i_assert(part < DOVEKIE_PART_COUNT);
	return dovekie_part_infos[part].protocol;
}

const char *dovekie_part_fix(enum dovekie_part part)
{
	i_assert(part < DOVEKIE_PART_COUNT);
	return dovekie_part_infos[part].fix;
}

/* Whether the user's modules need a part that does not run for the user's
   process (its service), and which: a protocol's part in that protocol,
   the fts part wherever the fts settings select dovekie. */
static bool dovekie_part_missing_for(struct dovekie_user *duser, enum dovekie_part *part_r)
{
	struct mail_user *user = duser->user;
	const char *protocol;
	enum dovekie_part part;

	for (part = 0; part < DOVEKIE_PART_COUNT; part++) {
		protocol = dovekie_part_infos[part].protocol;
		if (protocol != NULL && strcmp(user->service, protocol) != 0)
			continue;
		if (dovekie_part_runs(user, part))
			continue;
		if (protocol != NULL ? dovekie_part_protocol_needed(part, duser->bridge) :
		    dovekie_part_fts_needed(user)) {
			*part_r = part;
			return TRUE;
		}
	}
	return FALSE;
}

static const char *dovekie_part_missing_text(struct mail_user *user, enum dovekie_part part)
{
	const struct dovekie_part_info *info = &dovekie_part_infos[part];

	return t_strdup_printf("the plugin %s is not loaded for %s, and %s; set %s",
			       info->plugin, user->service, info->why, info->fix);
}

void dovekie_part_set_report_only(bool report_only)
{
	dovekie_part_report_only = report_only;
}

const char *dovekie_part_missing(struct dovekie_user *duser)
{
	enum dovekie_part part;

	if (!dovekie_part_missing_for(duser, &part))
		return NULL;
	return dovekie_part_missing_text(duser->user, part);
}

void dovekie_part_refuse_missing(struct dovekie_user *duser)
{
	struct mail_user *user = duser->user;
	enum dovekie_part part;

	if (dovekie_part_report_only || user->error != NULL ||
	    !dovekie_part_missing_for(duser, &part))
		return;
	/* Dovecot logs user->error once, as the session's (or the
	   delivery's) failure: that is the refusal's one log line. */
	user->error = p_strdup_printf(user->pool, "dovekie: refusing the %s of %s: %s",
				      dovekie_part_infos[part].what, user->username,
				      dovekie_part_missing_text(user, part));
}
