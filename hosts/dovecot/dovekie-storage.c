/* mail-storage hooks: where Dovecot's storage events reach the modules.
 *
 *   APPEND            mailbox vfunc save_finish (after the bytes are written)
 *   COPY / MOVE       mailbox vfunc copy (the source is judged before copying)
 *   LMTP delivery     mailbox vfunc copy with ctx->saving (mail_deliver saves
 *                     with mailbox_save_using_mail), unless dovekie-lmtp.c's
 *                     delivery hook already judged the message
 *   FETCH, SEARCH,    mail vfuncs get_stream with a body and
 *   RETR, TOP         get_binary_stream, imap/pop3 only: the message is
 *                     judged before any byte of it is served, and an
 *                     infected one is refused; a read never moves mail
 *   mailbox sync      mailbox vfunc sync_init, imap/pop3 only: new mail is
 *                     judged before the session's view can show it, and
 *                     detections move to quarantine (dovekie-av-sync.c)
 *   expunge           mail vfunc expunge (IMAP EXPUNGE, POP3 DELE at QUIT)
 *   POP3 start        mailbox vfunc sync_deinit of the POP3 session's INBOX
 */
#include "lib.h"
#include "istream.h"
#include <fcntl.h>
#include <sys/stat.h>
#include "mail-storage-private.h"
#include "mailbox-list-iter.h"
#include "mail-namespace.h"
#include "dovekie-plugin.h"
#include "dovekie-antivirus.h"
#include "dovekie-quarantine.h"
#include "dovekie-av-sync.h"
#include "dovekie-storage.h"
#include "dovekie-log-quote.h"

#define DOVEKIE_CONTEXT(obj) \
	MODULE_CONTEXT(obj, dovekie_storage_module)
#define DOVEKIE_MAIL_CONTEXT(obj) \
	MODULE_CONTEXT(obj, dovekie_mail_module)

struct dovekie_mailbox {
	union mailbox_module_context module_ctx;
	/* dovekie-av-sync.c's own instance of this mailbox, kept open while
	   this one is, or NULL. */
	struct mailbox *av_sync_box;
	/* This is such an instance: its syncs are the sync check's own. */
	bool av_sync_own:1;
	/* POP3: the last read failed because it could not be judged now
	   (MAIL_ERROR_TEMP): dovekie-pop3.c answers it -ERR [SYS/TEMP]. */
	bool pop3_read_tempfail:1;
};

/* Each transaction of a mailbox we hook, from its begin to its commit or
   rollback: the state of one operation, so nesting (a quarantine move
   inside a sync, a release in a doveadm loop over users) and other
   users' mailboxes in one process never see another's. */
struct dovekie_transaction {
	union mailbox_transaction_module_context module_ctx;
	/* Set at the begin of a transaction of our own. */
	enum dovekie_own own;
	/* The source transaction of a COPY or MOVE (dovekie_copy() sets it,
	   dovekie_transaction_commit() reads it). */
	bool copy_source:1;
};

struct dovekie_mail {
	union mail_module_context module_ctx;
	/* UID whose read hook already ran for this mail object, so one FETCH
	   that opens the stream several times is judged once. */
	uint32_t read_checked_uid;
	/* UID whose guarded refusal this mail object has logged: a FETCH
	   opens the stream several times, and one refusal is one line. */
	uint32_t guard_logged_uid;
	/* Reads of this mail object by us (a hook judging it, a judged copy
	   reading its source) in progress: they are not the client's, and
	   our read hook stays out. A count, as they nest. */
	unsigned int own_reads;
	/* Whether the mail's mailbox is the quarantine: 0 not known yet,
	   1 no, 2 yes (a mail object stays in one mailbox). */
	uint8_t in_quarantine;
};

static MODULE_CONTEXT_DEFINE_INIT(dovekie_storage_module,
				  &mail_storage_module_register);
static MODULE_CONTEXT_DEFINE_INIT(dovekie_mail_module, &mail_module_register);

struct mailbox_transaction_context *
dovekie_transaction_begin(struct mailbox *box, enum mailbox_transaction_flags flags,
			  const char *reason, enum dovekie_own own)
{
	struct mailbox_transaction_context *t =
		mailbox_transaction_begin(box, flags, reason);
	struct dovekie_transaction *dt = DOVEKIE_CONTEXT(t);

	if (dt != NULL)
		dt->own = own;
	return t;
}

/* Whether t is a transaction of our own that does `what`. */
static bool
dovekie_transaction_owns(struct mailbox_transaction_context *t, enum dovekie_own what)
{
	struct dovekie_transaction *dt = DOVEKIE_CONTEXT(t);

	return dt != NULL && (dt->own & what) != 0;
}

void dovekie_mailbox_set_av_sync_own(struct mailbox *box)
{
	struct dovekie_mailbox *dbox = DOVEKIE_CONTEXT(box);

	if (dbox != NULL)
		dbox->av_sync_own = TRUE;
}

bool dovekie_mailbox_pop3_tempfail(struct mailbox *box, bool take)
{
	struct dovekie_mailbox *dbox = DOVEKIE_CONTEXT(box);
	bool tempfail = dbox != NULL && dbox->pop3_read_tempfail;

	if (take && dbox != NULL)
		dbox->pop3_read_tempfail = FALSE;
	return tempfail;
}

/* ---- message source over a Dovecot istream ---- */

struct dovekie_istream_source {
	struct istream *input;
};

static ssize_t
dovekie_source_read(void *context, unsigned char *buf, size_t len,
		    const char **error_r)
{
	struct dovekie_istream_source *src = context;
	const unsigned char *data;
	size_t size;
	int ret;

	ret = i_stream_read_more(src->input, &data, &size);
	if (ret == -1) {
		if (src->input->stream_errno != 0) {
			*error_r = i_stream_get_error(src->input);
			return -1;
		}
		return 0;
	}
	if (ret == 0) {
		/* Mail streams are blocking; this would be a storage bug. */
		*error_r = "mail stream returned no data without EOF";
		return -1;
	}
	size = I_MIN(size, len);
	memcpy(buf, data, size);
	i_stream_skip(src->input, size);
	return (ssize_t)size;
}

static int dovekie_source_rewind(void *context, const char **error_r ATTR_UNUSED)
{
	struct dovekie_istream_source *src = context;

	i_stream_seek(src->input, 0);
	return 0;
}

/* Bytes compared at each end of the message before its fd is offered. */
#define DOVEKIE_FD_PROBE_SIZE 4096

/* Reads up to `len` bytes of the stream from `offset`; returns the count
   (less only at EOF), or -1 on error. */
static ssize_t
dovekie_stream_read_at(struct istream *input, uoff_t offset,
		       unsigned char *buf, size_t len)
{
	const unsigned char *data;
	size_t size, have = 0;
	int ret;

	i_stream_seek(input, offset);
	while (have < len) {
		ret = i_stream_read_more(input, &data, &size);
		if (ret == -1) {
			if (input->stream_errno != 0)
				return -1;
			break;
		}
		if (ret == 0)
			return -1;
		size = I_MIN(size, len - have);
		memcpy(buf + have, data, size);
		i_stream_skip(input, size);
		have += size;
	}
	return (ssize_t)have;
}

/* Whether the file behind fd has the stream's bytes at `offset`. */
static bool
dovekie_fd_matches_stream(int fd, struct istream *input, uoff_t offset,
			  size_t len)
{
	unsigned char from_stream[DOVEKIE_FD_PROBE_SIZE];
	unsigned char from_file[DOVEKIE_FD_PROBE_SIZE];
	size_t have = 0;
	ssize_t ret;

	i_assert(len <= DOVEKIE_FD_PROBE_SIZE);
	if (dovekie_stream_read_at(input, offset, from_stream, len) != (ssize_t)len)
		return FALSE;
	while (have < len) {
		ret = pread(fd, from_file + have, len - have,
			    (off_t)(offset + have));
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret <= 0)
			return FALSE;
		have += (size_t)ret;
	}
	return memcmp(from_stream, from_file, len) == 0;
}

/* The stream's fd, when the file behind it holds exactly the message:
   that is the case for maildir, but not for a compressed or encrypted
   mail (zlib, mail_crypt: the stream is decoded on the fly, and passes
   on the file's fd), for mbox, sdbox and mdbox (a file holds a header,
   metadata or other messages), or for LMTP's raw mail (headers prepended
   to a temp file, or no file at all). Dovecot does not say which it is,
   so we check: a readable regular file whose size is the stream's, with
   the stream's bytes at both ends. Every such decoding changes the
   size or the first bytes (a magic header). The stream is left where it
   was. The fd is shared with the stream: Dovecot reads regular files
   with pread(), so a reader that moves its offset does no harm. */
static int dovekie_source_fd(void *context)
{
	struct dovekie_istream_source *src = context;
	struct istream *input = src->input;
	uoff_t old_offset = input->v_offset, size;
	struct stat st;
	size_t probe;
	int fd, flags;
	bool same;

	fd = i_stream_get_fd(input);
	if (fd == -1 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return -1;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || (flags & O_ACCMODE) == O_WRONLY)
		return -1;
	probe = I_MIN((uoff_t)st.st_size, DOVEKIE_FD_PROBE_SIZE);
	/* The head first: it fails at once for an encoded file, before the
	   exact size would decode all of it. */
	same = dovekie_fd_matches_stream(fd, input, 0, probe) &&
		i_stream_get_size(input, TRUE, &size) > 0 &&
		size == (uoff_t)st.st_size &&
		dovekie_fd_matches_stream(fd, input, size - probe, probe);
	i_stream_seek(input, old_offset);
	return same ? fd : -1;
}

static bool dovekie_service_is(struct mail_user *user, const char *service)
{
	return user->service != NULL && strcmp(user->service, service) == 0;
}

static bool dovekie_is_delivery(struct mail_user *user)
{
	return dovekie_service_is(user, "lmtp") || dovekie_service_is(user, "lda");
}

static int
dovekie_read_mail_source(struct mail *reader, uint32_t uid, const char *mailbox_name,
			 dovekie_mail_reader_t *func, void *context, const char **error_r)
{
	struct dovekie_istream_source src;
	struct dovekie_bridge_source source;
	struct dovekie_bridge_message msg;
	uoff_t size;
	int ret;

	i_zero(&msg);
	msg.mailbox = mailbox_name;
	msg.uid = uid;
	msg.size = mail_get_physical_size(reader, &size) < 0 ? -1 : (int64_t)size;
	if (mail_get_stream_because(reader, NULL, NULL, "dovekie", &src.input) < 0) {
		*error_r = t_strdup_printf("cannot read message uid=%u in %s: %s",
			uid, mailbox_name,
			mailbox_get_last_internal_error(reader->box, NULL));
		return -1;
	}
	i_stream_seek(src.input, 0);
	i_zero(&source);
	source.read = dovekie_source_read;
	source.rewind = dovekie_source_rewind;
	source.fd = dovekie_source_fd;
	source.context = &src;
	ret = func(context, &msg, &source, error_r);
	i_stream_seek(src.input, 0);
	return ret;
}

/* Hands func a source over reader's bytes and the message's facts, under
   the name and UID given (a copy's reader is another mail object). The
   stream is left at its start afterwards, where its readers expect it. */
static int
dovekie_read_mail_as(struct mail *reader, uint32_t uid, const char *mailbox_name,
		     dovekie_mail_reader_t *func, void *context, const char **error_r)
{
	struct dovekie_mail *dmail = DOVEKIE_MAIL_CONTEXT((struct mail_private *)reader);
	int ret;

	/* Meanwhile any read of reader is ours, not the client's: even the
	   size lookup may open the stream. */
	if (dmail != NULL)
		dmail->own_reads++;
	ret = dovekie_read_mail_source(reader, uid, mailbox_name, func, context, error_r);
	if (dmail != NULL)
		dmail->own_reads--;
	return ret;
}

int dovekie_read_mail(struct mail *mail, dovekie_mail_reader_t *func, void *context,
		      const char **error_r)
{
	return dovekie_read_mail_as(mail, mail->uid, mailbox_get_vname(mail->box),
				    func, context, error_r);
}

struct dovekie_judge_ctx {
	struct dovekie_user *duser;
	bool save;
	int origin;
	char *reason;
	struct dovekie_bridge_result *result;
	enum dovekie_bridge_verdict verdict;
};

/* dovekie_mail_reader_t: asks the bridge for the verdict. */
static int
dovekie_judge(void *context, const struct dovekie_bridge_message *msg,
	      const struct dovekie_bridge_source *source, const char **error_r ATTR_UNUSED)
{
	struct dovekie_judge_ctx *ctx = context;
	struct dovekie_bridge *bridge = ctx->duser->bridge;

	T_BEGIN {
		if (ctx->save && ctx->result != NULL) {
			ctx->verdict = dovekie_bridge_save_result(bridge,
				(enum dovekie_bridge_origin)ctx->origin, msg, source,
				ctx->result);
		} else if (ctx->result != NULL) {
			ctx->verdict = dovekie_bridge_read_result(bridge,
				(enum dovekie_bridge_read_origin)ctx->origin, msg, source,
				ctx->result);
		} else if (ctx->save) {
			ctx->verdict = dovekie_bridge_save(bridge,
				(enum dovekie_bridge_origin)ctx->origin, msg, source,
				ctx->reason);
		} else {
			ctx->verdict = dovekie_bridge_read(bridge,
				(enum dovekie_bridge_read_origin)ctx->origin, msg, source,
				ctx->reason);
		}
	} T_END;
	return 0;
}

/* How reading a message for its verdict failed. */
enum dovekie_read_failure {
	DOVEKIE_READ_OK = 0,
	/* Another session expunged it (Dovecot's mail_set_expunged()). */
	DOVEKIE_READ_EXPUNGED,
	/* Any other storage failure (the mailbox deleted under us, an index
	   error); the storage error is Dovecot's. */
	DOVEKIE_READ_FAILED,
};

/* Judges mail. If its bytes cannot be read, the verdict is a TEMPFAIL (no
   bytes may be served), and: with failure_r NULL the failure is logged
   here; else *failure_r and *error_r say what failed, nothing is logged,
   and the caller may hand Dovecot's own error on instead, which imap
   answers as stock Dovecot does (an expunged message: FETCH and SEARCH
   OK [EXPUNGEISSUED], COPY NO [EXPUNGEISSUED]). */
static enum dovekie_bridge_verdict
dovekie_check_mail_int(struct dovekie_user *duser, struct mail *mail, bool save,
		       int origin, const char *mailbox_name, bool isolated,
		       char reason[DOVEKIE_BRIDGE_REASON_MAX],
		       struct dovekie_bridge_result *result,
		       enum dovekie_read_failure *failure_r, const char **error_r)
{
	struct dovekie_judge_ctx ctx = {
		.duser = duser, .save = save, .origin = origin,
		.reason = reason, .result = result,
	};
	struct mailbox_transaction_context *own_trans = NULL;
	struct mail *own = NULL, *reader = mail;
	const char *error;

	reason[0] = '\0';
	if (result != NULL) {
		/* reason is result->reason */
		result->mailbox[0] = '\0';
		result->keyword[0] = '\0';
	}
	/* isolated: the stored message is read in a transaction and mail
	   object of our own, both gone before we return. Used for COPY:
	   anything we left in the caller's transaction (open streams, cache
	   updates from reading) would be finished when imap commits it, after
	   the COPY's error was set, and that work pushes and pops the storage
	   error, which frees the error text imap already holds: a refused COPY
	   sent freed memory (found by ASan). Reads use the caller's mail, whose
	   stream the client is about to get anyway. */
	if (isolated && !mail->saving && mail->seq != 0) {
		own_trans = dovekie_transaction_begin(mail->box, 0, "dovekie check",
						      DOVEKIE_OWN_READS);
		own = mail_alloc(own_trans, 0, NULL);
		mail_set_seq(own, mail->seq);
		reader = own;
	}
	if (failure_r != NULL)
		*failure_r = DOVEKIE_READ_OK;
	if (dovekie_read_mail_as(reader, mail->uid, mailbox_name, dovekie_judge,
				 &ctx, &error) < 0) {
		if (failure_r == NULL) {
			/* A save refused because its own bytes cannot be read.
			   When the storage failed (a mailbox deleted or an index
			   race under a concurrent session), Dovecot has logged
			   the cause itself: ours is a warning, not a second
			   Error line for the same event. */
			if (mailbox_get_last_mail_error(reader->box) != MAIL_ERROR_NONE)
				e_warning(duser->event, "%s", error);
			else
				e_error(duser->event, "%s", error);
		} else {
			*failure_r = reader->expunged ||
				mailbox_get_last_mail_error(reader->box) == MAIL_ERROR_EXPUNGED ?
				DOVEKIE_READ_EXPUNGED : DOVEKIE_READ_FAILED;
			*error_r = error;
		}
		i_strocpy(reason, "Temporary failure reading the message, try again later",
			  DOVEKIE_BRIDGE_REASON_MAX);
		ctx.verdict = DOVEKIE_BRIDGE_TEMPFAIL;
	}
	if (own != NULL) {
		mail_free(&own);
		mailbox_transaction_rollback(&own_trans);
	}
	return ctx.verdict;
}

enum dovekie_bridge_verdict
dovekie_check_mail(struct dovekie_user *duser, struct mail *mail, bool save,
		   int origin, const char *mailbox_name,
		   char reason[DOVEKIE_BRIDGE_REASON_MAX])
{
	return dovekie_check_mail_int(duser, mail, save, origin, mailbox_name,
				      FALSE, reason, NULL, NULL, NULL);
}

enum dovekie_bridge_verdict
dovekie_check_delivery(struct dovekie_user *duser, struct mail *mail,
		       const char *mailbox_name, struct dovekie_bridge_result *result)
{
	return dovekie_check_mail_int(duser, mail, TRUE,
				      DOVEKIE_BRIDGE_SAVE_DELIVERY, mailbox_name,
				      FALSE, result->reason, result, NULL, NULL);
}

enum dovekie_bridge_verdict
dovekie_check_stored(struct dovekie_user *duser, struct mail *mail, int origin,
		     struct dovekie_bridge_result *result, const char **error_r)
{
	enum dovekie_read_failure failure;
	enum dovekie_bridge_verdict verdict;
	const char *error;

	verdict = dovekie_check_mail_int(duser, mail, FALSE, origin,
					 mailbox_get_vname(mail->box), FALSE,
					 result->reason, result, &failure, &error);
	*error_r = failure == DOVEKIE_READ_OK ? NULL : error;
	return verdict;
}

int dovekie_foreach_mailbox(struct mail_user *user, dovekie_mailbox_func_t *func,
			    void *context)
{
	const enum mailbox_list_iter_flags iter_flags =
		MAILBOX_LIST_ITER_NO_AUTO_BOXES | MAILBOX_LIST_ITER_RETURN_NO_FLAGS;
	const char *const patterns[] = { "*", NULL };
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	bool more = TRUE;

	iter = mailbox_list_iter_init_namespaces(user->namespaces, patterns,
						 MAIL_NAMESPACE_TYPE_PRIVATE, iter_flags);
	while (more && (info = mailbox_list_iter_next(iter)) != NULL) {
		if ((info->flags & (MAILBOX_NOSELECT | MAILBOX_NONEXISTENT)) != 0)
			continue;
		T_BEGIN {
			more = func(context, info);
		} T_END;
	}
	return mailbox_list_iter_deinit(&iter);
}

/* Judges a message a client is about to read, with everything the
   verdict says (a DIVERT's mailbox) in result. Returns -1 when its bytes
   could not be read: the reader gets Dovecot's own error, exactly as
   without dovekie (the message has no bytes to guard, and Dovecot logged
   any internal error itself). */
static int
dovekie_check_read(struct dovekie_user *duser, struct mail *mail, int origin,
		   struct dovekie_bridge_result *result,
		   enum dovekie_bridge_verdict *verdict_r)
{
	enum dovekie_read_failure failure;
	const char *error;

	*verdict_r = dovekie_check_mail_int(duser, mail, FALSE, origin,
					    mailbox_get_vname(mail->box), FALSE,
					    result->reason, result, &failure, &error);
	if (failure == DOVEKIE_READ_OK)
		return 0;
	e_debug(duser->event, "%s", error);
	if (failure == DOVEKIE_READ_EXPUNGED)
		mail_set_expunged(mail);
	return -1;
}

/* Sets the storage error that IMAP and LMTP turn into their replies:
   NOTPOSSIBLE -> IMAP "NO [CANNOT] reason"; UNAVAILABLE -> IMAP
   "NO [UNAVAILABLE] reason". */
static void
dovekie_set_verdict_error(struct mailbox *box, enum dovekie_bridge_verdict verdict,
			  const char *reason)
{
	mail_storage_set_error(box->storage,
		verdict == DOVEKIE_BRIDGE_TEMPFAIL ? MAIL_ERROR_UNAVAILABLE :
		MAIL_ERROR_NOTPOSSIBLE, reason);
}

/* A read that may succeed later (scanner down, module not running). pop3
   answers any failed read "-ERR Message N expunged." whatever the error;
   dovekie-pop3.c answers this one -ERR [SYS/TEMP] and the reason instead.
   imap answers UNAVAILABLE with BYE and the reason. */
static void dovekie_set_read_tempfail(struct mail *_mail, const char *reason)
{
	struct mail_user *user = _mail->box->storage->user;
	struct dovekie_mailbox *dbox = DOVEKIE_CONTEXT(_mail->box);
	bool pop3 = user->service != NULL && strcmp(user->service, "pop3") == 0;

	mail_storage_set_error(_mail->box->storage,
		pop3 ? MAIL_ERROR_TEMP : MAIL_ERROR_UNAVAILABLE, reason);
	if (pop3 && dbox != NULL)
		dbox->pop3_read_tempfail = TRUE;
}

/* Whose modules judge box's mail: in a shared namespace its owner's, in a
   public one the global settings' (see dovekie_namespace_user). */
static struct dovekie_user *dovekie_box_user(struct mailbox *box)
{
	return dovekie_namespace_user(mailbox_get_namespace(box));
}

/* An APPEND or COPY refused because the message could not be read for its
   verdict. The storage failed under us, in practice a race with another
   session: the mailbox deleted (or deleted and created again) while the
   message was stored, or the source mailbox deleted under a COPY. Nothing
   is stored (no verdict, no bytes), and imap answers what Dovecot answers
   for that race without dovekie, never a tempfail of ours:
   - a COPY: the error the source's storage set when its read failed
     (handed to dest when that is another storage);
   - an APPEND into a mailbox that is gone: "Mailbox was deleted under us",
     which Dovecot's commit would have found;
   - an APPEND whose file vanished from a mailbox that exists again: an
     internal error, as Dovecot's commit gives when it cannot move the
     file (NO [SERVERBUG]).
   Dovecot logs the race itself (its rollback finds its file gone), so
   ours is a warning. */
static void
dovekie_set_unreadable_error(struct dovekie_user *duser, struct mailbox *dest,
			     struct mail *src, const char *error)
{
	enum mailbox_existence existence;

	e_warning(duser->event, "%s", error);
	if (!src->saving) {
		if (mailbox_get_last_mail_error(src->box) == MAIL_ERROR_NONE)
			mail_storage_set_internal_error(dest->storage);
		else
			mail_storage_copy_error(dest->storage, src->box->storage);
	} else if (mailbox_exists(dest, FALSE, &existence) == 0 &&
		   existence == MAILBOX_EXISTENCE_NONE) {
		mailbox_set_deleted(dest);
	} else {
		mail_storage_set_internal_error(dest->storage);
	}
}

/* ---- the read memo ---- */

/* The read memo: a per-message record in the mailbox index, the key of the
   antivirus module's read policy (dovekie_bridge_av_read_memo_key) under
   which a read of the message was accepted. A read that finds the current
   key there is accepted without hashing the message or asking the module:
   judging again could only give the same answer until the signature DB or
   the policy changes, and that changes the key. Written in the reading
   session's own transaction, so it is committed with what the session
   commits (a FETCH, a POP3 session) and a read-only session writes none. */
#define DOVEKIE_READ_MEMO_EXT "dovekie-av-read"

static uint32_t dovekie_read_memo_ext(struct mailbox *box)
{
	return mail_index_ext_register(box->index, DOVEKIE_READ_MEMO_EXT, 0,
				       sizeof(uint64_t), sizeof(uint64_t));
}

bool dovekie_read_memo_holds(struct mail *mail, uint64_t key)
{
	const void *data;
	uint64_t have;
	bool expunged;

	mail_index_lookup_ext(mail->transaction->view, mail->seq,
			      dovekie_read_memo_ext(mail->box), &data, &expunged);
	if (data == NULL)
		return FALSE;
	memcpy(&have, data, sizeof(have));
	return have == key;
}

void dovekie_read_memo_set(struct mail *mail, uint64_t key)
{
	/* A reader changes nothing in another user's mailbox. */
	if (mailbox_is_readonly(mail->box) || mail->transaction->itrans == NULL ||
	    mailbox_get_namespace(mail->box)->type != MAIL_NAMESPACE_TYPE_PRIVATE)
		return;
	mail_index_update_ext(mail->transaction->itrans, mail->seq,
			      dovekie_read_memo_ext(mail->box), &key, NULL);
}

/* A message the save hooks accepted (APPEND, COPY, a delivery) was judged
   by the module under the current read policy, so its reads and the sync
   check need not judge it again: the saved copy gets the read memo, in
   the save's own transaction (an appended record until the commit). */
static void dovekie_save_memo(struct dovekie_user *duser, struct mail *dest_mail)
{
	uint64_t memo;

	/* dest_mail is set up for the new message by the save or the copy
	   (saving, with its sequence in the save's transaction). */
	if (dest_mail != NULL && dest_mail->saving && dest_mail->seq != 0 &&
	    dovekie_bridge_av_read_memo_key(duser->bridge, &memo) == 0)
		dovekie_read_memo_set(dest_mail, memo);
}

/* ---- save and copy ---- */

static int dovekie_save_finish(struct mail_save_context *ctx)
{
	struct mailbox *box = ctx->transaction->box;
	union mailbox_module_context *mbox = DOVEKIE_CONTEXT(box);
	struct dovekie_user *duser = dovekie_box_user(box);
	enum dovekie_bridge_verdict verdict;
	char reason[DOVEKIE_BRIDGE_REASON_MAX];
	enum dovekie_read_failure failure;
	const char *error;

	if (mbox->super.save_finish(ctx) < 0)
		return -1;
	/* A copy that fell back to saving was judged by dovekie_copy(). */
	if (ctx->copying_via_save || duser == NULL ||
	    !dovekie_bridge_wants_save(duser->bridge))
		return 0;
	/* A quarantine move's copy, a notice, a release: ours. */
	if (dovekie_transaction_owns(ctx->transaction, DOVEKIE_OWN_SAVES))
		return 0;
	if (duser->delivery != NULL) {
		if (duser->delivery->accepted)
			dovekie_save_memo(duser, ctx->dest_mail);
		return 0;
	}

	if (dovekie_is_delivery(box->storage->user)) {
		/* Unreadable, a delivery is a tempfail that the MTA retries. */
		verdict = dovekie_check_mail(duser, ctx->dest_mail, TRUE,
			DOVEKIE_BRIDGE_SAVE_DELIVERY, mailbox_get_vname(box), reason);
	} else {
		verdict = dovekie_check_mail_int(duser, ctx->dest_mail, TRUE,
			DOVEKIE_BRIDGE_SAVE_APPEND, mailbox_get_vname(box), FALSE,
			reason, NULL, &failure, &error);
		if (failure != DOVEKIE_READ_OK) {
			dovekie_set_unreadable_error(duser, box, ctx->dest_mail, error);
			return -1;
		}
	}
	if (verdict == DOVEKIE_BRIDGE_ACCEPT) {
		dovekie_save_memo(duser, ctx->dest_mail);
		return 0;
	}
	/* The caller rolls the transaction back, which drops the saved file. */
	dovekie_set_verdict_error(box, verdict, reason);
	return -1;
}

/* A delivery the LMTP hook judged is being stored: keep a diverted
   message out of any other mailbox (mail_deliver falls back to INBOX when
   the default mailbox fails), and add the verdict's keyword. */
static int
dovekie_delivery_prepare(struct mail_save_context *ctx, struct dovekie_user *duser)
{
	struct mailbox *box = ctx->transaction->box;
	const struct dovekie_delivery *delivery = duser->delivery;
	struct mail_keywords *ours, *merged;
	const char *names[2];

	if (delivery->mailbox != NULL &&
	    !dovekie_quarantine_is(box->storage->user, delivery->mailbox,
				   mailbox_get_vname(box))) {
		e_error(duser->event, "not storing a message diverted to %s in %s",
			dovekie_log_quote(delivery->mailbox),
			dovekie_log_quote(mailbox_get_vname(box)));
		mail_storage_set_error(box->storage, MAIL_ERROR_TEMP,
			"Message held for quarantine, try again later");
		return -1;
	}
	if (delivery->keyword == NULL)
		return 0;
	names[0] = delivery->keyword;
	names[1] = NULL;
	if (mailbox_keywords_create(box, names, &ours) < 0) {
		e_error(duser->event, "cannot add keyword %s: %s",
			delivery->keyword,
			mailbox_get_last_internal_error(box, NULL));
		return -1;
	}
	if (ctx->data.keywords != NULL) {
		merged = mailbox_keywords_merge(ctx->data.keywords, ours);
		mailbox_keywords_unref(&ours);
		ours = merged;
	}
	mailbox_save_set_flags(ctx, ctx->data.flags | ctx->data.pvt_flags, ours);
	mailbox_keywords_unref(&ours);
	return 0;
}

static int dovekie_copy(struct mail_save_context *ctx, struct mail *mail)
{
	struct mailbox *box = ctx->transaction->box;
	union mailbox_module_context *mbox = DOVEKIE_CONTEXT(box);
	struct dovekie_user *duser = dovekie_box_user(box);
	struct dovekie_transaction *source_trans = DOVEKIE_CONTEXT(mail->transaction);
	struct dovekie_mail *source = DOVEKIE_MAIL_CONTEXT((struct mail_private *)mail);
	enum dovekie_bridge_verdict verdict;
	char reason[DOVEKIE_BRIDGE_REASON_MAX];
	enum dovekie_read_failure failure;
	struct mail *dest_mail;
	const char *error;
	int origin, ret;

	if (!ctx->saving && source_trans != NULL)
		source_trans->copy_source = TRUE;
	/* A quarantine move or a release: judged already. */
	if (dovekie_transaction_owns(ctx->transaction, DOVEKIE_OWN_SAVES))
		return mbox->super.copy(ctx, mail);
	if (duser != NULL && duser->delivery != NULL && ctx->saving) {
		if (dovekie_delivery_prepare(ctx, duser) < 0) {
			mailbox_save_cancel(&ctx);
			return -1;
		}
		dest_mail = ctx->dest_mail;
		ret = mbox->super.copy(ctx, mail);
		if (ret == 0 && duser->delivery->accepted)
			dovekie_save_memo(duser, dest_mail);
		return ret;
	}
	if (duser == NULL || duser->delivery != NULL ||
	    !dovekie_bridge_wants_save(duser->bridge))
		return mbox->super.copy(ctx, mail);

	if (!ctx->saving)
		origin = DOVEKIE_BRIDGE_SAVE_COPY;
	else if (dovekie_is_delivery(box->storage->user))
		origin = DOVEKIE_BRIDGE_SAVE_DELIVERY;
	else
		origin = DOVEKIE_BRIDGE_SAVE_APPEND;
	verdict = dovekie_check_mail_int(duser, mail, TRUE, origin,
					 mailbox_get_vname(box), TRUE, reason, NULL,
					 &failure, &error);
	if (failure == DOVEKIE_READ_EXPUNGED) {
		/* Gone since the COPY began: imap skips it as Dovecot does. */
		e_debug(duser->event, "%s", error);
		mail_set_expunged(mail);
		mailbox_save_cancel(&ctx);
		return -1;
	}
	if (failure != DOVEKIE_READ_OK && origin != DOVEKIE_BRIDGE_SAVE_DELIVERY) {
		dovekie_set_unreadable_error(duser, box, mail, error);
		mailbox_save_cancel(&ctx);
		return -1;
	}
	/* A delivery whose source cannot be read is a tempfail (the MTA
	   retries); the storage failure is Dovecot's to log, ours a warning. */
	if (failure != DOVEKIE_READ_OK)
		e_warning(duser->event, "%s", error);
	if (verdict != DOVEKIE_BRIDGE_ACCEPT) {
		dovekie_set_verdict_error(box, verdict, reason);
		mailbox_save_cancel(&ctx);
		return -1;
	}
	/* Judged. A copy that cannot hard link (the destination deleted under
	   it, another file system) reads the source to write it: that read is
	   the copy's, not the client's, and the read hook leaves it alone.
	   Judged again, the source would be read in imap's own mail and
	   transaction, as the isolated read above avoids: when the copy then
	   fails, imap holds the storage's error text for its reply while it
	   finishes that mail and transaction, and work we left there pushes
	   and pops the storage error, which frees that text. */
	dest_mail = ctx->dest_mail;
	if (source != NULL)
		source->own_reads++;
	ret = mbox->super.copy(ctx, mail);
	if (source != NULL)
		source->own_reads--;
	if (ret == 0)
		dovekie_save_memo(duser, dest_mail);
	return ret;
}

/* imap's COPY takes the storage's error text when a message fails to copy,
   commits the COPY's source transaction, and only then sends that text.
   When the source transaction has changes (linking a message reads its
   virtual size, which Dovecot adds to the transaction as a "vsize" index
   record), the mailbox list index's commit hook pushes and pops the
   storage error, and the pop frees the text imap is about to send
   (Dovecot's own bug, in 2.3 and 2.4). Stock Dovecot meets it only when a
   DELETE lands between two links of one COPY; we make it common: we
   refuse messages in the middle of a COPY, and judging each message
   stretches the COPY. So the source transaction's commit works on a copy
   of the text, and the text the caller holds is put back afterwards; if
   the commit set an error of its own, the caller may still send the old
   one, which is kept until the next such commit or the end of the
   session. */
static int
dovekie_transaction_commit(struct mailbox_transaction_context *t,
			   struct mail_transaction_commit_changes *changes_r)
{
	struct mail_storage *storage = t->box->storage;
	union mailbox_module_context *mbox = DOVEKIE_CONTEXT(t->box);
	struct dovekie_transaction *dt = DOVEKIE_CONTEXT(t);
	struct dovekie_user *duser = dovekie_box_user(t->box);
	char *held = storage->error_string;
	int ret;

	if (dt == NULL || !dt->copy_source || held == NULL || duser == NULL) {
		ret = mbox->super.transaction_commit(t, changes_r);
		i_free(dt);
		return ret;
	}
	i_free(dt);
	storage->error_string = i_strdup(held);
	ret = mbox->super.transaction_commit(t, changes_r);
	if (storage->error_string != NULL && strcmp(storage->error_string, held) == 0) {
		i_free(storage->error_string);
		storage->error_string = held;
	} else {
		i_free(duser->held_error);
		duser->held_error = held;
	}
	return ret;
}

static struct mailbox_transaction_context *
dovekie_transaction_begin_hook(struct mailbox *box, enum mailbox_transaction_flags flags,
			       const char *reason)
{
	union mailbox_module_context *mbox = DOVEKIE_CONTEXT(box);
	struct mailbox_transaction_context *t;
	struct dovekie_transaction *dt;

	t = mbox->super.transaction_begin(box, flags, reason);
	dt = i_new(struct dovekie_transaction, 1);
	MODULE_CONTEXT_SET(t, dovekie_storage_module, dt);
	return t;
}

static void dovekie_transaction_rollback(struct mailbox_transaction_context *t)
{
	union mailbox_module_context *mbox = DOVEKIE_CONTEXT(t->box);
	struct dovekie_transaction *dt = DOVEKIE_CONTEXT(t);

	mbox->super.transaction_rollback(t);
	i_free(dt);
}

/* ---- mailbox sync ---- */

/* Before the session's view learns of new mail, it is judged and
   detections leave the mailbox (dovekie-av-sync.c): the sync that follows
   sees them appended and expunged at once, and no client can fetch them. */
static struct mailbox_sync_context *
dovekie_sync_init(struct mailbox *box, enum mailbox_sync_flags flags)
{
	struct dovekie_mailbox *dbox = DOVEKIE_CONTEXT(box);
	struct dovekie_user *duser = dovekie_box_user(box);

	if (duser != NULL && !dbox->av_sync_own)
		dovekie_av_sync(duser, box, &dbox->av_sync_box);
	return dbox->module_ctx.super.sync_init(box, flags);
}

static void dovekie_close(struct mailbox *box)
{
	struct dovekie_mailbox *dbox = DOVEKIE_CONTEXT(box);

	if (dbox->av_sync_box != NULL)
		mailbox_free(&dbox->av_sync_box);
	dbox->module_ctx.super.close(box);
}

/* ---- POP3 session start ---- */

static int
dovekie_sync_deinit(struct mailbox_sync_context *ctx,
		    struct mailbox_sync_status *status_r)
{
	struct mailbox *box = ctx->box;
	union mailbox_module_context *mbox = DOVEKIE_CONTEXT(box);
	struct dovekie_user *duser = dovekie_box_user(box);
	struct mailbox_status status;
	int ret;

	ret = mbox->super.sync_deinit(ctx, status_r);
	if (ret == 0 && duser != NULL && !duser->pop3_started) {
		/* The first sync of the POP3 INBOX is what pop3 lists from. */
		duser->pop3_started = TRUE;
		mailbox_get_open_status(box, STATUS_MESSAGES, &status);
		T_BEGIN {
			dovekie_bridge_pop3_start(duser->bridge,
				box->storage->user->username, status.messages);
		} T_END;
	}
	return ret;
}

void dovekie_mailbox_allocated(struct mailbox *box)
{
	struct mailbox_vfuncs *v = box->vlast;
	struct dovekie_user *duser = dovekie_box_user(box);
	struct dovekie_mailbox *dbox;

	if (duser == NULL || !dovekie_bridge_active(duser->bridge))
		return;

	dbox = p_new(box->pool, struct dovekie_mailbox, 1);
	dbox->module_ctx.super = *v;
	box->vlast = &dbox->module_ctx.super;
	v->save_finish = dovekie_save_finish;
	v->copy = dovekie_copy;
	v->transaction_begin = dovekie_transaction_begin_hook;
	v->transaction_commit = dovekie_transaction_commit;
	v->transaction_rollback = dovekie_transaction_rollback;
	if (dovekie_av_sync_wanted(duser, box)) {
		v->sync_init = dovekie_sync_init;
		v->close = dovekie_close;
	}
	if ((box->flags & MAILBOX_FLAG_POP3_SESSION) != 0)
		v->sync_deinit = dovekie_sync_deinit;
	MODULE_CONTEXT_SET(box, dovekie_storage_module, dbox);
}

/* ---- read and expunge ---- */

/* Fails a read of a message whose bytes are not served. INVALIDDATA is the
   one storage error Dovecot's imap answers with a tagged NO (NO [PARSE]
   and the reason) instead of BYE, whatever imap_fetch_failure says; any
   other refusal ends the session and the client reconnects and asks
   again. pop3 answers every failed read "-ERR Message N expunged." */
static void dovekie_refuse_read(struct mail *_mail, const char *reason)
{
	mail_storage_set_error(_mail->box->storage, MAIL_ERROR_INVALIDDATA, reason);
}

/* Whether _mail lies in the user's quarantine mailbox. Its originals are
   never served raw to imap or pop3: a client that syncs every folder gets
   their headers (sender, subject, date) and a NO for their bodies, never
   the virus and never BYE. doveadm reads them (release, fetch). */
static bool
dovekie_mail_in_quarantine(struct dovekie_user *duser, struct dovekie_mail *dmail,
			   struct mail *_mail)
{
	const char *quarantine;

	if (dmail->in_quarantine == 0) T_BEGIN {
		dmail->in_quarantine =
			dovekie_bridge_av_quarantine_mailbox(duser->bridge, &quarantine) == 0 &&
			quarantine[0] != '\0' &&
			dovekie_quarantine_holds(_mail->box->storage->user, quarantine,
						 _mail->box) ? 2 : 1;
	} T_END;
	return dmail->in_quarantine == 2;
}

#define DOVEKIE_QUARANTINE_READ_REASON \
	"The message is held in quarantine by the virus scanner; " \
	"ask your mail administrator if you need it"

/* Every read of a message's bytes by a client (get_stream with and without
   the body, get_binary_stream and the binary cache behind it, and through
   them SEARCH, snippets and POP3) passes here first. Returns 1 when
   Dovecot may serve the message, -1 with the storage error set when
   nothing may be served. Nothing here changes the mailbox: an infected
   message is refused and stays where it is until a sync or the rescan
   moves it (issue 16, invariant 2). */
static int dovekie_guard_read(struct mail *_mail, bool get_body)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct dovekie_mail *dmail = DOVEKIE_MAIL_CONTEXT(mail);
	struct dovekie_user *duser = dovekie_box_user(_mail->box);
	struct mail_user *user = _mail->box->storage->user;
	enum dovekie_bridge_verdict verdict;
	struct dovekie_bridge_result result;
	const char *module, *why;
	uint64_t memo;
	bool pop3, have_memo;
	int origin;

	if (duser == NULL)
		return 1;
	pop3 = dovekie_service_is(user, "pop3");
	/* Headers alone (ENVELOPE, BODY[HEADER]) are served as Dovecot has
	   them: the scan judges a message by its body. */
	if (!get_body || dmail->own_reads > 0 ||
	    dovekie_transaction_owns(_mail->transaction, DOVEKIE_OWN_READS) ||
	    _mail->uid == 0 || _mail->saving || !dovekie_bridge_wants_read(duser->bridge))
		return 1;
	if (dovekie_service_is(user, "imap"))
		origin = DOVEKIE_BRIDGE_READ_FETCH;
	else if (pop3)
		origin = DOVEKIE_BRIDGE_READ_POP3;
	else
		return 1;
	if (dmail->read_checked_uid == _mail->uid)
		return 1;
	if (dovekie_bridge_guarded(duser->bridge, DOVEKIE_BRIDGE_GUARD_READ, &module, &why)) {
		if (dmail->guard_logged_uid != _mail->uid) {
			dmail->guard_logged_uid = _mail->uid;
			e_error(duser->event, "refusing to read uid=%u from %s: "
				"module %s is configured but not running: %s",
				_mail->uid, dovekie_log_quote(mailbox_get_vname(_mail->box)),
				module, why);
		}
		dovekie_set_read_tempfail(_mail, DOVEKIE_BRIDGE_GUARD_REASON);
		return -1;
	}
	if (dovekie_mail_in_quarantine(duser, dmail, _mail)) {
		dovekie_refuse_read(_mail, DOVEKIE_QUARANTINE_READ_REASON);
		return -1;
	}
	dmail->read_checked_uid = _mail->uid;
	have_memo = dovekie_bridge_av_read_memo_key(duser->bridge, &memo) == 0;
	if (have_memo && dovekie_read_memo_holds(_mail, memo))
		return 1;
	if (dovekie_check_read(duser, _mail, origin, &result, &verdict) < 0) {
		dmail->read_checked_uid = 0;
		return -1;
	}
	switch (verdict) {
	case DOVEKIE_BRIDGE_ACCEPT:
		if (have_memo)
			dovekie_read_memo_set(_mail, memo);
		return 1;
	case DOVEKIE_BRIDGE_TEMPFAIL:
		dmail->read_checked_uid = 0;
		dovekie_set_read_tempfail(_mail, result.reason);
		return -1;
	default:
		dmail->read_checked_uid = 0;
		/* POP3 has no NO [PARSE]: without this, pop3 says "-ERR Message
		   N expunged." of a message that is still there. -ERR
		   [SYS/TEMP] with the signature tells the truth: it cannot be
		   read now, and the next sync or the rescan moves it. */
		if (pop3)
			dovekie_set_read_tempfail(_mail, result.reason);
		else
			dovekie_refuse_read(_mail, result.reason);
		return -1;
	}
}

static int
dovekie_mail_get_stream(struct mail *_mail, bool get_body,
			struct message_size *hdr_size,
			struct message_size *body_size,
			struct istream **stream_r)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct dovekie_mail *dmail = DOVEKIE_MAIL_CONTEXT(mail);
	int ret;

	ret = dovekie_guard_read(_mail, get_body);
	if (ret < 0)
		return ret;
	return dmail->module_ctx.super.get_stream(_mail, get_body, hdr_size,
						  body_size, stream_r);
}

/* BINARY[], BINARY[n] and BINARY.SIZE[n]: index_mail decodes from its own
   open stream and keeps the last decoded part per storage (the binary
   cache), which it serves again without a get_stream call, so the message
   is judged here too. */
#if DOVECOT_PREREQ(2, 4, 0)
/* 2.4 returns the decoded part's size, lines and flags in one struct. */
#  define BINARY_PROPS_PARAMS struct mail_binary_properties *bprops_r
#  define BINARY_PROPS_ARGS bprops_r
#else
#  define BINARY_PROPS_PARAMS uoff_t *size_r, unsigned int *lines_r, bool *binary_r
#  define BINARY_PROPS_ARGS size_r, lines_r, binary_r
#endif
static int
dovekie_mail_get_binary_stream(struct mail *_mail, const struct message_part *part,
			       bool include_hdr, BINARY_PROPS_PARAMS,
			       struct istream **stream_r)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct dovekie_mail *dmail = DOVEKIE_MAIL_CONTEXT(mail);

	if (dovekie_guard_read(_mail, TRUE) < 0)
		return -1;
	return dmail->module_ctx.super.get_binary_stream(_mail, part, include_hdr,
							 BINARY_PROPS_ARGS, stream_r);
}

static void dovekie_mail_expunge(struct mail *_mail)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct dovekie_mail *dmail = DOVEKIE_MAIL_CONTEXT(mail);
	struct dovekie_user *duser = dovekie_box_user(_mail->box);
	struct dovekie_bridge_message msg;
	uoff_t size;
	bool allow = TRUE;

	if (duser != NULL && !dovekie_transaction_owns(_mail->transaction, DOVEKIE_OWN_MOVES) &&
	    dovekie_bridge_wants_expunge(duser->bridge)) {
		i_zero(&msg);
		msg.mailbox = mailbox_get_vname(_mail->box);
		msg.uid = _mail->uid;
		msg.size = mail_get_physical_size(_mail, &size) < 0 ? -1 : (int64_t)size;
		T_BEGIN {
			allow = dovekie_bridge_expunge(duser->bridge, &msg,
				(_mail->box->flags & MAILBOX_FLAG_POP3_SESSION) != 0);
		} T_END;
	}
	if (allow)
		dmail->module_ctx.super.expunge(_mail);
}

void dovekie_mail_allocated(struct mail *_mail)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct mail_vfuncs *v = mail->vlast;
	struct dovekie_user *duser = dovekie_box_user(_mail->box);
	struct dovekie_mail *dmail;

	if (duser == NULL || !dovekie_bridge_active(duser->bridge))
		return;

	dmail = p_new(mail->pool, struct dovekie_mail, 1);
	dmail->module_ctx.super = *v;
	mail->vlast = &dmail->module_ctx.super;
	v->get_stream = dovekie_mail_get_stream;
	v->get_binary_stream = dovekie_mail_get_binary_stream;
	v->expunge = dovekie_mail_expunge;
	MODULE_CONTEXT_SET(mail, dovekie_mail_module, dmail);
}
