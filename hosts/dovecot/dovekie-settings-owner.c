/* The owner's settings in a shared namespace (dovekie-settings.h). Apart
   from dovekie-settings.c because this needs lib-storage (the auth-master
   connection of mail-user.c), which Dovecot 2.4's config process, where
   libdovekie_settings.so carries dovekie-settings.c, does not load. */
#include "lib.h"
#include "array.h"
#include "auth-master.h"
#include "mail-user.h"
#include "dovekie-settings.h"

/* The owner's userdb fields, by the channel Dovecot looks the owner's home
   up with. 0 when userdb does not know the owner (no fields). */
static int
dovekie_settings_owner_userdb(struct mail_user *owner, pool_t pool,
			      const char *const **fields_r, const char **error_r)
{
	struct auth_user_info info;
	const char *username;
	int ret;

	if (mail_user_auth_master_conn == NULL) {
		*error_r = "no userdb connection to look the owner up";
		return -1;
	}
	i_zero(&info);
#if DOVECOT_PREREQ(2, 4, 0)
	info.protocol = owner->protocol;
#else
	info.service = owner->service;
#endif
	if (owner->creator->conn.local_ip != NULL)
		info.local_ip = *owner->creator->conn.local_ip;
	if (owner->creator->conn.remote_ip != NULL)
		info.remote_ip = *owner->creator->conn.remote_ip;
	ret = auth_master_user_lookup(mail_user_auth_master_conn, owner->username,
				      &info, pool, &username, fields_r);
	if (ret < 0) {
		*error_r = t_strdup_printf("userdb lookup of %s failed: %s",
			owner->username, *fields_r != NULL && (*fields_r)[0] != NULL ?
			(*fields_r)[0] : "internal error");
		return -1;
	}
	if (ret == 0)
		*fields_r = NULL;
	return ret;
}

int dovekie_settings_owner_overlay(struct mail_user *owner, ARRAY_TYPE(const_string) *kv,
				   ARRAY_TYPE(const_string) *keys, const char **error_r)
{
	const char *const *fields = NULL, *key, *value, *error;
	unsigned int i;
	pool_t pool;
	int ret;

	pool = pool_alloconly_create("dovekie owner settings", 2048);
	ret = dovekie_settings_owner_userdb(owner, pool, &fields, &error);
	for (i = 0; ret > 0 && fields != NULL && fields[i] != NULL; i++) {
		key = dovekie_settings_userdb_key(fields[i]);
		if (key == NULL)
			continue;
		value = strchr(fields[i], '=');
		value = t_strdup(value == NULL ? "" : value + 1);
		key = t_strdup(key);
		dovekie_settings_kv_put(kv, key, value);
		array_push_back(keys, &key);
	}
	if (ret < 0)
		*error_r = t_strdup(error);
	pool_unref(&pool);
	return ret < 0 ? -1 : 0;
}

#if DOVECOT_PREREQ(2, 4, 0)
/* Dovecot 2.4 builds the owner's mail_user from the reader's settings
   instance, the reader's userdb fields included (shared-storage.c looks the
   owner up for the home only). So the owner's settings are built here, as
   on 2.3: the global values (the configuration, no userdb) with the owner's
   own userdb fields over them, from a lookup on the channel Dovecot uses
   for the owner's home. The loader checks them as at the owner's login. */
int dovekie_settings_owner(struct mail_user *owner, const char *const **kv_r,
			   const char *const **userdb_keys_r, const char **error_r)
{
	ARRAY_TYPE(const_string) kv, keys;
	const char *const *global;
	unsigned int i;

	if (dovekie_settings_global(&global, error_r) < 0)
		return -1;
	t_array_init(&kv, 16);
	t_array_init(&keys, 8);
	for (i = 0; global[i] != NULL && global[i + 1] != NULL; i += 2)
		dovekie_settings_kv_put(&kv, global[i], global[i + 1]);
	if (dovekie_settings_owner_overlay(owner, &kv, &keys, error_r) < 0)
		return -1;
	array_append_zero(&kv);
	array_append_zero(&keys);
	*kv_r = array_front(&kv);
	*userdb_keys_r = array_front(&keys);
	return 0;
}
#endif
