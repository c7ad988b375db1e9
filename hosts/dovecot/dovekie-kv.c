/* Module state as private INBOX attributes.
 *
 * Why attributes: they are Dovecot's own per-user key-value state
 * (mail_attribute_dict), so they survive restarts, travel with dsync
 * replication, and live under vendor/vendor.dovecot/pvt/, which IMAP
 * clients cannot read or change (RFC 5464 METADATA only sees non-pvt keys).
 */
#include "lib.h"
#include "hash.h"
#include "str.h"
#include "mail-namespace.h"
#include "mail-storage-private.h"
#include "mailbox-attribute.h"
#include "dovekie-plugin.h"

#define DOVEKIE_KV_PREFIX MAILBOX_ATTRIBUTE_PREFIX_DOVECOT_PVT "dovekie/"
/* Held kv_defer writes committed at once: with the file dict every commit
   rewrites the whole file, so one commit per write made a pass over N
   unscanned messages O(N^2). */
#define DOVEKIE_KV_HELD_MAX 256

static const char *dovekie_kv_key(const char *module, const char *key)
{
	return t_strconcat(DOVEKIE_KV_PREFIX, module, "/", key, NULL);
}

/* An INBOX instance the session already has open: the POP3 session's, or
   the one an IMAP session selected. Opening a second instance of a large
   INBOX is not free (its index is mapped again, Maildir reads its whole
   uidlist again), and one per kv call made a FETCH over N messages
   O(N^2). Attribute transactions of our own on that mailbox do not touch
   its transactions. Borrowed for one kv call (or batch) only. */
static struct mailbox *dovekie_kv_open_inbox(struct mail_namespace *ns)
{
	struct mailbox *box;

	for (box = ns->storage->mailboxes; box != NULL; box = box->next) {
		if (box->list == ns->list && box->opened && box->inbox_user &&
		    !box->deleting && !box->mailbox_deleted)
			return box;
	}
	return NULL;
}

/* Opens INBOX for one kv call. Not cached: an open mailbox holds a
   reference on the user, and mail_user_deinit() insists on being the last
   holder before any deinit hook could close it. */
static int dovekie_kv_box(struct dovekie_user *duser, const char **error_r)
{
	struct mail_namespace *ns;

	if (duser->kv_batch != NULL)
		return 0; /* the batch's box stays open */
	i_assert(duser->kv_box == NULL);
	ns = mail_namespace_find_inbox(duser->user->namespaces);
	if (ns == NULL) {
		*error_r = "user has no INBOX namespace";
		return -1;
	}
	duser->kv_box = dovekie_kv_open_inbox(ns);
	if (duser->kv_box != NULL) {
		duser->kv_box_borrowed = TRUE;
		return 0;
	}
	/* A mailbox of our own, so state changes never ride on (or abort)
	   the transaction of the command that triggered the hook. */
	duser->kv_box = mailbox_alloc(ns->list, "INBOX", MAILBOX_FLAG_IGNORE_ACLS);
	if (mailbox_open(duser->kv_box) < 0) {
		*error_r = t_strdup_printf("cannot open INBOX for state: %s",
			mailbox_get_last_internal_error(duser->kv_box, NULL));
		mailbox_free(&duser->kv_box);
		return -1;
	}
	return 0;
}

static int dovekie_kv_get_int(void *context, const char *module, const char *key,
		   const char **value_r, const char **error_r)
{
	struct dovekie_user *duser = context;
	struct mail_attribute_value value;
	int ret;

	const char *full_key = dovekie_kv_key(module, key);
	char *held;

	if (hash_table_is_created(duser->kv_held) &&
	    (held = hash_table_lookup(duser->kv_held, full_key)) != NULL) {
		*value_r = held[0] == '\0' ? NULL : t_strdup(held);
		return held[0] == '\0' ? 0 : 1;
	}
	if (dovekie_kv_box(duser, error_r) < 0)
		return -1;
	ret = mailbox_attribute_get(duser->kv_box, MAIL_ATTRIBUTE_TYPE_PRIVATE,
				    full_key, &value);
	if (ret < 0) {
		*error_r = t_strdup(mailbox_get_last_internal_error(duser->kv_box, NULL));
		return -1;
	}
	*value_r = ret > 0 ? value.value : NULL;
	return ret > 0 && value.value != NULL ? 1 : 0;
}

static int dovekie_kv_set_int(void *context, const char *module, const char *key,
		   const char *value, const char **error_r)
{
	struct dovekie_user *duser = context;
	struct mailbox_transaction_context *t;
	struct mail_attribute_value attr;
	const char *full_key;
	int ret;

	full_key = dovekie_kv_key(module, key);
	if (hash_table_is_created(duser->kv_held)) {
		char *held_key, *held_value;

		if (hash_table_lookup_full(duser->kv_held, full_key,
					   &held_key, &held_value)) {
			hash_table_remove(duser->kv_held, held_key);
			i_free(held_key);
			i_free(held_value);
		}
	}
	if (dovekie_kv_box(duser, error_r) < 0)
		return -1;
	t = duser->kv_batch != NULL ? duser->kv_batch :
		mailbox_transaction_begin(duser->kv_box,
					  MAILBOX_TRANSACTION_FLAG_EXTERNAL,
					  "dovekie state");
	if (value == NULL) {
		ret = mailbox_attribute_unset(t, MAIL_ATTRIBUTE_TYPE_PRIVATE,
					      full_key);
	} else {
		i_zero(&attr);
		attr.value = value;
		ret = mailbox_attribute_set(t, MAIL_ATTRIBUTE_TYPE_PRIVATE,
					    full_key, &attr);
	}
	if (ret < 0) {
		*error_r = t_strdup(mailbox_get_last_internal_error(duser->kv_box, NULL));
		/* A batch is dropped whole by dovekie_kv_batch_end. */
		if (t != duser->kv_batch)
			mailbox_transaction_rollback(&t);
		return -1;
	}
	if (t == duser->kv_batch)
		return 0;
	if (mailbox_transaction_commit(&t) < 0) {
		*error_r = t_strdup(mailbox_get_last_internal_error(duser->kv_box, NULL));
		return -1;
	}
	return 0;
}

/* Commits the held writes in one transaction. The table is emptied
   whatever happens: held writes are a cache, and a failed commit is not
   tried again with every later write. */
static int dovekie_kv_flush_int(struct dovekie_user *duser, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct hash_iterate_context *iter;
	struct mail_attribute_value attr;
	char *key, *value;
	int ret = 0;

	if (!hash_table_is_created(duser->kv_held) ||
	    hash_table_count(duser->kv_held) == 0)
		return 0;
	if (dovekie_kv_box(duser, error_r) < 0)
		ret = -1;
	t = ret < 0 ? NULL : duser->kv_batch != NULL ? duser->kv_batch :
		mailbox_transaction_begin(duser->kv_box,
					  MAILBOX_TRANSACTION_FLAG_EXTERNAL,
					  "dovekie state");
	iter = hash_table_iterate_init(duser->kv_held);
	while (hash_table_iterate(iter, duser->kv_held, &key, &value)) {
		if (ret == 0) {
			i_zero(&attr);
			attr.value = value[0] == '\0' ? NULL : value;
			if ((value[0] == '\0' ?
			     mailbox_attribute_unset(t, MAIL_ATTRIBUTE_TYPE_PRIVATE, key) :
			     mailbox_attribute_set(t, MAIL_ATTRIBUTE_TYPE_PRIVATE, key, &attr)) < 0) {
				*error_r = t_strdup(mailbox_get_last_internal_error(duser->kv_box, NULL));
				ret = -1;
			}
		}
		i_free(key);
		i_free(value);
	}
	hash_table_iterate_deinit(&iter);
	hash_table_clear(duser->kv_held, TRUE);
	if (t == NULL || t == duser->kv_batch)
		return ret;
	if (ret < 0)
		mailbox_transaction_rollback(&t);
	else if (mailbox_transaction_commit(&t) < 0) {
		*error_r = t_strdup(mailbox_get_last_internal_error(duser->kv_box, NULL));
		ret = -1;
	}
	return ret;
}

static int dovekie_kv_iter_int(void *context, const char *module, const char *prefix,
		    dovekie_bridge_kv_func_t *func, void *func_context,
		    const char **error_r)
{
	struct dovekie_user *duser = context;
	struct mailbox_attribute_iter *iter;
	struct mail_attribute_value value;
	ARRAY_TYPE(const_string) keys;
	const char *ns_prefix, *key, *const *keyp;
	int ret = 0;

	/* What the iteration lists is what is committed. A flush of held
	   writes leaves the box it wrote through for us (opening a second
	   one was an assertion failure: a panic when a DB change pruned the
	   cache in a session with held verdicts). */
	if (dovekie_kv_flush_int(duser, error_r) < 0)
		return -1;
	if (duser->kv_box == NULL && dovekie_kv_box(duser, error_r) < 0)
		return -1;
	ns_prefix = dovekie_kv_key(module, "");

	/* Collect the keys first: the callback may change the state. */
	t_array_init(&keys, 64);
	iter = mailbox_attribute_iter_init(duser->kv_box,
		MAIL_ATTRIBUTE_TYPE_PRIVATE, t_strconcat(ns_prefix, prefix, NULL));
	while ((key = mailbox_attribute_iter_next(iter)) != NULL) {
		/* The attribute code returns keys relative to the whole
		   iteration prefix (namespace + prefix): put ours back. */
		key = t_strconcat(prefix, key, NULL);
		array_push_back(&keys, &key);
	}
	if (mailbox_attribute_iter_deinit(&iter) < 0) {
		*error_r = t_strdup(mailbox_get_last_internal_error(duser->kv_box, NULL));
		return -1;
	}
	array_foreach(&keys, keyp) {
		ret = mailbox_attribute_get(duser->kv_box,
			MAIL_ATTRIBUTE_TYPE_PRIVATE,
			t_strconcat(ns_prefix, *keyp, NULL), &value);
		if (ret < 0) {
			*error_r = t_strdup(mailbox_get_last_internal_error(duser->kv_box, NULL));
			return -1;
		}
		if (ret == 0 || value.value == NULL)
			continue; /* deleted meanwhile */
		if (!func(func_context, *keyp, value.value))
			break;
	}
	return 0;
}

void dovekie_kv_deinit(struct dovekie_user *duser)
{
	if (duser->kv_batch != NULL)
		mailbox_transaction_rollback(&duser->kv_batch);
	if (duser->kv_box_borrowed)
		duser->kv_box = NULL;
	duser->kv_box_borrowed = FALSE;
	if (duser->kv_box != NULL)
		mailbox_free(&duser->kv_box);
}

/* Closes the kv box after one call, unless a batch holds it open. */
static void dovekie_kv_call_done(struct dovekie_user *duser)
{
	if (duser->kv_batch == NULL)
		dovekie_kv_deinit(duser);
}

int dovekie_kv_batch_begin(struct dovekie_user *duser, const char **error_r)
{
	i_assert(duser->kv_batch == NULL);
	if (dovekie_kv_box(duser, error_r) < 0)
		return -1;
	duser->kv_batch = mailbox_transaction_begin(duser->kv_box,
		MAILBOX_TRANSACTION_FLAG_EXTERNAL, "dovekie state");
	return 0;
}

int dovekie_kv_batch_end(struct dovekie_user *duser, bool commit, const char **error_r)
{
	int ret = 0;

	if (duser->kv_batch == NULL)
		return 0;
	if (!commit)
		mailbox_transaction_rollback(&duser->kv_batch);
	else if (mailbox_transaction_commit(&duser->kv_batch) < 0) {
		*error_r = t_strdup(mailbox_get_last_internal_error(duser->kv_box, NULL));
		ret = -1;
	}
	dovekie_kv_deinit(duser);
	return ret;
}

/* The value of a get stays valid after the mailbox is freed: the
   attribute code returns it on the data stack, and callers are inside
   the bridge call's data stack frame. */
int dovekie_kv_get(void *context, const char *module, const char *key,
		   const char **value_r, const char **error_r)
{
	int ret = dovekie_kv_get_int(context, module, key, value_r, error_r);
	if (ret > 0)
		*value_r = t_strdup(*value_r);
	dovekie_kv_call_done(context);
	return ret;
}

int dovekie_kv_set(void *context, const char *module, const char *key,
		   const char *value, const char **error_r)
{
	int ret = dovekie_kv_set_int(context, module, key, value, error_r);
	dovekie_kv_call_done(context);
	return ret;
}

int dovekie_kv_iter(void *context, const char *module, const char *prefix,
		    dovekie_bridge_kv_func_t *func, void *func_context,
		    const char **error_r)
{
	int ret = dovekie_kv_iter_int(context, module, prefix, func,
				      func_context, error_r);
	dovekie_kv_call_done(context);
	return ret;
}

int dovekie_kv_defer(void *context, const char *module, const char *key,
		     const char *value, const char **error_r)
{
	struct dovekie_user *duser = context;
	const char *full_key = dovekie_kv_key(module, key);
	char *old_key, *old_value;
	int ret = 0;

	/* Inside a batch the write joins it. */
	if (duser->kv_batch != NULL)
		return dovekie_kv_set(context, module, key, value, error_r);
	if (!hash_table_is_created(duser->kv_held))
		hash_table_create(&duser->kv_held, default_pool, 0, str_hash, strcmp);
	if (hash_table_lookup_full(duser->kv_held, full_key, &old_key, &old_value)) {
		hash_table_update(duser->kv_held, old_key, i_strdup(value == NULL ? "" : value));
		i_free(old_value);
	} else {
		hash_table_insert(duser->kv_held, i_strdup(full_key),
				  i_strdup(value == NULL ? "" : value));
	}
	if (hash_table_count(duser->kv_held) >= DOVEKIE_KV_HELD_MAX) {
		ret = dovekie_kv_flush_int(duser, error_r);
		dovekie_kv_call_done(duser);
	}
	return ret;
}

void dovekie_kv_flush(struct dovekie_user *duser)
{
	const char *error;

	if (!hash_table_is_created(duser->kv_held))
		return;
	T_BEGIN {
		if (dovekie_kv_flush_int(duser, &error) < 0) {
			e_warning(duser->event, "cannot save cached state: %s",
				  error);
		}
		dovekie_kv_call_done(duser);
	} T_END;
	hash_table_destroy(&duser->kv_held);
}
