/* Where the host reads dovekie_* settings from Dovecot.
 *
 * The loader takes settings as "key", "value" pairs and validates them
 * itself (a bad value fails the module that declared it). Dovecot 2.3 keeps
 * them in the free-form plugin { } block; 2.4 accepts only settings that a
 * settings module declared, so dovekie ships one (libdovekie_settings.so,
 * made from the loader's and the modules' tables) and reads the values
 * back with settings_get(). Both give the loader the same pairs.
 */
#ifndef DOVEKIE_SETTINGS_H
#define DOVEKIE_SETTINGS_H

#include "array.h"

struct mail_user;

/* The user's dovekie_* settings (global values, userdb overrides applied),
   NULL-terminated pairs on the data stack. -1 with *error_r when Dovecot
   cannot give them (2.4: a bad value from userdb, say). */
int dovekie_settings_user(struct mail_user *user, const char *const **kv_r,
			  const char **error_r);
/* The dovekie_* keys the user's own userdb record gives (data stack): the
   loader refuses global-only settings among them and names the origin. */
const char *const *dovekie_settings_userdb_keys(struct mail_user *user);
/* The settings of owner, the mail_user Dovecot creates for the owner of a
   shared namespace (owner->creator is the session's user), on the data
   stack like dovekie_settings_user(). 2.3: the global plugin { } values as
   the creator's session read them before its userdb fields were applied,
   with the owner's own userdb fields (looked up over Dovecot's auth-master
   connection) over them, expanded for the owner; *userdb_keys_r are the
   owner's keys. Never the creator's overrides. -1 with *error_r when the
   owner cannot be looked up (the caller fails closed). 2.4: the same, with
   the global values of the configuration (Dovecot gives owner the
   creator's settings, userdb fields included); no expansion, as 2.4's
   userdb gives its fields expanded. In dovekie-settings-owner.c. */
int dovekie_settings_owner(struct mail_user *owner, const char *const **kv_r,
			   const char *const **userdb_keys_r, const char **error_r);
/* The settings for a public namespace of user's session: the global
   values, never user's userdb overrides (2.3: as the session read them
   before its userdb fields were applied, expanded for user). */
int dovekie_settings_public(struct mail_user *user, const char *const **kv_r,
			    const char **error_r);
/* The global dovekie_* settings, for doveadm (no user). */
int dovekie_settings_global(const char *const **kv_r, const char **error_r);
/* One setting of the user, or NULL when unset (or empty). */
const char *dovekie_settings_user_get(struct mail_user *user, const char *key);

/* For the owner's settings: */
/* The key of a userdb field ("plugin/key=value" on 2.3, or "key=value")
   when it is a dovekie_* one, else NULL (data stack). */
const char *dovekie_settings_userdb_key(const char *field);
/* Sets key to value in kv (pairs, not yet NULL-terminated); both borrowed. */
void dovekie_settings_kv_put(ARRAY_TYPE(const_string) *kv, const char *key,
			     const char *value);
/* Puts owner's dovekie_* userdb fields over the pairs in kv and their
   keys into keys (data stack), looked up over the auth-master connection
   Dovecot looks the owner's home up with; userdb not knowing owner adds
   nothing. -1 with *error_r when the lookup fails. */
int dovekie_settings_owner_overlay(struct mail_user *owner, ARRAY_TYPE(const_string) *kv,
				   ARRAY_TYPE(const_string) *keys, const char **error_r);

#endif
