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
#  include "dovekie-doveadm.h"
#endif

/* "plugin/key=value" (2.3) or "key=value": the key, if it is ours. */
static const char *dovekie_userdb_key(const char *field)
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
		key = dovekie_userdb_key(user->userdb_fields[i]);
		if (key != NULL)
			array_push_back(&keys, &key);
	}
	array_append_zero(&keys);
	return array_front(&keys);
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

/* The pairs for the loader: the values that differ from the declared
   default (the loader knows the defaults), and every key userdb gave. */
static int dovekie_settings_from(struct event *event, const char *const *userdb_keys,
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
	array_append_zero(&kv);
	*kv_r = array_front(&kv);
	return 0;
}

int dovekie_settings_user(struct mail_user *user, const char *const **kv_r,
			  const char **error_r)
{
	return dovekie_settings_from(user->event, dovekie_settings_userdb_keys(user),
				     kv_r, error_r);
}

int dovekie_settings_global(const char *const **kv_r, const char **error_r)
{
	return dovekie_settings_from(master_service_get_event(master_service), NULL,
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
