/* The fts backend "dovekie": Dovecot's fts plugin drives it, the search
 * module's "index" service (dovekie/index.h) stores the text.
 *
 * Exactness: the text given to the index is the text Dovecot's own
 * sequential search compares against, made with the same library calls
 * (message parser with CLEAN_ONELINE, message decoder with the user's
 * normalizer, text/ and message/ bodies only, every header, normalized
 * address lists). The index answers with definite UIDs and a superset of
 * maybe UIDs, which the fts plugin verifies by reading the mails. So the
 * fts plugin's own extracted text (HTML stripped, addresses rewritten) is
 * not used: update_set_build_key reads the mail itself on the first key of
 * each UID and declines every key.
 *
 * The text extraction is in dovekie-fts-text.c.
 *
 * The dovekie_fts plugin (lib95_dovekie_fts_plugin.so): it depends on
 * Dovecot's fts plugin and on the core dovekie plugin, whose functions it
 * calls (Dovecot loads plugins RTLD_GLOBAL).
 */
#include "lib.h"
#include <sys/stat.h>
#include "array.h"
#include "str.h"
#include "istream.h"
#include "mail-storage-private.h"
#include "mail-search.h"
#include "mailbox-list-iter.h"
#include "mail-namespace.h"
#include "mail-storage-hooks.h"
#include "fts-api-private.h"
#include "dovekie-plugin.h"
#include "dovekie-fts.h"
#include "dovekie-storage.h"
#include "dovekie-fts-text.h"
#include "dovekie-log-quote.h"
#include "dovekie-part.h"

#if DOVECOT_PREREQ(2, 4, 0)
/* 2.4 installs fts-user.h with the other headers; the fts plugin frees its
   user state itself, and a backend is chosen by a named filter,
   `fts dovekie { }`, whose names the fts settings list. */
#  include "settings.h"
#  include "fts-user.h"
#else
/* From the fts plugin's fts-user.h, which 2.3 does not install. */
int fts_mail_user_init(struct mail_user *user, bool initialize_libfts,
		       const char **error_r);
void fts_mail_user_deinit(struct mail_user *user);
#endif

#define DOVEKIE_FTS_BACKEND_NAME "dovekie"

const char *dovekie_fts_plugin_version = DOVECOT_ABI_VERSION;
const char *dovekie_fts_plugin_dependencies[] = { "fts", "dovekie", NULL };

void dovekie_fts_plugin_init(struct module *module);
void dovekie_fts_plugin_deinit(void);

struct dovekie_fts_backend {
	struct fts_backend backend;
	/* NULL once the user is being torn down: the modules are gone. */
	struct dovekie_user *duser;
	struct dovekie_fts_user *fuser;
	struct event *event;

	/* One open index at a time: the mailbox last used, known by its
	   path, GUID and UIDVALIDITY. A mailbox deleted and created again
	   under the same name has the same path but another GUID, so the
	   handle (on the old, unlinked file) is not reused. */
	struct dovekie_bridge_index *index;
	char *index_path;
	guid_128_t index_guid;
	uint32_t index_uidvalidity;
	/* The index directory the last open was tried in, as it was then:
	   a failure after it was deleted (or replaced by a mailbox created
	   under the same name) is no failure of the index. */
	char *dir_path;
	dev_t dir_dev;
	ino_t dir_ino;
};

struct dovekie_fts_user {
	union mail_user_module_context module_ctx;
	/* The user's backends (one per namespace): their indexes must be
	   closed before the dovekie plugin unloads the modules. */
	ARRAY(struct dovekie_fts_backend *) backends;
};

struct dovekie_fts_update_context {
	struct fts_backend_update_context ctx;

	/* Our own view of cur_box, to read the mails being indexed. */
	struct mailbox_transaction_context *trans;
	struct mail *mail;
	uint32_t done_uid;
	/* Reading a mail failed: index nothing more in this run, so the
	   committed last UID stays below the failed one. */
	bool stop;
};

#define DOVEKIE_FTS_USER_CONTEXT(obj) \
	MODULE_CONTEXT(obj, dovekie_fts_user_module)

#define DOVEKIE_FTS_BOX_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, dovekie_fts_box_module)

static MODULE_CONTEXT_DEFINE_INIT(dovekie_fts_user_module, &mail_user_module_register);
static MODULE_CONTEXT_DEFINE_INIT(dovekie_fts_box_module, &mail_storage_module_register);

static struct fts_backend *dovekie_fts_alloc(void)
{
	struct dovekie_fts_backend *backend;

	backend = i_new(struct dovekie_fts_backend, 1);
	backend->backend = dovekie_fts_backend_template;
	return &backend->backend;
}

static int dovekie_fts_init_backend(struct fts_backend *_backend, const char **error_r)
{
	struct dovekie_fts_backend *backend = (struct dovekie_fts_backend *)_backend;
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(_backend->ns->user);
	struct dovekie_fts_user *fuser = DOVEKIE_FTS_USER_CONTEXT(_backend->ns->user);

	if (duser == NULL || fuser == NULL || duser->bridge == NULL ||
	    !dovekie_bridge_has_index(duser->bridge)) {
		*error_r = "fts = dovekie needs the dovekie plugin with "
			"the search module (dovekie_modules = search)";
		return -1;
	}
#if DOVECOT_PREREQ(2, 4, 0)
	/* 2.4: the fts plugin's user state is made with the backend's
	   event (no language libraries: the index takes whole text). */
	if (fts_mail_user_init(_backend->ns->user, _backend->event, FALSE, error_r) < 0)
		return -1;
#endif
	backend->duser = duser;
	backend->fuser = fuser;
	array_push_back(&fuser->backends, &backend);
	backend->event = event_create(duser->event);
	event_set_append_log_prefix(backend->event, "fts: ");
	return 0;
}

static void dovekie_fts_close_index(struct dovekie_fts_backend *backend)
{
	dovekie_bridge_index_close(&backend->index);
	i_free_and_null(backend->index_path);
}

static void dovekie_fts_backend_deinit(struct fts_backend *_backend)
{
	struct dovekie_fts_backend *backend = (struct dovekie_fts_backend *)_backend;

	dovekie_fts_close_index(backend);
	i_free(backend->dir_path);
	if (backend->fuser != NULL) {
		struct dovekie_fts_backend *const *bp;
		unsigned int i;

		array_foreach(&backend->fuser->backends, bp) {
			if (*bp == backend) {
				i = array_foreach_idx(&backend->fuser->backends, bp);
				array_delete(&backend->fuser->backends, i, 1);
				break;
			}
		}
	}
	event_unref(&backend->event);
	i_free(backend);
}

/* The index of box, opened (or reused). */
static int
dovekie_fts_open(struct dovekie_fts_backend *backend, struct mailbox *box,
		 struct dovekie_bridge_index **index_r, const char **error_r)
{
	struct mailbox_status status;
	struct mailbox_metadata metadata;
	struct stat st;
	const char *dir, *path;
	int ret;

	*index_r = NULL;
	if (backend->duser == NULL) {
		*error_r = "the user is being logged out";
		return -1;
	}
	if ((ret = mailbox_get_path_to(box, MAILBOX_LIST_PATH_TYPE_INDEX, &dir)) <= 0) {
		*error_r = ret < 0 ? mailbox_get_last_internal_error(box, NULL) :
			"mailbox has no index directory (in-memory indexes)";
		return -1;
	}
	path = t_strconcat(dir, "/" DOVEKIE_FTS_INDEX_FILE, NULL);
	if (mailbox_get_status(box, STATUS_UIDVALIDITY, &status) < 0 ||
	    mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &metadata) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	if (backend->index != NULL && strcmp(backend->index_path, path) == 0 &&
	    guid_128_equals(backend->index_guid, metadata.guid) &&
	    backend->index_uidvalidity == status.uidvalidity) {
		*index_r = backend->index;
		return 0;
	}
	dovekie_fts_close_index(backend);
	i_free(backend->dir_path);
	backend->dir_path = i_strdup(dir);
	backend->dir_dev = 0;
	backend->dir_ino = 0;
	if (stat(dir, &st) == 0) {
		backend->dir_dev = st.st_dev;
		backend->dir_ino = st.st_ino;
	}
	if (dovekie_bridge_index_open(backend->duser->bridge, path, status.uidvalidity,
				      &backend->index, error_r) < 0)
		return -1;
	backend->index_path = i_strdup(path);
	guid_128_copy(backend->index_guid, metadata.guid);
	backend->index_uidvalidity = status.uidvalidity;
	*index_r = backend->index;
	return 0;
}

/* Whether box was deleted since its index was opened (by this session or
   another): its index directory is gone, or is another one now (a mailbox
   created under the same name), and the index went with it. */
static bool
dovekie_fts_box_gone(struct dovekie_fts_backend *backend, struct mailbox *box)
{
	const char *dir;
	struct stat st;

	if (mailbox_get_path_to(box, MAILBOX_LIST_PATH_TYPE_INDEX, &dir) <= 0)
		return FALSE;
	if (stat(dir, &st) < 0)
		return errno == ENOENT;
	return backend->dir_path != NULL && strcmp(backend->dir_path, dir) == 0 &&
		backend->dir_ino != 0 &&
		(st.st_dev != backend->dir_dev || st.st_ino != backend->dir_ino);
}

/* Logs an index failure for box: an error, or only a debug line when the
   mailbox was deleted under us (Dovecot itself answers and logs that as it
   does without an index). Returns TRUE if the mailbox is gone. */
static bool
dovekie_fts_box_failed(struct dovekie_fts_backend *backend, struct mailbox *box,
		       const char *what, const char *error)
{
	bool gone = dovekie_fts_box_gone(backend, box);

	if (gone)
		dovekie_fts_close_index(backend);
	e_log(backend->event, gone ? LOG_TYPE_DEBUG : LOG_TYPE_ERROR,
	      "mailbox %s: %s%s%s", dovekie_log_quote(mailbox_get_vname(box)),
	      what, what[0] == '\0' ? "" : ": ", error);
	return gone;
}

static int
dovekie_fts_get_last_uid(struct fts_backend *_backend, struct mailbox *box,
			 uint32_t *last_uid_r)
{
	struct dovekie_fts_backend *backend = (struct dovekie_fts_backend *)_backend;
	struct dovekie_bridge_index *index;
	const char *error;
	const char *reason;

	/* A mailbox deleted under us has nothing indexed: Dovecot goes on to
	   read its mails, and answers for them as it does without an index. */
	*last_uid_r = 0;
	if (dovekie_fts_open(backend, box, &index, &reason) < 0)
		return dovekie_fts_box_failed(backend, box, "", reason) ? 0 : -1;
	if (dovekie_bridge_index_last_uid(index, last_uid_r, &error) < 0) {
		*last_uid_r = 0;
		return dovekie_fts_box_failed(backend, box, "", error) ? 0 : -1;
	}
	return 0;
}

/* ---- indexing ---- */

static struct fts_backend_update_context *
dovekie_fts_update_init(struct fts_backend *_backend)
{
	struct dovekie_fts_update_context *ctx;

	ctx = i_new(struct dovekie_fts_update_context, 1);
	ctx->ctx.backend = _backend;
	return &ctx->ctx;
}

static int dovekie_fts_flush(struct dovekie_fts_update_context *ctx)
{
	struct dovekie_fts_backend *backend =
		(struct dovekie_fts_backend *)ctx->ctx.backend;
	const char *error;

	if (backend->index == NULL)
		return 0;
	if (dovekie_bridge_index_flush(backend->index, &error) < 0) {
		if (ctx->ctx.cur_box != NULL)
			return dovekie_fts_box_failed(backend, ctx->ctx.cur_box,
						      "", error) ? 0 : -1;
		e_error(backend->event, "%s", error);
		return -1;
	}
	return 0;
}

static void dovekie_fts_release_box(struct dovekie_fts_update_context *ctx)
{
	if (ctx->mail != NULL)
		mail_free(&ctx->mail);
	if (ctx->trans != NULL)
		mailbox_transaction_rollback(&ctx->trans);
	ctx->done_uid = 0;
	ctx->stop = FALSE;
}

static int dovekie_fts_update_deinit(struct fts_backend_update_context *_ctx)
{
	struct dovekie_fts_update_context *ctx =
		(struct dovekie_fts_update_context *)_ctx;
	int ret = _ctx->failed ? -1 : 0;

	if (dovekie_fts_flush(ctx) < 0)
		ret = -1;
	dovekie_fts_release_box(ctx);
	i_free(ctx);
	return ret;
}

static void
dovekie_fts_update_set_mailbox(struct fts_backend_update_context *_ctx,
			       struct mailbox *box)
{
	struct dovekie_fts_update_context *ctx =
		(struct dovekie_fts_update_context *)_ctx;

	if (_ctx->cur_box == box)
		return;
	if (dovekie_fts_flush(ctx) < 0)
		_ctx->failed = TRUE;
	/* The transaction and mail are made on the first mail to index:
	   this is also called from inside a mailbox sync (expunges). */
	dovekie_fts_release_box(ctx);
	_ctx->cur_box = box;
}

static void
dovekie_fts_update_expunge(struct fts_backend_update_context *_ctx, uint32_t uid)
{
	struct dovekie_fts_backend *backend =
		(struct dovekie_fts_backend *)_ctx->backend;
	struct dovekie_bridge_index *index;
	const char *error;
	const char *reason;

	if (_ctx->cur_box == NULL)
		return;
	if (dovekie_fts_open(backend, _ctx->cur_box, &index, &reason) < 0) {
		if (!dovekie_fts_box_failed(backend, _ctx->cur_box,
					    t_strdup_printf("expunge uid %u", uid), reason))
			_ctx->failed = TRUE;
	} else if (dovekie_bridge_index_expunge(index, uid, &error) < 0) {
		if (!dovekie_fts_box_failed(backend, _ctx->cur_box,
					    t_strdup_printf("expunge uid %u", uid), error))
			_ctx->failed = TRUE;
	}
}

/* Indexes one mail. Returns 1 if indexed, 0 if it is gone, -1 on error. */
static int
dovekie_fts_index_mail(struct dovekie_fts_update_context *ctx,
		       struct dovekie_bridge_index *index, uint32_t uid,
		       const char **error_r)
{
	struct dovekie_fts_text text;
	struct istream *input;
	int ret;

	if (ctx->trans == NULL) {
		/* Its reads are the indexer's: our own read hooks (e.g.
		   antivirus on FETCH) stay out. */
		ctx->trans = dovekie_transaction_begin(ctx->ctx.cur_box, 0, "dovekie fts",
						       DOVEKIE_OWN_READS);
		ctx->mail = mail_alloc(ctx->trans, MAIL_FETCH_STREAM_HEADER |
				       MAIL_FETCH_STREAM_BODY, NULL);
	}
	if (!mail_set_uid(ctx->mail, uid))
		return 0;
	if (mail_get_stream_because(ctx->mail, NULL, NULL, "dovekie fts", &input) < 0) {
		/* Expunged, or the whole mailbox deleted under us. */
		if (ctx->mail->expunged ||
		    mailbox_get_last_mail_error(ctx->ctx.cur_box) == MAIL_ERROR_NOTFOUND)
			return 0;
		*error_r = mailbox_get_last_internal_error(ctx->ctx.cur_box, NULL);
		return -1;
	}
	i_zero(&text);
	text.index = index;
	if (dovekie_bridge_index_doc_begin(index, uid, error_r) < 0)
		ret = -1;
	else {
		ret = dovekie_fts_extract(&text, ctx->mail, input, error_r);
		if (ret == 0 && dovekie_bridge_index_doc_end(index, error_r) < 0)
			ret = -1;
	}
	return ret < 0 ? -1 : 1;
}

static bool
dovekie_fts_update_set_build_key(struct fts_backend_update_context *_ctx,
				 const struct fts_backend_build_key *key)
{
	struct dovekie_fts_update_context *ctx =
		(struct dovekie_fts_update_context *)_ctx;
	struct dovekie_fts_backend *backend =
		(struct dovekie_fts_backend *)_ctx->backend;
	struct dovekie_bridge_index *index;
	const char *error = NULL;
	int ret;

	if (_ctx->cur_box == NULL || ctx->stop || key->uid == ctx->done_uid)
		return FALSE;
	ctx->done_uid = key->uid;
	T_BEGIN {
		ret = dovekie_fts_open(backend, _ctx->cur_box, &index, &error);
		if (ret == 0)
			ret = dovekie_fts_index_mail(ctx, index, key->uid, &error);
		if (ret < 0 && dovekie_fts_box_failed(backend, _ctx->cur_box,
				t_strdup_printf("indexing uid %u failed", key->uid), error)) {
			/* Nothing left to index, and nothing failed. */
			ctx->stop = TRUE;
			ret = 0;
		}
	} T_END;
	if (ret < 0) {
		ctx->stop = TRUE;
		_ctx->failed = TRUE;
	}
	/* We have the whole mail: the fts plugin's own pieces are not needed. */
	return FALSE;
}

static void
dovekie_fts_update_unset_build_key(struct fts_backend_update_context *_ctx ATTR_UNUSED)
{
}

static int
dovekie_fts_update_build_more(struct fts_backend_update_context *_ctx ATTR_UNUSED,
			      const unsigned char *data ATTR_UNUSED,
			      size_t size ATTR_UNUSED)
{
	/* never reached: every build key is declined */
	return 0;
}

static int dovekie_fts_refresh(struct fts_backend *_backend ATTR_UNUSED)
{
	/* Each lookup reads the committed state of the database. */
	return 0;
}

/* Runs reset (rescan) or optimize on the index of every mailbox. */
static int dovekie_fts_all_boxes(struct dovekie_fts_backend *backend, bool reset)
{
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	int ret = 0;

	dovekie_fts_close_index(backend);
	iter = mailbox_list_iter_init(backend->backend.ns->list, "*",
				      MAILBOX_LIST_ITER_SKIP_ALIASES |
				      MAILBOX_LIST_ITER_NO_AUTO_BOXES);
	while ((info = mailbox_list_iter_next(iter)) != NULL) T_BEGIN {
		struct mailbox *box;
		struct dovekie_bridge_index *index;
		const char *error;
		const char *reason;

		if ((info->flags & (MAILBOX_NOSELECT | MAILBOX_NONEXISTENT)) == 0) {
			box = mailbox_alloc(info->ns->list, info->vname, 0);
			if (dovekie_fts_open(backend, box, &index, &reason) < 0) {
				e_error(backend->event, "mailbox %s: %s",
					dovekie_log_quote(info->vname), reason);
				ret = -1;
			} else if ((reset ? dovekie_bridge_index_reset(index, &error) :
				    dovekie_bridge_index_optimize(index, &error)) < 0) {
				e_error(backend->event, "mailbox %s: %s",
					dovekie_log_quote(info->vname), error);
				ret = -1;
			}
			dovekie_fts_close_index(backend);
			mailbox_free(&box);
		}
	} T_END;
	if (mailbox_list_iter_deinit(&iter) < 0)
		ret = -1;
	return ret;
}

static int dovekie_fts_rescan(struct fts_backend *_backend)
{
	/* Emptying the index makes the next indexing run add every mail
	   that exists and nothing that does not. */
	return dovekie_fts_all_boxes((struct dovekie_fts_backend *)_backend, TRUE);
}

static int dovekie_fts_optimize(struct fts_backend *_backend)
{
	return dovekie_fts_all_boxes((struct dovekie_fts_backend *)_backend, FALSE);
}

/* ---- lookups ---- */

struct dovekie_fts_uids {
	ARRAY_TYPE(seq_range) definite, maybe;
};

static void dovekie_fts_add_uid(void *context, uint32_t uid, bool definite)
{
	struct dovekie_fts_uids *uids = context;

	seq_range_array_add(definite ? &uids->definite : &uids->maybe, uid);
}

/* Combines one argument's UIDs into the result. The answer covers the
   UIDs up to last_uid, and there a UID the index gave neither as definite
   nor as maybe cannot match (index.h). So NOT makes that UID a definite
   match, a maybe stays maybe and a definite match becomes a non-match.
   (Squat, which cannot rule mail out, makes everything maybe; doing so
   here had Dovecot read 53,620 mails for NOT BODY money at corpus x10.)
   AND and OR follow definite/maybe logic. Every mail above last_uid
   up to last_mail_uid is maybe. Dovecot searches the mails
   above the last UID it was told itself, but another process may have
   reset the index since (`doveadm fts rescan`), and without this the mails
   between would be non-matches. */
static void
dovekie_fts_merge(const struct mail_search_arg *arg, bool and_args, uint32_t last_uid,
		  uint32_t last_mail_uid, struct dovekie_fts_uids *tmp,
		  ARRAY_TYPE(seq_range) *definite_uids, ARRAY_TYPE(seq_range) *maybe_uids)
{
	if (arg->match_not) {
		ARRAY_TYPE(seq_range) ruled_out;

		t_array_init(&ruled_out, 64);
		if (last_uid > 0)
			seq_range_array_add_range(&ruled_out, 1, last_uid);
		seq_range_array_remove_seq_range(&ruled_out, &tmp->definite);
		seq_range_array_remove_seq_range(&ruled_out, &tmp->maybe);
		array_clear(&tmp->definite);
		array_append_array(&tmp->definite, &ruled_out);
	}
	if (last_uid < last_mail_uid)
		seq_range_array_add_range(&tmp->maybe, last_uid + 1, last_mail_uid);
	if (and_args) {
		seq_range_array_merge(maybe_uids, definite_uids);
		seq_range_array_merge(&tmp->maybe, &tmp->definite);
		seq_range_array_intersect(maybe_uids, &tmp->maybe);
		seq_range_array_intersect(definite_uids, &tmp->definite);
		seq_range_array_remove_seq_range(maybe_uids, definite_uids);
	} else {
		seq_range_array_remove_seq_range(&tmp->maybe, definite_uids);
		seq_range_array_remove_seq_range(maybe_uids, &tmp->definite);
		seq_range_array_merge(definite_uids, &tmp->definite);
		seq_range_array_merge(maybe_uids, &tmp->maybe);
	}
}

/* The scope of a SUBJECT, FROM, TO, CC or BCC search key (Dovecot's
   mail-search-register-imap.c: SUBJECT compresses white space, the others
   compare the normalized address list): the keyed field of its header,
   compared the way that field was written. FALSE for any other header. */
static bool
dovekie_fts_keyed_scope(const struct mail_search_arg *arg,
			enum dovekie_bridge_index_scope *scope_r)
{
	enum dovekie_bridge_index_field field;

	if (!dovekie_fts_keyed_field(arg->hdr_field_name, &field) ||
	    (field == DOVEKIE_BRIDGE_INDEX_SUBJECT) !=
	    (arg->type == SEARCH_HEADER_COMPRESS_LWSP))
		return FALSE;
	/* The keyed scopes are in the keyed fields' order (dovekie-bridge.h). */
	*scope_r = DOVEKIE_BRIDGE_INDEX_SCOPE_SUBJECT + (field - DOVEKIE_BRIDGE_INDEX_SUBJECT);
	return TRUE;
}

/* Returns 1 if arg was used, 0 if Dovecot must search it, -1 on error.
   last_mail_uid is the UID of the mailbox's last mail. */
static int
dovekie_fts_lookup_arg(struct dovekie_fts_backend *backend, struct mailbox *box,
		       struct dovekie_bridge_index *index, struct mail_search_arg *arg,
		       bool and_args, uint32_t last_mail_uid, struct fts_result *result)
{
	enum dovekie_bridge_index_scope scope;
	struct dovekie_fts_uids tmp;
	const char *error;
	uint32_t last_uid = 0;
	string_t *needle;
	int ret;

	switch (arg->type) {
	case SEARCH_TEXT:
		scope = DOVEKIE_BRIDGE_INDEX_SCOPE_TEXT;
		break;
	case SEARCH_BODY:
		scope = DOVEKIE_BRIDGE_INDEX_SCOPE_BODY;
		break;
	case SEARCH_HEADER:
		scope = DOVEKIE_BRIDGE_INDEX_SCOPE_HEADER;
		break;
	case SEARCH_HEADER_ADDRESS:
	case SEARCH_HEADER_COMPRESS_LWSP:
		/* The keys the index holds the compared text of; any other
		   header compared so (no IMAP key makes one) is Dovecot's. */
		if (!dovekie_fts_keyed_scope(arg, &scope))
			return 0;
		break;
	default:
		return 0;
	}
	if (arg->value.str == NULL || arg->value.str[0] == '\0')
		return 0;
	/* The same normalizer as the sequential search's. */
	needle = t_str_new(128);
	if (box->storage->user->default_normalizer(arg->value.str, strlen(arg->value.str),
						   needle) < 0 || str_len(needle) == 0)
		return 0;

	t_array_init(&tmp.definite, 64);
	t_array_init(&tmp.maybe, 64);
	ret = dovekie_bridge_index_lookup(index, scope, str_c(needle), dovekie_fts_add_uid,
					  &tmp, &last_uid, &error);
	if (ret < 0) {
		/* Dovecot then searches without the index. */
		(void)dovekie_fts_box_failed(backend, box, "lookup failed", error);
		return -1;
	}
	if (ret == 0)
		return 0;
	dovekie_fts_merge(arg, and_args, last_uid, last_mail_uid, &tmp,
			  &result->definite_uids, &result->maybe_uids);
	return 1;
}

/* Adds to gone the UIDs the searching session still sees in box that
   another session has expunged since. Dovecot's own search finds each one
   when it reads it, leaves it out and answers OK [EXPUNGEISSUED]; the index
   would call it a definite match or non-match without a read. Nothing is
   added when the index cannot be refreshed. */
static void dovekie_fts_gone_uids(struct mailbox *box, ARRAY_TYPE(seq_range) *gone)
{
	struct mail_index_view *latest;
	uint32_t seq, count, lseq = 1, lcount, uid, luid = 0;

	if (mail_index_refresh(box->index) < 0) {
		mail_index_reset_error(box->index);
		return;
	}
	latest = mail_index_view_open(box->index);
	count = mail_index_view_get_messages_count(box->view);
	lcount = mail_index_view_get_messages_count(latest);
	for (seq = 1; seq <= count; seq++) {
		mail_index_lookup_uid(box->view, seq, &uid);
		/* Both views list UIDs in ascending order. */
		for (; lseq <= lcount; lseq++) {
			mail_index_lookup_uid(latest, lseq, &luid);
			if (luid >= uid)
				break;
		}
		if (lseq > lcount || luid != uid)
			seq_range_array_add(gone, uid);
	}
	mail_index_view_close(&latest);
}

static int
dovekie_fts_lookup(struct fts_backend *_backend, struct mailbox *box,
		   struct mail_search_arg *args, enum fts_lookup_flags flags,
		   struct fts_result *result)
{
	struct dovekie_fts_backend *backend = (struct dovekie_fts_backend *)_backend;
	struct dovekie_bridge_index *index;
	struct mailbox_status status;
	bool and_args = (flags & FTS_LOOKUP_FLAG_AND_ARGS) != 0;
	bool first = TRUE;
	const char *reason;
	int ret = 0;

	if (mailbox_get_status(box, STATUS_UIDNEXT, &status) < 0) {
		(void)dovekie_fts_box_failed(backend, box, "",
			mailbox_get_last_internal_error(box, NULL));
		return -1;
	}
	if (dovekie_fts_open(backend, box, &index, &reason) < 0) {
		(void)dovekie_fts_box_failed(backend, box, "", reason);
		return -1;
	}
	for (; args != NULL && ret >= 0; args = args->next) T_BEGIN {
		ret = dovekie_fts_lookup_arg(backend, box, index, args,
					     first ? FALSE : and_args, status.uidnext - 1,
					     result);
		if (ret > 0) {
			args->match_always = TRUE;
			first = FALSE;
		}
	} T_END;
	if (ret < 0) {
		dovekie_fts_close_index(backend);
		return -1;
	}
	if (!first) T_BEGIN {
		/* Expunged under this session: Dovecot reads them, as without
		   an index, and answers as it does then. */
		ARRAY_TYPE(seq_range) gone;

		t_array_init(&gone, 8);
		dovekie_fts_gone_uids(box, &gone);
		if (array_count(&gone) > 0) {
			seq_range_array_remove_seq_range(&result->definite_uids, &gone);
			seq_range_array_merge(&result->maybe_uids, &gone);
		}
	} T_END;
	return 0;
}

static int
dovekie_fts_lookup_multi(struct fts_backend *_backend, struct mailbox *const boxes[],
			 struct mail_search_arg *args, enum fts_lookup_flags flags,
			 struct fts_multi_result *result)
{
	struct fts_result *box_results;
	unsigned int i, count;

	for (count = 0; boxes[count] != NULL; count++) ;
	box_results = p_new(result->pool, struct fts_result, count + 1);
	for (i = 0; i < count; i++) {
		box_results[i].box = boxes[i];
		box_results[i].pool = result->pool;
		p_array_init(&box_results[i].definite_uids, result->pool, 32);
		p_array_init(&box_results[i].maybe_uids, result->pool, 32);
		p_array_init(&box_results[i].scores, result->pool, 1);
		if (dovekie_fts_lookup(_backend, boxes[i], args, flags, &box_results[i]) < 0)
			return -1;
	}
	result->box_results = box_results;
	return 0;
}

static bool
dovekie_fts_can_lookup(struct fts_backend *backend, const struct mail_search_arg *args)
{
	return fts_backend_default_can_lookup(backend, args);
}

static void dovekie_fts_lookup_done(struct fts_backend *_backend ATTR_UNUSED)
{
}

const struct fts_backend dovekie_fts_backend_template = {
	.name = DOVEKIE_FTS_BACKEND_NAME,
	.flags = 0,
	{
		.alloc = dovekie_fts_alloc,
		.init = dovekie_fts_init_backend,
		.deinit = dovekie_fts_backend_deinit,
		.get_last_uid = dovekie_fts_get_last_uid,
		.update_init = dovekie_fts_update_init,
		.update_deinit = dovekie_fts_update_deinit,
		.update_set_mailbox = dovekie_fts_update_set_mailbox,
		.update_expunge = dovekie_fts_update_expunge,
		.update_set_build_key = dovekie_fts_update_set_build_key,
		.update_unset_build_key = dovekie_fts_update_unset_build_key,
		.update_build_more = dovekie_fts_update_build_more,
		.refresh = dovekie_fts_refresh,
		.rescan = dovekie_fts_rescan,
		.optimize = dovekie_fts_optimize,
		.can_lookup = dovekie_fts_can_lookup,
		.lookup = dovekie_fts_lookup,
		.lookup_multi = dovekie_fts_lookup_multi,
		.lookup_done = dovekie_fts_lookup_done,
	}
};

/* ---- per user: the fts plugin's user state is made by its backends ---- */

/* Closes the user's open indexes and disables its backends, before the
   core plugin unloads the modules the indexes live in (its deinit_pre
   calls this, dovekie_part_register). Idempotent; nothing for a user
   without fts = dovekie. */
static void dovekie_fts_user_release(struct mail_user *user)
{
	struct dovekie_fts_user *fuser = DOVEKIE_FTS_USER_CONTEXT(user);
	struct dovekie_fts_backend *backend;

	if (fuser == NULL)
		return;
	/* The fts backends are freed only with the namespaces, after the
	   dovekie plugin has unloaded the modules their indexes live in. */
	array_foreach_elem(&fuser->backends, backend) {
		dovekie_fts_close_index(backend);
		backend->duser = NULL;
		backend->fuser = NULL;
	}
	array_clear(&fuser->backends);
}

static void dovekie_fts_user_deinit(struct mail_user *user)
{
	struct dovekie_fts_user *fuser = DOVEKIE_FTS_USER_CONTEXT(user);

	dovekie_fts_user_release(user);
#if !DOVECOT_PREREQ(2, 4, 0)
	fts_mail_user_deinit(user);
#endif
	fuser->module_ctx.super.deinit(user);
}

#if DOVECOT_PREREQ(2, 4, 0)
/* Whether fts = dovekie for the user: its fts settings name a
   `fts dovekie { }` filter (the fts state is made at backend init). */
static bool dovekie_fts_user_start(struct mail_user *user)
{
	const struct fts_settings *set;
	const char *name, *error;
	bool found = FALSE;

	if (settings_get(user->event, &fts_setting_parser_info, 0, &set, &error) < 0) {
		e_error(user->event, "fts-dovekie: %s", error);
		return FALSE;
	}
	if (array_is_created(&set->fts)) {
		array_foreach_elem(&set->fts, name) {
			if (strcmp(name, DOVEKIE_FTS_BACKEND_NAME) == 0)
				found = TRUE;
		}
	}
	settings_free(set);
	return found;
}
#else
/* Whether fts = dovekie for the user; 2.3 wants the fts plugin's user
   state made here, at user creation. */
static bool dovekie_fts_user_start(struct mail_user *user)
{
	const char *name, *error;

	name = mail_user_plugin_getenv(user, "fts");
	if (name == NULL || strcmp(name, DOVEKIE_FTS_BACKEND_NAME) != 0)
		return FALSE;
	/* No language libraries: the index takes whole text. */
	if (fts_mail_user_init(user, FALSE, &error) < 0) {
		e_error(user->event, "fts-dovekie: %s", error);
		return FALSE;
	}
	return TRUE;
}
#endif

static void dovekie_fts_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct dovekie_fts_user *fuser;

	if (!dovekie_fts_user_start(user))
		return;
	fuser = p_new(user->pool, struct dovekie_fts_user, 1);
	p_array_init(&fuser->backends, user->pool, 2);
	fuser->module_ctx.super = *v;
	user->vlast = &fuser->module_ctx.super;
	v->deinit = dovekie_fts_user_deinit;
	MODULE_CONTEXT_SET(user, dovekie_fts_user_module, fuser);
}

/* ---- per mailbox: an index goes with its mailbox ---- */

/* Closes every index the user's backends hold open. Used around DELETE
   and RENAME: a handle must not outlive the files it was opened on (it
   would answer for a mailbox created under the same name), and closing it
   later, once another index lives at its path, must not touch that one. */
static void dovekie_fts_close_user_indexes(struct mail_user *user)
{
	struct dovekie_fts_user *fuser = DOVEKIE_FTS_USER_CONTEXT(user);
	struct dovekie_fts_backend *backend;

	if (fuser == NULL)
		return;
	array_foreach_elem(&fuser->backends, backend)
		dovekie_fts_close_index(backend);
}

static int dovekie_fts_delete_box(struct mailbox *box)
{
	union mailbox_module_context *mbox = DOVEKIE_FTS_BOX_CONTEXT(box);
	int ret;

	dovekie_fts_close_user_indexes(box->storage->user);
	ret = mbox->super.delete_box(box);
	/* Expunging the mails may have opened it again on the way. */
	dovekie_fts_close_user_indexes(box->storage->user);
	return ret;
}

static int dovekie_fts_rename_box(struct mailbox *src, struct mailbox *dest)
{
	union mailbox_module_context *mbox = DOVEKIE_FTS_BOX_CONTEXT(src);
	int ret;

	/* The index moves with the mailbox, and is opened at its new path
	   by the next search there. */
	dovekie_fts_close_user_indexes(src->storage->user);
	ret = mbox->super.rename_box(src, dest);
	dovekie_fts_close_user_indexes(src->storage->user);
	return ret;
}

static void dovekie_fts_mailbox_allocated(struct mailbox *box)
{
	struct mailbox_vfuncs *v = box->vlast;
	union mailbox_module_context *mbox;

	if (DOVEKIE_FTS_USER_CONTEXT(box->storage->user) == NULL)
		return;
	mbox = p_new(box->pool, union mailbox_module_context, 1);
	mbox->super = *v;
	box->vlast = &mbox->super;
	v->delete_box = dovekie_fts_delete_box;
	v->rename_box = dovekie_fts_rename_box;
	MODULE_CONTEXT_SET_SELF(box, dovekie_fts_box_module, mbox);
	dovekie_fts_search_mailbox_allocated(box);
}

static struct mail_storage_hooks dovekie_fts_mail_storage_hooks = {
	.mail_user_created = dovekie_fts_mail_user_created,
	.mailbox_allocated = dovekie_fts_mailbox_allocated,
};

void dovekie_fts_plugin_init(struct module *module)
{
	fts_backend_register(&dovekie_fts_backend_template);
	mail_storage_hooks_add(module, &dovekie_fts_mail_storage_hooks);
	dovekie_part_register(DOVEKIE_PART_FTS, &dovekie_fts_mail_storage_hooks,
			      dovekie_fts_user_release);
}

void dovekie_fts_plugin_deinit(void)
{
	dovekie_part_unregister(DOVEKIE_PART_FTS);
	mail_storage_hooks_remove(&dovekie_fts_mail_storage_hooks);
	fts_backend_unregister(DOVEKIE_FTS_BACKEND_NAME);
}
