/* The retention records in INBOX's own index: the "dovekie-retention"
 * index extension, a header that holds the client table and one
 * fixed-size record per message (layouts: modules/retention's
 * dovekie-retention-record.h; this file only moves bytes).
 *
 * Why there (doc/design-notes.md has the measurements): a record is read
 * in O(1) with the message's index record, it is written inside the
 * mailbox transaction of the change it belongs to (pop3's QUIT, the
 * expiry run), and Dovecot drops it with the message, resets it with
 * UIDVALIDITY and never copies it with COPY or MOVE.
 */
#include "lib.h"
#include "mail-index.h"
#include "mail-storage-private.h"
#include "mail-storage-settings.h"
#include "dovekie-plugin.h"
#include "dovekie-retention.h"

#define DOVEKIE_RETENTION_EXT_NAME "dovekie-retention"

uint32_t dovekie_retention_ext_id(struct mailbox *box)
{
	return mail_index_ext_register(box->index, DOVEKIE_RETENTION_EXT_NAME,
				       DOVEKIE_BRIDGE_RETENTION_TABLE_SIZE,
				       DOVEKIE_BRIDGE_RETENTION_PACKED_SIZE,
				       sizeof(uint64_t));
}

size_t dovekie_retention_index_table(struct mail_index_view *view, uint32_t ext_id,
				     unsigned char table[DOVEKIE_BRIDGE_RETENTION_TABLE_SIZE])
{
	const void *data;
	size_t size;

	memset(table, 0, DOVEKIE_BRIDGE_RETENTION_TABLE_SIZE);
	mail_index_get_header_ext(view, ext_id, &data, &size);
	if (data == NULL)
		return 0;
	memcpy(table, data, I_MIN(size, DOVEKIE_BRIDGE_RETENTION_TABLE_SIZE));
	return size;
}

void dovekie_retention_index_record(struct mail_index_view *view, uint32_t seq,
				    uint32_t ext_id, unsigned char *packed)
{
	const void *data;

	mail_index_lookup_ext(view, seq, ext_id, &data, NULL);
	if (data == NULL)
		memset(packed, 0, DOVEKIE_BRIDGE_RETENTION_PACKED_SIZE);
	else
		memcpy(packed, data, DOVEKIE_BRIDGE_RETENTION_PACKED_SIZE);
}

/* Reads from the index as it is now, not as the transaction's view saw
   it when it began (pop3's is as old as the session): another session's
   records of the same messages and new client slots are not undone. */
static int
index_get(struct dovekie_bridge_retention_store *store, uint32_t uid,
	  unsigned char *packed, const char **error_r ATTR_UNUSED)
{
	struct dovekie_retention_index *idx =
		container_of(store, struct dovekie_retention_index, store);
	uint32_t seq;

	if (!mail_index_lookup_seq(idx->fresh, uid, &seq)) {
		memset(packed, 0, DOVEKIE_BRIDGE_RETENTION_PACKED_SIZE);
		return 0;
	}
	dovekie_retention_index_record(idx->fresh, seq, idx->ext_id, packed);
	return 0;
}

static int
index_put(struct dovekie_bridge_retention_store *store, uint32_t uid,
	  const unsigned char *packed, const char **error_r ATTR_UNUSED)
{
	struct dovekie_retention_index *idx =
		container_of(store, struct dovekie_retention_index, store);
	uint32_t seq;

	/* A message expunged meanwhile takes its record with it. */
	if (mail_index_lookup_seq(idx->t->view, uid, &seq))
		mail_index_update_ext(idx->t->itrans, seq, idx->ext_id, packed, NULL);
	return 0;
}

/* Writes only the 4-byte words that changed (a slot's name, its last
   QUIT): two sessions that commit near each other do not undo each
   other's slots. Whole words: Dovecot 2.3's log writer puts several
   header ranges of one transaction back to back, while its reader
   expects each to be padded to 4 bytes ("ext hdr update: invalid record
   size"); ranges of whole words need no padding. */
static int
index_put_table(struct dovekie_bridge_retention_store *store,
		const unsigned char *table, const char **error_r ATTR_UNUSED)
{
	struct dovekie_retention_index *idx =
		container_of(store, struct dovekie_retention_index, store);
	size_t i = 0, start, size = sizeof(idx->table);

	/* Kept by Dovecot, and zero-filled, as the header grows. */
	if (idx->stored_size < size) {
		mail_index_ext_resize_hdr(idx->t->itrans, idx->ext_id, size);
		idx->stored_size = size;
	}
	while (i < size) {
		if (memcmp(table + i, idx->table + i, 4) == 0) {
			i += 4;
			continue;
		}
		for (start = i; i < size && memcmp(table + i, idx->table + i, 4) != 0; i += 4) ;
		mail_index_update_header_ext(idx->t->itrans, idx->ext_id, start,
					     table + start, i - start);
	}
	memcpy(idx->table, table, size);
	return 0;
}

void dovekie_retention_index_init(struct dovekie_retention_index *idx,
				  struct mailbox_transaction_context *t)
{
	i_zero(idx);
	idx->t = t;
	idx->ext_id = dovekie_retention_ext_id(t->box);
	/* A failed refresh leaves the last map: as fresh as it gets. */
	(void)mail_index_refresh(t->box->index);
	idx->fresh = mail_index_view_open(t->box->index);
	idx->stored_size = dovekie_retention_index_table(idx->fresh, idx->ext_id, idx->table);
	/* A new extension gets the registered size. */
	if (idx->stored_size == 0)
		idx->stored_size = sizeof(idx->table);
	idx->store.table = idx->table;
	idx->store.get = index_get;
	idx->store.put = index_put;
	idx->store.put_table = index_put_table;
}

void dovekie_retention_index_deinit(struct dovekie_retention_index *idx)
{
	if (idx->fresh != NULL)
		mail_index_view_close(&idx->fresh);
}

int dovekie_retention_index_check(struct mailbox *box, const char **error_r)
{
	if (mail_index_is_in_memory(box->index)) {
		*error_r = "the retention records need on-disk mailbox indexes "
			"(mail_location has INDEX=MEMORY, or the index cannot be "
			"written): they would be lost at the end of the session";
		return -1;
	}
	return 0;
}

#if DOVECOT_PREREQ(2, 4, 0)
/* dovekie never kept retention records in attributes on 2.4: nothing to
   move. */
int dovekie_retention_migrate(struct dovekie_user *duser ATTR_UNUSED,
			      struct mailbox *box ATTR_UNUSED,
			      const char **error_r ATTR_UNUSED)
{
	return 0;
}
#else
int dovekie_retention_migrate(struct dovekie_user *duser, struct mailbox *box,
			      const char **error_r)
{
	const struct mail_storage_settings *set =
		mail_user_set_get_storage_set(box->storage->user);
	struct dovekie_retention_index idx;
	struct mailbox_transaction_context *t;
	unsigned char table[DOVEKIE_BRIDGE_RETENTION_TABLE_SIZE];
	unsigned int moved;
	const char *ignored;
	int ret;

	/* Without an attribute dict there never were kv records. */
	if (set->mail_attribute_dict[0] == '\0' ||
	    !dovekie_bridge_has_retention(duser->bridge))
		return 0;
	/* The index as the open read it: once migrated, that is all a
	   session pays (no sync of its own before pop3's). */
	dovekie_retention_index_table(box->view, dovekie_retention_ext_id(box), table);
	if (dovekie_bridge_retention_table_migrated(table))
		return 0;
	if (mailbox_sync(box, 0) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	dovekie_retention_index_table(box->view, dovekie_retention_ext_id(box), table);
	if (dovekie_bridge_retention_table_migrated(table))
		return 0;

	/* The old entries are removed in a kv batch, committed only after
	   the index holds the records: a failure in between leaves both,
	   and the mark keeps the old ones from being read again. */
	if (dovekie_kv_batch_begin(duser, error_r) < 0)
		return -1;
	t = mailbox_transaction_begin(box, 0, "dovekie retention migrate");
	dovekie_retention_index_init(&idx, t);
	ret = dovekie_bridge_retention_migrate(duser->bridge, &idx.store, &moved, error_r);
	dovekie_retention_index_deinit(&idx);
	if (ret < 0) {
		mailbox_transaction_rollback(&t);
		(void)dovekie_kv_batch_end(duser, FALSE, &ignored);
		return -1;
	}
	if (mailbox_transaction_commit(&t) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		(void)dovekie_kv_batch_end(duser, FALSE, &ignored);
		return -1;
	}
	if (dovekie_kv_batch_end(duser, TRUE, error_r) < 0) {
		e_warning(duser->event, "retention: %u record(s) moved into the index, "
			  "but removing the old attributes failed: %s", moved, *error_r);
	}
	if (mailbox_sync(box, 0) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	return 0;
}
#endif
