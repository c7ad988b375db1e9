/* Retention in the pop3 process: the per-client listing filter and the
 * recording of a session's RETRs and DELEs at QUIT.
 *
 *   open      pop3's INBOX must keep its index on disk (the records live
 *             there, dovekie-retention-index.c); records of an older
 *             version are moved there from the kv store once.
 *   listing   pop3 builds its message list with one search on INBOX (opened
 *             with MAILBOX_FLAG_POP3_SESSION) before its transaction exists;
 *             the module gets the index's client table once, then our
 *             search_next_nonblock hands it each message's record (an
 *             index lookup by sequence), skips what it hides and
 *             remembers msgnum -> UID.
 *   hide      pop3 asks that search for NOT KEYWORD <pop3_deleted_flag>,
 *             and Dovecot answers it by building every message's keyword
 *             name array: at 60,000 messages that alone cost more than
 *             the 5% the listing may add (doc/design-notes.md). So our
 *             search_init turns that one argument into ALL (releasing
 *             the keyword reference pop3's mail_search_args_init took)
 *             and search_next_nonblock, which looks up our record
 *             anyway, skips a message whose index keyword indexes hold
 *             the keyword (mail_index_lookup_keywords: the record's
 *             bitmap read in place). Same list, same order; pop3's
 *             deleted_kw and msgnum map come from the setting, not from
 *             the argument.
 *   keyword   pop3 only builds a correct sequence set for a filtered list
 *             when pop3_deleted_flag is set; so when it is empty, this
 *             session's copy of the pop3 settings gets the module's hide
 *             keyword ($PopHidden). The delete type stays what it was
 *             (expunge), so DELE still reaches the expunge hook, which the
 *             module answers with KEEP.
 *   download  a message whose stream a POP3 fetch read to its end: RETR,
 *             or TOP with enough lines (fetchmail fetches with TOP), but
 *             not a TOP that stops short. pop3 allocates one mail per
 *             fetch; its free() tells whether the stream hit EOF.
 *   QUIT      pop3's QUIT commits its transaction (\Seen flags, the
 *             expunges of DELE) before it answers. Our transaction_commit
 *             of that one transaction records the session first: the
 *             downloaded UIDs (and RETRed msgnums of seen_bitmask) and the
 *             DELEd msgnums (deleted_bitmask) go to the module as UIDs,
 *             whose records it writes into pop3's own transaction (index
 *             extension updates), and the UIDs it returns get the keyword
 *             there too: one commit, all or nothing. If the module
 *             cannot record, pop3's transaction is rolled back and the
 *             commit fails; if the commit fails, nothing was written:
 *             either way pop3 answers -ERR and nothing changed (RFC 1939
 *             UPDATE state). A session without QUIT records nothing.
 *   reply     with dele = ignore, "messages deleted" would be false: once
 *             pop3's sync after the commit succeeded (our sync_deinit),
 *             we answer QUIT ourselves and close the connection, so
 *             pop3's own line is not sent.
 *   expiry    in destroy, after the reply: the expiry check runs, if the
 *             module says something can be due from INBOX's table (which
 *             keeps the earliest download of any record: O(1), no mail
 *             and no record read).
 *   login     a login whose client name the module does not accept is
 *             refused by the core plugin's mail_user_created hook
 *             (dovekie-plugin.c), before pop3 answers the login.
 *
 * Part of the dovekie_pop3 plugin (dovekie-pop3.c), which only the pop3
 * binary loads.
 */
#include "lib.h"
#include "array.h"
#include "istream.h"
#include "mail-index.h"
#include "mail-search.h"
#include "mail-storage-private.h"
#include "mail-storage-hooks.h"
#include "pop3-common.h"
#include "pop3-client.h"
#include "pop3-settings.h"
#include "dovekie-plugin.h"
#include "dovekie-retention.h"

#define RETENTION_QUIT_IGNORED_REPLY \
	"+OK Logging out, messages kept (deletion is disabled on this server)."
#define RETENTION_QUIT_FAILED_ERROR \
	"Could not save the session, nothing was changed; try again later"

#define RETENTION_CLIENT_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, dovekie_retention_pop3_module)
#define RETENTION_USER_CONTEXT(obj) \
	MODULE_CONTEXT(obj, dovekie_retention_user_module)
#define RETENTION_BOX_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, dovekie_retention_storage_module)

struct dovekie_retention_client {
	union pop3_module_context module_ctx;
	struct client *client;
	struct dovekie_user *duser;
	/* [msgnum] = UID of the session's listing */
	ARRAY(uint32_t) listing;
	struct mail_search_context *listing_search;
	bool listing_complete;
	/* UIDs whose whole message was sent (see "download" above) */
	ARRAY(uint32_t) downloaded;
	/* QUIT's commit: running (our own commits inside it pass through),
	   done (recorded and committed) */
	bool quit_committing:1;
	bool quit_recorded:1;
	/* answer QUIT ourselves after pop3's sync (dele = ignore) */
	bool quit_reply_ignored:1;
};

struct dovekie_retention_user {
	union mail_user_module_context module_ctx;
	struct dovekie_retention_client *rclient;
};

struct dovekie_retention_mailbox {
	union mailbox_module_context module_ctx;
	struct dovekie_retention_client *rclient;
	uint32_t ext_id;
	/* the listing search's hide keyword (index keyword index), if our
	   search_init took that filter over from Dovecot's search */
	bool filter_keyword;
	unsigned int hide_keyword_idx;
	ARRAY_TYPE(keyword_indexes) keywords;
};

struct dovekie_retention_mail {
	union mail_module_context module_ctx;
	struct dovekie_retention_client *rclient;
	/* the stream handed to pop3's fetch; owned by the mail */
	struct istream *body;
	uint32_t body_uid;
};

static MODULE_CONTEXT_DEFINE_INIT(dovekie_retention_pop3_module, &pop3_module_register);
static MODULE_CONTEXT_DEFINE_INIT(dovekie_retention_user_module, &mail_user_module_register);
static MODULE_CONTEXT_DEFINE_INIT(dovekie_retention_storage_module,
				  &mail_storage_module_register);
static MODULE_CONTEXT_DEFINE_INIT(dovekie_retention_mail_module, &mail_module_register);
#define RETENTION_MAIL_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, dovekie_retention_mail_module)
static pop3_client_created_func_t *next_hook_client_created;

static int
retention_transaction_commit(struct mailbox_transaction_context *t,
			     struct mail_transaction_commit_changes *changes_r);
static int
retention_sync_deinit(struct mailbox_sync_context *ctx,
		      struct mailbox_sync_status *status_r);

/* ---- the listing ---- */

/* pop3's listing argument is exactly one NOT KEYWORD (pop3-client.c's
   read_mailbox); anything else is left to Dovecot. */
static void retention_take_keyword_filter(struct dovekie_retention_mailbox *rbox,
					  struct mailbox *box,
					  struct mail_search_args *args)
{
	struct mail_search_arg *arg = args->args;

	rbox->filter_keyword = FALSE;
	if (arg == NULL || arg->next != NULL || arg->type != SEARCH_KEYWORDS ||
	    !arg->match_not || arg->value.str == NULL)
		return;
	/* A keyword the index does not know is on no message: nothing to
	   skip (mail_index_keyword_lookup leaves the index unchanged). */
	rbox->filter_keyword = mail_index_keyword_lookup(box->index, arg->value.str,
							 &rbox->hide_keyword_idx);
	if (arg->initialized.keywords != NULL)
		mailbox_keywords_unref(&arg->initialized.keywords);
	arg->type = SEARCH_ALL;
	arg->match_not = FALSE;
	if (rbox->filter_keyword && !array_is_created(&rbox->keywords))
		p_array_init(&rbox->keywords, box->pool, 8);
}

static bool retention_has_keyword(struct dovekie_retention_mailbox *rbox,
				  struct mail_index_view *view, uint32_t seq)
{
	const unsigned int *idx;
	unsigned int i, count;

	mail_index_lookup_keywords(view, seq, &rbox->keywords);
	idx = array_get(&rbox->keywords, &count);
	for (i = 0; i < count; i++) {
		if (idx[i] == rbox->hide_keyword_idx)
			return TRUE;
	}
	return FALSE;
}

static struct mail_search_context *
retention_search_init(struct mailbox_transaction_context *t,
		      struct mail_search_args *args,
		      const enum mail_sort_type *sort_program,
		      enum mail_fetch_field wanted_fields,
		      struct mailbox_header_lookup_ctx *wanted_headers)
{
	struct dovekie_retention_mailbox *rbox = RETENTION_BOX_CONTEXT(t->box);
	struct dovekie_retention_client *rclient = rbox->rclient;
	struct mail_search_context *ctx;
	/* pop3 sets client->trans when its listing succeeded: every search
	   before that is a (re)try of the listing. (client->trans is NULL
	   again after QUIT, hence listing_complete.) */
	bool listing = rclient != NULL && !rclient->listing_complete &&
		rclient->client->trans == NULL &&
		rclient->client->mailbox == t->box;

	if (listing)
		retention_take_keyword_filter(rbox, t->box, args);
	ctx = rbox->module_ctx.super.search_init(t, args, sort_program,
						 wanted_fields, wanted_headers);
	if (listing) {
		unsigned char table[DOVEKIE_BRIDGE_RETENTION_TABLE_SIZE];

		array_clear(&rclient->listing);
		rclient->listing_search = ctx;
		rclient->listing_complete = FALSE;
		rbox->ext_id = dovekie_retention_ext_id(t->box);
		dovekie_retention_index_table(t->view, rbox->ext_id, table);
		dovekie_bridge_retention_pop3_listing(rclient->duser->bridge, table);
	}
	return ctx;
}

static bool
retention_search_next_nonblock(struct mail_search_context *ctx,
			       struct mail **mail_r, bool *tryagain_r)
{
	struct dovekie_retention_mailbox *rbox =
		RETENTION_BOX_CONTEXT(ctx->transaction->box);
	struct dovekie_retention_client *rclient = rbox->rclient;
	unsigned char packed[DOVEKIE_BRIDGE_RETENTION_PACKED_SIZE];

	for (;;) {
		if (!rbox->module_ctx.super.search_next_nonblock(ctx, mail_r,
								 tryagain_r))
			return FALSE;
		if (rclient == NULL || ctx != rclient->listing_search)
			return TRUE;
		if (rbox->filter_keyword &&
		    retention_has_keyword(rbox, ctx->transaction->view, (*mail_r)->seq))
			continue;
		dovekie_retention_index_record(ctx->transaction->view,
					       (*mail_r)->seq, rbox->ext_id, packed);
		if (!dovekie_bridge_retention_pop3_hidden(rclient->duser->bridge,
							  (*mail_r)->uid, packed))
			break;
	}
	array_push_back(&rclient->listing, &(*mail_r)->uid);
	return TRUE;
}

static int retention_search_deinit(struct mail_search_context *ctx)
{
	struct dovekie_retention_mailbox *rbox =
		RETENTION_BOX_CONTEXT(ctx->transaction->box);
	struct dovekie_retention_client *rclient = rbox->rclient;
	bool listing = rclient != NULL && ctx == rclient->listing_search;
	int ret;

	ret = rbox->module_ctx.super.search_deinit(ctx);
	if (listing) {
		rclient->listing_search = NULL;
		rclient->listing_complete = ret == 0;
	}
	return ret;
}

static int retention_open(struct mailbox *box)
{
	struct dovekie_retention_mailbox *rbox = RETENTION_BOX_CONTEXT(box);
	struct dovekie_user *duser = rbox->rclient->duser;
	const char *error;
	int ret = 0;

	if (rbox->module_ctx.super.open(box) < 0)
		return -1;
	if (dovekie_retention_index_check(box, &error) < 0) {
		/* Fail closed: a session whose records would vanish would
		   offer the same mail again and again. */
		e_error(duser->event, "retention: %s; refusing the POP3 session", error);
		mail_storage_set_error(box->storage, MAIL_ERROR_TEMP,
				       "Mailbox index not usable for POP3 retention");
		return -1;
	}
	T_BEGIN {
		if (dovekie_retention_migrate(duser, box, &error) < 0) {
			/* Not a refusal: nothing was moved, the old records
			   stay where they were and the next session retries. */
			e_warning(duser->event, "retention: moving the records of an "
				  "older version into the index failed: %s; this "
				  "session does not see them", error);
		}
	} T_END;
	return ret;
}

static void retention_mailbox_allocated(struct mailbox *box)
{
	struct dovekie_retention_user *ruser =
		RETENTION_USER_CONTEXT(box->storage->user);
	struct mailbox_vfuncs *v = box->vlast;
	struct dovekie_retention_mailbox *rbox;

	if ((box->flags & MAILBOX_FLAG_POP3_SESSION) == 0 || ruser == NULL ||
	    ruser->rclient == NULL)
		return;
	rbox = p_new(box->pool, struct dovekie_retention_mailbox, 1);
	rbox->module_ctx.super = *v;
	rbox->rclient = ruser->rclient;
	box->vlast = &rbox->module_ctx.super;
	v->open = retention_open;
	v->search_init = retention_search_init;
	v->search_next_nonblock = retention_search_next_nonblock;
	v->search_deinit = retention_search_deinit;
	v->transaction_commit = retention_transaction_commit;
	v->sync_deinit = retention_sync_deinit;
	MODULE_CONTEXT_SET(box, dovekie_retention_storage_module, rbox);
}

/* ---- downloads ---- */

static int
retention_mail_get_stream(struct mail *_mail, bool get_body,
			  struct message_size *hdr_size,
			  struct message_size *body_size,
			  struct istream **stream_r)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct dovekie_retention_mail *rmail = RETENTION_MAIL_CONTEXT(mail);

	if (rmail->module_ctx.super.get_stream(_mail, get_body, hdr_size,
					       body_size, stream_r) < 0)
		return -1;
	if (get_body) {
		rmail->body = *stream_r;
		rmail->body_uid = _mail->uid;
	}
	return 0;
}

static void retention_mail_note(struct dovekie_retention_mail *rmail)
{
	/* pop3's fetch stops reading at EOF (the whole message was sent) or
	   when a TOP's line count ran out (eof stays unset). A seek back to
	   0, as the read hooks of other modules do, clears eof too. */
	if (rmail->body != NULL && rmail->body->eof &&
	    i_stream_get_data_size(rmail->body) == 0 &&
	    rmail->rclient->client->trans != NULL)
		array_push_back(&rmail->rclient->downloaded, &rmail->body_uid);
	rmail->body = NULL;
}

static void retention_mail_close(struct mail *_mail)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct dovekie_retention_mail *rmail = RETENTION_MAIL_CONTEXT(mail);

	retention_mail_note(rmail);
	rmail->module_ctx.super.close(_mail);
}

static void retention_mail_free(struct mail *_mail)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct dovekie_retention_mail *rmail = RETENTION_MAIL_CONTEXT(mail);

	retention_mail_note(rmail);
	rmail->module_ctx.super.free(_mail);
}

static void retention_mail_allocated(struct mail *_mail)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct mail_vfuncs *v = mail->vlast;
	struct dovekie_retention_mailbox *rbox;
	struct dovekie_retention_mail *rmail;

	if ((_mail->box->flags & MAILBOX_FLAG_POP3_SESSION) == 0)
		return;
	rbox = MODULE_CONTEXT(_mail->box, dovekie_retention_storage_module);
	if (rbox == NULL || rbox->rclient == NULL)
		return;
	rmail = p_new(mail->pool, struct dovekie_retention_mail, 1);
	rmail->module_ctx.super = *v;
	rmail->rclient = rbox->rclient;
	mail->vlast = &rmail->module_ctx.super;
	v->get_stream = retention_mail_get_stream;
	v->close = retention_mail_close;
	v->free = retention_mail_free;
	MODULE_CONTEXT_SET(mail, dovekie_retention_mail_module, rmail);
}

static struct mail_storage_hooks dovekie_retention_storage_hooks = {
	.mailbox_allocated = retention_mailbox_allocated,
	.mail_allocated = retention_mail_allocated,
};

/* ---- QUIT ---- */

static bool bit_set(const unsigned char *bitmask, unsigned int msgnum)
{
	return bitmask != NULL &&
		(bitmask[msgnum / CHAR_BIT] & (1 << (msgnum % CHAR_BIT))) != 0;
}

/* Adds the hide keyword to uids inside pop3's QUIT transaction, so the
   keyword lands with pop3's own changes. */
static int
retention_add_hidden(struct mailbox_transaction_context *t, const char *keyword,
		     const uint32_t *uids, unsigned int count, const char **error_r)
{
	struct mailbox *box = mailbox_transaction_get_mailbox(t);
	const char *keywords[] = { keyword, NULL };
	struct mail_keywords *kw;
	struct mail *mail;
	unsigned int i;

	if (mailbox_keywords_create(box, keywords, &kw) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	mail = mail_alloc(t, 0, NULL);
	for (i = 0; i < count; i++) {
		if (mail_set_uid(mail, uids[i]))
			mail_update_keywords(mail, MODIFY_ADD, kw);
	}
	mail_free(&mail);
	mailbox_keywords_unref(&kw);
	return 0;
}

/* Records the session and adds the hide keyword, both in t (pop3's
   QUIT transaction). 0, or -1 with error_r: t must be rolled back. */
static int
retention_record_quit(struct dovekie_retention_client *rclient,
		      struct mailbox_transaction_context *t, const char **error_r)
{
	struct client *client = rclient->client;
	struct dovekie_bridge *bridge = rclient->duser->bridge;
	const uint32_t *uids;
	unsigned int i, count, n_retr = 0, n_del = 0, n_hide = 0;
	uint32_t *retr, *del, *hide;
	const uint32_t *down;
	unsigned int n_down;
	struct dovekie_retention_index idx;
	int ret;

	uids = array_get(&rclient->listing, &count);
	count = I_MIN(count, client->messages_count);
	down = array_get(&rclient->downloaded, &n_down);
	retr = t_new(uint32_t, count + n_down + 1);
	del = t_new(uint32_t, count + 1);
	hide = t_new(uint32_t, count + 1);
	for (i = 0; i < count; i++) {
		if (bit_set(client->seen_bitmask, i))
			retr[n_retr++] = uids[i];
		if (client->deleted && bit_set(client->deleted_bitmask, i))
			del[n_del++] = uids[i];
	}
	/* The module records a UID's first download once; repeats are fine. */
	for (i = 0; i < n_down; i++)
		retr[n_retr++] = down[i];
	/* Dovecot moves an index it cannot write to memory: records put
	   there would vanish with the process. */
	if (dovekie_retention_index_check(t->box, error_r) < 0)
		return -1;
	/* The records go into pop3's own transaction: committed with its
	   \Seen flags, keywords and expunges, all or nothing. */
	dovekie_retention_index_init(&idx, t);
	ret = dovekie_bridge_retention_pop3_quit(bridge, &idx.store, retr, n_retr,
						 del, n_del, hide, &n_hide, error_r);
	dovekie_retention_index_deinit(&idx);
	if (ret < 0) {
		return -1;
	}
	if (n_hide > 0 &&
	    retention_add_hidden(t, dovekie_bridge_retention_keyword(bridge),
				 hide, n_hide, error_r) < 0)
		return -1;
	return 0;
}

/* pop3's QUIT commits client->trans (already NULL here) while it is not
   disconnected; a failed client_update_mails() disconnects first, and the
   commit in destroy then is not a QUIT that succeeded. */
static bool
retention_is_quit_commit(struct dovekie_retention_client *rclient,
			 struct mailbox_transaction_context *t)
{
	struct client *client = rclient->client;

	return client->quit_seen && !client->disconnected &&
		client->trans == NULL && !rclient->quit_committing &&
		!rclient->quit_recorded && rclient->listing_complete &&
		client->mailbox == mailbox_transaction_get_mailbox(t) &&
		rclient->duser->bridge != NULL;
}

static int
retention_transaction_commit(struct mailbox_transaction_context *t,
			     struct mail_transaction_commit_changes *changes_r)
{
	struct dovekie_retention_mailbox *rbox = RETENTION_BOX_CONTEXT(t->box);
	struct dovekie_retention_client *rclient = rbox->rclient;
	struct mailbox *box = t->box;
	const char *error;
	int ret;

	if (rclient == NULL || !retention_is_quit_commit(rclient, t))
		return rbox->module_ctx.super.transaction_commit(t, changes_r);

	rclient->quit_committing = TRUE;
	T_BEGIN {
		ret = retention_record_quit(rclient, t, &error);
		if (ret < 0) {
			e_error(rclient->duser->event, "retention: recording the "
				"session failed: %s; QUIT answered -ERR, nothing "
				"was changed", error);
		}
	} T_END;
	rclient->quit_committing = FALSE;
	if (ret < 0) {
		rbox->module_ctx.super.transaction_rollback(t);
		mail_storage_set_error(box->storage, MAIL_ERROR_TEMP,
				       RETENTION_QUIT_FAILED_ERROR);
		return -1;
	}
	if (rbox->module_ctx.super.transaction_commit(t, changes_r) < 0) {
		e_error(rclient->duser->event, "retention: committing the session "
			"failed: %s; QUIT answered -ERR, nothing was changed",
			mailbox_get_last_internal_error(box, NULL));
		return -1;
	}
	rclient->quit_recorded = TRUE;
	rclient->quit_reply_ignored = rclient->client->deleted &&
		dovekie_bridge_retention_dele_ignored(rclient->duser->bridge);
	return 0;
}

static int
retention_sync_deinit(struct mailbox_sync_context *ctx,
		      struct mailbox_sync_status *status_r)
{
	struct dovekie_retention_mailbox *rbox = RETENTION_BOX_CONTEXT(ctx->box);
	struct dovekie_retention_client *rclient = rbox->rclient;

	if (rbox->module_ctx.super.sync_deinit(ctx, status_r) < 0)
		return -1;
	/* pop3 syncs right after its QUIT commit, then answers: answer with
	   the truth instead, and disconnect so that its line is not sent. */
	if (rclient != NULL && rclient->quit_reply_ignored) {
		rclient->quit_reply_ignored = FALSE;
		client_send_line(rclient->client, RETENTION_QUIT_IGNORED_REPLY);
		client_disconnect(rclient->client, "Logged out");
	}
	return 0;
}

/* The table as pop3's sync after its QUIT commit left the view: the
   module tells from it alone (O(1)) whether anything can be due. */
static bool retention_quit_due(struct dovekie_retention_client *rclient)
{
	struct mailbox *box = rclient->client->mailbox;
	unsigned char table[DOVEKIE_BRIDGE_RETENTION_TABLE_SIZE];

	dovekie_retention_index_table(box->view, dovekie_retention_ext_id(box), table);
	return dovekie_bridge_retention_expire_at_quit(rclient->duser->bridge, table);
}

static void retention_quit_expire(struct dovekie_retention_client *rclient)
{
	const char *errstr;

	if (retention_quit_due(rclient) &&
	    dovekie_retention_expire(rclient->duser, rclient->client->mailbox,
				     FALSE, NULL, NULL, NULL, &errstr) < 0) {
		e_error(rclient->duser->event,
			"retention: expiry at QUIT failed: %s", errstr);
	}
}

static void retention_destroy(struct client *client, const char *reason)
{
	struct dovekie_retention_client *rclient = RETENTION_CLIENT_CONTEXT(client);
	struct dovekie_retention_user *ruser = RETENTION_USER_CONTEXT(client->user);

	/* delete_success: pop3 committed its QUIT changes (and ours). */
	if (client->quit_seen && client->delete_success &&
	    rclient->quit_recorded && client->mailbox != NULL &&
	    rclient->duser->bridge != NULL) T_BEGIN {
		retention_quit_expire(rclient);
	} T_END;
	if (ruser != NULL)
		ruser->rclient = NULL;
	array_free(&rclient->listing);
	array_free(&rclient->downloaded);
	rclient->module_ctx.super.destroy(client, reason);
}

static void retention_client_created(struct client **clientp)
{
	struct client *client;
	struct dovekie_user *duser;
	struct dovekie_retention_client *rclient;
	struct dovekie_retention_user *ruser;
	const char *keyword;

	/* The others first, so our destroy runs before theirs (before
	   dovekie-pop3.c's pop3_end). */
	if (next_hook_client_created != NULL)
		next_hook_client_created(clientp);
	client = *clientp;
	duser = DOVEKIE_USER_CONTEXT(client->user);
	if (duser == NULL || !dovekie_bridge_has_retention(duser->bridge))
		return;

	keyword = dovekie_bridge_retention_keyword(duser->bridge);
	if (client->set->pop3_deleted_flag[0] == '\0') {
		struct pop3_settings *set = p_new(client->pool, struct pop3_settings, 1);

		*set = *client->set;
		set->pop3_deleted_flag = p_strdup(client->pool, keyword);
		client->set = set;
	} else if (strcmp(client->set->pop3_deleted_flag, keyword) != 0) {
		e_warning(duser->event, "retention: pop3_deleted_flag=%s also hides "
			  "messages from POP3; dovekie_retention_keyword=%s is the "
			  "one dovekie sets", client->set->pop3_deleted_flag, keyword);
	}

	rclient = p_new(client->pool, struct dovekie_retention_client, 1);
	rclient->client = client;
	rclient->duser = duser;
	i_array_init(&rclient->listing, 64);
	i_array_init(&rclient->downloaded, 16);
	rclient->module_ctx.super = client->v;
	client->v.destroy = retention_destroy;
	MODULE_CONTEXT_SET(client, dovekie_retention_pop3_module, rclient);

	ruser = RETENTION_USER_CONTEXT(client->user);
	if (ruser == NULL) {
		ruser = p_new(client->user->pool, struct dovekie_retention_user, 1);
		MODULE_CONTEXT_SET(client->user, dovekie_retention_user_module, ruser);
	}
	ruser->rclient = rclient;
}

const struct mail_storage_hooks *dovekie_retention_hooks_init(struct module *module)
{
	mail_storage_hooks_add(module, &dovekie_retention_storage_hooks);
	next_hook_client_created =
		pop3_client_created_hook_set(retention_client_created);
	return &dovekie_retention_storage_hooks;
}

void dovekie_retention_hooks_deinit(void)
{
	(void)pop3_client_created_hook_set(next_hook_client_created);
	mail_storage_hooks_remove(&dovekie_retention_storage_hooks);
}
