/* dovekie_* settings out of Dovecot 2.3's plugin { } block or 2.4's
   declared settings (see dovekie-settings.h). */
#include "lib.h"
#include "array.h"
#include "mail-user.h"
#include "dovekie-settings.h"

#if DOVECOT_PREREQ(2, 4, 0)
#  include "settings.h"
#  include "settings-parser.h"
#  include "master-service.h"
#  include "dovekie-settings-table.h"
#  include <stddef.h>
#else
#  include "str.h"
#  include "var-expand.h"
#  include "master-service.h"
#  include "master-service-settings.h"
#  include "mail-storage-service.h"
#  include "dovekie-doveadm.h"
#endif

/* "plugin/key=value" (2.3) or "key=value": the key, if it is ours. */
const char *dovekie_settings_userdb_key(const char *field)
{
	const char *p;

	if (strncmp(field, "plugin/", 7) == 0)
		field += 7;
	if (strncmp(field, "dovekie_", 8) != 0)
		return NULL;
	p = strchr(field, '=');
	return p == NULL ? field : t_strdup_until(field, p);
}

const char *const *dovekie_settings_userdb_keys(struct mail_user *user)
{
	ARRAY_TYPE(const_string) keys;
	const char *key;
	unsigned int i;

	t_array_init(&keys, 8);
	for (i = 0; user->userdb_fields != NULL && user->userdb_fields[i] != NULL; i++) {
		key = dovekie_settings_userdb_key(user->userdb_fields[i]);
		if (key != NULL)
			array_push_back(&keys, &key);
	}
	array_append_zero(&keys);
	return array_front(&keys);
}

/* Sets key to value in kv (pairs, not yet NULL-terminated). */
void dovekie_settings_kv_put(ARRAY_TYPE(const_string) *kv, const char *key,
			     const char *value)
{
	const char **pairs;
	unsigned int i, count;

	pairs = array_get_modifiable(kv, &count);
	for (i = 0; i + 1 < count; i += 2) {
		if (strcmp(pairs[i], key) == 0) {
			pairs[i + 1] = value;
			return;
		}
	}
	array_push_back(kv, &key);
	array_push_back(kv, &value);
}


#if DOVECOT_PREREQ(2, 4, 0)

/* Each setting is declared with its type, so doveconf refuses a value of
   the wrong type (not a number, an unknown choice) before Dovecot starts, and
   a bad value from userdb fails the user's session. Ranges and lengths stay
   the loader's to check: a value out of range fails the module that declared
   it (and what it guards refuses), as on 2.3. The values go back to the
   loader as text. Fields are indexed by the setting's number; each setting
   uses the one array of its type. */
struct dovekie_settings {
	pool_t pool;
	const char *strs[DOVEKIE_SETTING_COUNT];	/* strings and choices */
	uintmax_t uints[DOVEKIE_SETTING_COUNT];
	uoff_t sizes[DOVEKIE_SETTING_COUNT];
	bool bools[DOVEKIE_SETTING_COUNT];
};

enum dovekie_setting_kind { KIND_STR, KIND_UINT, KIND_SIZE, KIND_BOOL };

#define FIELD(array, i) (offsetof(struct dovekie_settings, array) + \
			 (i) * sizeof(((struct dovekie_settings *)0)->array[0]))
#define DOVEKIE_SETTING_STR(i, name, dflt) \
	{ .type = SET_STR, .key = name, .offset = FIELD(strs, i) },
#define DOVEKIE_SETTING_ENUM(i, name, dflt) \
	{ .type = SET_ENUM, .key = name, .offset = FIELD(strs, i) },
#define DOVEKIE_SETTING_UINT(i, name, dflt) \
	{ .type = SET_UINTMAX, .key = name, .offset = FIELD(uints, i) },
#define DOVEKIE_SETTING_SIZE(i, name, dflt) \
	{ .type = SET_SIZE, .key = name, .offset = FIELD(sizes, i) },
#define DOVEKIE_SETTING_BOOL(i, name, dflt) \
	{ .type = SET_BOOL, .key = name, .offset = FIELD(bools, i) },
static const struct setting_define dovekie_setting_defines[] = {
	DOVEKIE_SETTINGS
	SETTING_DEFINE_LIST_END
};
#undef DOVEKIE_SETTING_STR
#undef DOVEKIE_SETTING_ENUM
#undef DOVEKIE_SETTING_UINT
#undef DOVEKIE_SETTING_SIZE
#undef DOVEKIE_SETTING_BOOL

#define DOVEKIE_SETTING_STR(i, name, dflt) .strs[i] = dflt,
#define DOVEKIE_SETTING_ENUM(i, name, dflt) .strs[i] = dflt,
#define DOVEKIE_SETTING_UINT(i, name, dflt) .uints[i] = dflt,
#define DOVEKIE_SETTING_SIZE(i, name, dflt) .sizes[i] = dflt,
#define DOVEKIE_SETTING_BOOL(i, name, dflt) .bools[i] = dflt,
static const struct dovekie_settings dovekie_default_settings = {
	DOVEKIE_SETTINGS
};
#undef DOVEKIE_SETTING_STR
#undef DOVEKIE_SETTING_ENUM
#undef DOVEKIE_SETTING_UINT
#undef DOVEKIE_SETTING_SIZE
#undef DOVEKIE_SETTING_BOOL

#define DOVEKIE_SETTING_STR(i, name, dflt) [i] = { name, KIND_STR },
#define DOVEKIE_SETTING_ENUM(i, name, dflt) [i] = { name, KIND_STR },
#define DOVEKIE_SETTING_UINT(i, name, dflt) [i] = { name, KIND_UINT },
#define DOVEKIE_SETTING_SIZE(i, name, dflt) [i] = { name, KIND_SIZE },
#define DOVEKIE_SETTING_BOOL(i, name, dflt) [i] = { name, KIND_BOOL },
static const struct {
	const char *key;
	enum dovekie_setting_kind kind;
} dovekie_setting_keys[DOVEKIE_SETTING_COUNT] = {
	DOVEKIE_SETTINGS
};
#undef DOVEKIE_SETTING_STR
#undef DOVEKIE_SETTING_ENUM
#undef DOVEKIE_SETTING_UINT
#undef DOVEKIE_SETTING_SIZE
#undef DOVEKIE_SETTING_BOOL

const struct setting_parser_info dovekie_setting_parser_info = {
	.name = "dovekie",
	.defines = dovekie_setting_defines,
	.defaults = &dovekie_default_settings,
	.struct_size = sizeof(struct dovekie_settings),
	.pool_offset1 = 1 + offsetof(struct dovekie_settings, pool),
};

/* Setting i of set as the loader takes it. A choice's default is stored
   as Dovecot's "default:other:..." list; its value is the first. */
static const char *dovekie_setting_text(const struct dovekie_settings *set, unsigned int i)
{
	const char *value;

	switch (dovekie_setting_keys[i].kind) {
	case KIND_UINT:
		return dec2str(set->uints[i]);
	case KIND_SIZE:
		return dec2str(set->sizes[i]);
	case KIND_BOOL:
		return set->bools[i] ? "yes" : "no";
	case KIND_STR:
		break;
	}
	value = set->strs[i] != NULL ? set->strs[i] : "";
	if (strchr(value, ':') != NULL &&
	    dovekie_setting_defines[i].type == SET_ENUM)
		return t_strcut(value, ':');
	return value;
}

static bool dovekie_setting_declared(const char *key)
{
	unsigned int i;

	for (i = 0; i < DOVEKIE_SETTING_COUNT; i++) {
		if (strcmp(dovekie_setting_keys[i].key, key) == 0)
			return TRUE;
	}
	return FALSE;
}

/* The dovekie_* fields of userdb that no module declared (a misspelt key):
   Dovecot drops them without a word, so they go to the loader as they
   came, which fails the listed modules as on 2.3 rather than ignore what
   the admin meant to set. */
static void dovekie_settings_add_undeclared(ARRAY_TYPE(const_string) *kv,
					    const char *const *userdb_fields)
{
	const char *key, *value;

	for (; userdb_fields != NULL && *userdb_fields != NULL; userdb_fields++) {
		key = dovekie_settings_userdb_key(*userdb_fields);
		if (key == NULL || dovekie_setting_declared(key))
			continue;
		value = strchr(*userdb_fields, '=');
		value = value == NULL ? "" : value + 1;
		array_push_back(kv, &key);
		array_push_back(kv, &value);
	}
}

/* The pairs for the loader: the values that differ from the declared
   default (the loader knows the defaults), every key userdb gave, and the
   undeclared ones userdb gave. */
static int dovekie_settings_from(struct event *event, const char *const *userdb_fields,
				 const char *const *userdb_keys,
				 const char *const **kv_r, const char **error_r)
{
	const struct dovekie_settings *set;
	ARRAY_TYPE(const_string) kv;
	const char *key, *value;
	unsigned int i;

	if (settings_get(event, &dovekie_setting_parser_info, 0, &set, error_r) < 0)
		return -1;
	t_array_init(&kv, 16);
	for (i = 0; i < DOVEKIE_SETTING_COUNT; i++) {
		key = dovekie_setting_keys[i].key;
		value = t_strdup(dovekie_setting_text(set, i));
		if (strcmp(value, dovekie_setting_text(&dovekie_default_settings, i)) == 0 &&
		    (userdb_keys == NULL || !str_array_find(userdb_keys, key)))
			continue;
		array_push_back(&kv, &key);
		array_push_back(&kv, &value);
	}
	settings_free(set);
	dovekie_settings_add_undeclared(&kv, userdb_fields);
	array_append_zero(&kv);
	*kv_r = array_front(&kv);
	return 0;
}

int dovekie_settings_user(struct mail_user *user, const char *const **kv_r,
			  const char **error_r)
{
	return dovekie_settings_from(user->event, user->userdb_fields,
				     dovekie_settings_userdb_keys(user), kv_r, error_r);
}

int dovekie_settings_public(struct mail_user *user ATTR_UNUSED,
			    const char *const **kv_r, const char **error_r)
{
	return dovekie_settings_global(kv_r, error_r);
}


int dovekie_settings_global(const char *const **kv_r, const char **error_r)
{
	return dovekie_settings_from(master_service_get_event(master_service), NULL, NULL,
				     kv_r, error_r);
}

#else /* Dovecot 2.3 */

/* The dovekie_* pairs of a plugin { } block (userdb overrides are already
   merged into it). */
static const char *const *
dovekie_settings_view(const char *const *pairs, unsigned int count)
{
	ARRAY_TYPE(const_string) kv;
	unsigned int i;

	t_array_init(&kv, 16);
	for (i = 0; pairs != NULL && i + 1 < count; i += 2) {
		if (strncmp(pairs[i], "dovekie_", 8) == 0) {
			array_push_back(&kv, &pairs[i]);
			array_push_back(&kv, &pairs[i + 1]);
		}
	}
	array_append_zero(&kv);
	return array_front(&kv);
}

int dovekie_settings_user(struct mail_user *user, const char *const **kv_r,
			  const char **error_r ATTR_UNUSED)
{
	const char *const *envs = NULL;
	unsigned int count = 0;

	if (array_is_created(&user->set->plugin_envs))
		envs = array_get(&user->set->plugin_envs, &count);
	*kv_r = dovekie_settings_view(envs, count);
	return 0;
}


/* The global plugin { } block as the creator's session read it before its
   userdb fields were applied: Dovecot's settings cache for the same
   service and connection. */
static int
dovekie_settings_pre_userdb(struct mail_user *creator, pool_t pool,
			    const char *const **envs_r, unsigned int *count_r,
			    const char **error_r)
{
	struct mail_storage_service_input input;
	const struct setting_parser_info *user_info;
	const struct setting_parser_context *parser;
	const struct mail_user_settings *set;
	void **sets;

	if (creator->_service_user == NULL) {
		*error_r = "the session has no storage service user";
		return -1;
	}
	input = *mail_storage_service_user_get_input(creator->_service_user);
	if (mail_storage_service_read_settings(
		    mail_storage_service_user_get_service_ctx(creator->_service_user),
		    &input, pool, &user_info, &parser, error_r) < 0)
		return -1;
	sets = master_service_settings_parser_get_others(master_service, parser);
	set = sets[0];
	*envs_r = NULL;
	*count_r = 0;
	if (array_is_created(&set->plugin_envs))
		*envs_r = array_get(&set->plugin_envs, count_r);
	return 0;
}

/* The global values as session read them, with the owner's userdb fields
   over them when owner is not NULL, expanded for user. */
static int
dovekie_settings_build(struct mail_user *user, struct mail_user *session,
		       struct mail_user *owner, const char *const **kv_r,
		       const char *const **userdb_keys_r, const char **error_r)
{
	ARRAY_TYPE(const_string) kv, keys;
	const char *const *envs, *value, *home, *error;
	unsigned int i, count;
	string_t *str;
	int ret;

	t_array_init(&kv, 16);
	t_array_init(&keys, 8);
	ret = dovekie_settings_pre_userdb(session, user->pool, &envs, &count, &error);
	if (ret == 0) {
		for (i = 0; envs != NULL && i + 1 < count; i += 2) {
			if (strncmp(envs[i], "dovekie_", 8) == 0)
				dovekie_settings_kv_put(&kv, t_strdup(envs[i]), t_strdup(envs[i + 1]));
		}
		if (owner != NULL)
			ret = dovekie_settings_owner_overlay(owner, &kv, &keys, &error);
	}
	if (ret < 0) {
		*error_r = error;
		return -1;
	}
	/* Expanded for user as Dovecot expands a user's plugin { }
	   values (%u, %h, ...). */
	str = t_str_new(128);
	for (i = 1; i < array_count(&kv); i += 2) {
		value = array_idx_elem(&kv, i);
		if (strchr(value, '%') == NULL)
			continue;
		if (var_has_key(value, 'h', "home") &&
		    mail_user_get_home(user, &home) <= 0) {
			*error_r = t_strdup_printf("%s uses the home directory (%%h), "
				"which userdb does not give for %s",
				array_idx_elem(&kv, i - 1), user->username);
			return -1;
		}
		str_truncate(str, 0);
		if (var_expand_with_funcs(str, value, mail_user_var_expand_table(user),
					  mail_user_var_expand_func_table, user,
					  &error) <= 0) {
			*error_r = t_strdup_printf("cannot expand %s = '%s': %s",
				array_idx_elem(&kv, i - 1), value, error);
			return -1;
		}
		value = t_strdup(str_c(str));
		array_idx_set(&kv, i, &value);
	}
	array_append_zero(&kv);
	array_append_zero(&keys);
	*kv_r = array_front(&kv);
	*userdb_keys_r = array_front(&keys);
	return 0;
}

int dovekie_settings_owner(struct mail_user *owner, const char *const **kv_r,
			   const char *const **userdb_keys_r, const char **error_r)
{
	i_assert(owner->creator != NULL);
	return dovekie_settings_build(owner, owner->creator, owner, kv_r,
				      userdb_keys_r, error_r);
}

int dovekie_settings_public(struct mail_user *user, const char *const **kv_r,
			    const char **error_r)
{
	const char *const *keys;

	return dovekie_settings_build(user, user, NULL, kv_r, &keys, error_r);
}

int dovekie_settings_global(const char *const **kv_r, const char **error_r)
{
	if (doveadm_settings == NULL) {
		*error_r = "no doveadm settings";
		return -1;
	}
	const char *const *envs = NULL;
	unsigned int count = 0;

	if (array_is_created(&doveadm_settings->plugin_envs))
		envs = array_get(&doveadm_settings->plugin_envs, &count);
	*kv_r = dovekie_settings_view(envs, count);
	return 0;
}

#endif

const char *dovekie_settings_user_get(struct mail_user *user, const char *key)
{
	const char *const *kv, *error;

	if (dovekie_settings_user(user, &kv, &error) < 0)
		return NULL;
	for (; kv[0] != NULL; kv += 2) {
		if (strcmp(kv[0], key) == 0)
			return kv[1][0] == '\0' ? NULL : kv[1];
	}
	return NULL;
}
