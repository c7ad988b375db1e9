/* The host's per-protocol parts, each its own Dovecot plugin that depends
 * on this one (doc/design-notes.md, "The host seam"):
 *
 *   dovekie_pop3  lib95_dovekie_pop3_plugin.so  pop3 only: the session's end,
 *                 the reply to a refused read, the retention listing and QUIT
 *   dovekie_lmtp  lib95_dovekie_lmtp_plugin.so  lmtp only: deliveries judged
 *                 before they are stored
 *   dovekie_fts   lib95_dovekie_fts_plugin.so   the fts backend "dovekie"
 *                 (needs Dovecot's fts plugin)
 *
 * A part registers itself here from its plugin init. When a session's
 * modules need a part that does not run for the session (the admin left it
 * out of mail_plugins), the session is refused: a guard that cannot run
 * refuses rather than lets mail through.
 */
#ifndef DOVEKIE_PART_H
#define DOVEKIE_PART_H

struct mail_storage_hooks;
struct mail_user;
struct dovekie_user;
struct dovekie_bridge;

enum dovekie_part {
	DOVEKIE_PART_POP3,
	DOVEKIE_PART_LMTP,
	DOVEKIE_PART_FTS,
};
#define DOVEKIE_PART_COUNT 3

/* From a part's plugin init. hooks are the mail storage hooks the part
   added: it runs for a user whose hooks hold them (its name is in the
   user's mail_plugins). NULL: the part hooks the whole process (lmtp's
   client hook), so being loaded is running. user_release, if not NULL,
   is called for every user before the core stops the user's modules,
   so that the part lets go of module objects it holds (a part's own
   deinit_pre would come too late: hooks of later plugins are inner, so
   they run after the core's). */
void dovekie_part_register(enum dovekie_part part,
			   const struct mail_storage_hooks *hooks,
			   void (*user_release)(struct mail_user *user));
/* From the part's plugin deinit. */
void dovekie_part_unregister(enum dovekie_part part);

/* The registered parts' user_release, in the core's deinit_pre. */
void dovekie_part_release_user(struct mail_user *user);

/* In mail_user_created, for a session's own user (not an autocreated or
   shared-namespace owner) whose modules were started: sets user->error,
   naming the missing plugin and the setting to fix, when the modules need
   a part that does not run for this user. Nothing when user->error is
   already set. */
void dovekie_part_refuse_missing(struct dovekie_user *duser);
/* What dovekie_part_refuse_missing would refuse for: why and what to set,
   or NULL when nothing is missing (for doveadm dovekie check, whose own
   process sees the fts part: doveadm loads mail_plugins). */
const char *dovekie_part_missing(struct dovekie_user *duser);
/* For doveadm dovekie check: refuse nothing, so that the check gets the
   user and reports what dovekie_part_missing says instead. */
void dovekie_part_set_report_only(bool report_only);

/* For doveadm dovekie check, which cannot load a part of another
   protocol: whether the modules of bridge act in the protocol that part
   serves (pop3, lmtp; FALSE for the fts part), the part's plugin name,
   its protocol (NULL for the fts part) and the setting that loads it. */
bool dovekie_part_protocol_needed(enum dovekie_part part, struct dovekie_bridge *bridge);
const char *dovekie_part_plugin(enum dovekie_part part);
const char *dovekie_part_protocol(enum dovekie_part part);
const char *dovekie_part_fix(enum dovekie_part part);

#endif
