/* The sync check: new mail is judged when a session first syncs it.
 *
 * Mail can reach a mailbox without passing our save hooks (another MDA
 * writing into the Maildir, a restore, mail stored before the module was
 * enabled). Before an imap or pop3 session's view learns of such mail,
 * this judges it in a mailbox instance of our own and moves what the
 * module diverts into quarantine with an ordinary copy and expunge. The
 * session's own sync then sees the message appended and expunged at once
 * and never shows it, so no client read ever meets a detection that moves
 * (issue 16, invariant 2), and Dovecot's cache never holds a message that
 * changes under a FETCH or SEARCH.
 *
 * What was judged is a mark in the mailbox index (the highest UID up to
 * which every message was judged), so a sync that finds nothing new costs
 * a header lookup. The moves run under a lock file in the mailbox's index
 * directory, and the mark and the listing are read again under it: of N
 * sessions syncing at once, the first moves the message and the others
 * find it gone (invariant 3). The rescan takes the same lock.
 */
#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "file-lock.h"
#include "mail-index.h"
#include "mail-namespace.h"
#include "mail-search-build.h"
#include "mail-storage-private.h"
#include "seq-range-array.h"
#include "dovekie-plugin.h"
#include "dovekie-antivirus.h"
#include "dovekie-quarantine.h"
#include "dovekie-storage.h"
#include "dovekie-av-sync.h"
#include "dovekie-log-quote.h"

#define AV_SYNC_EXT_NAME "dovekie-av-sync"
#define AV_SYNC_LOCK_NAME "dovekie-av.lock"
/* A session waits this long for another one's moves (mail_max_lock_timeout
   may shorten it). */
#define AV_SYNC_LOCK_SECS 30
/* After the scanner failed at a sync, the user's syncs leave new mail to
   the read hooks for this long. */
#define AV_SYNC_RETRY_SECS 60

struct av_sync_header {
	/* Every message up to this UID was judged at a sync. */
	uint32_t judged_uid;
};

/* A message moved by this sync, for its notice and log line. */
struct av_sync_moved {
	uint32_t uid;
	enum mail_flags flags;
	time_t received;
	const char *notice;
	const char *reason;
	const char *quarantine;
};

bool dovekie_av_sync_wanted(struct dovekie_user *duser, struct mailbox *box)
{
	struct mail_user *user = box->storage->user;

	if (user->service == NULL ||
	    (strcmp(user->service, "imap") != 0 && strcmp(user->service, "pop3") != 0))
		return FALSE;
	/* Another user's session never moves: not in a shared or public
	   namespace, nor in the namespace Dovecot gives a shared namespace's
	   owner in the reader's process (user->creator is the reader). */
	if (mailbox_get_namespace(box)->type != MAIL_NAMESPACE_TYPE_PRIVATE ||
	    user->creator != NULL)
		return FALSE;
	return dovekie_bridge_has_antivirus(duser->bridge) &&
		dovekie_bridge_wants_read(duser->bridge);
}

int dovekie_av_sync_lock(struct mailbox *box, struct file_lock **lock_r,
			 const char **error_r)
{
	return mailbox_lock_file_create(box, AV_SYNC_LOCK_NAME, AV_SYNC_LOCK_SECS,
					lock_r, error_r);
}

static uint32_t av_sync_mark(struct mailbox *box, uint32_t ext_id)
{
	struct av_sync_header hdr;
	const void *data;
	size_t size;

	mail_index_get_header_ext(box->view, ext_id, &data, &size);
	if (size < sizeof(hdr))
		return 0;
	memcpy(&hdr, data, sizeof(hdr));
	return hdr.judged_uid;
}

/* The UIDs after `after`, ascending, at most `max`: the first sync after
   the module is enabled on a large mailbox judges that many and the
   following syncs go on; what is not judged yet is still judged by the
   read hooks before any byte of it is served. */
static int
av_sync_list(struct mailbox *box, uint32_t after, unsigned int max,
	     ARRAY_TYPE(uint32_t) *uids)
{
	struct mailbox_transaction_context *t;
	struct mail_search_args *args;
	struct mail_search_arg *arg;
	struct mail_search_context *search;
	struct mail *mail;

	args = mail_search_build_init();
	arg = mail_search_build_add(args, SEARCH_UIDSET);
	p_array_init(&arg->value.seqset, args->pool, 1);
	seq_range_array_add_range(&arg->value.seqset, after + 1, (uint32_t)-1);
	t = mailbox_transaction_begin(box, 0, "dovekie sync list");
	search = mailbox_search_init(t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	while (array_count(uids) < max && mailbox_search_next(search, &mail))
		array_push_back(uids, &mail->uid);
	int ret = mailbox_search_deinit(&search);
	mailbox_transaction_rollback(&t);
	return ret;
}

/* Moves mail into the quarantine named by result (one transaction per
   quarantine mailbox: in practice there is one). */
static int
av_sync_move(struct dovekie_user *duser, struct mail *mail,
	     const struct dovekie_bridge_result *result, struct mailbox **qbox,
	     struct mailbox_transaction_context **qt, const char **error_r)
{
	struct mail_user *user = mail->box->storage->user;

	if (*qbox != NULL &&
	    strcmp(mailbox_get_vname(*qbox), result->mailbox) != 0) {
		*error_r = t_strdup_printf("a second quarantine mailbox %s in one sync",
					   dovekie_log_quote(result->mailbox));
		return -1;
	}
	if (*qbox == NULL) {
		*qbox = dovekie_quarantine_open(user, duser->event, result->mailbox, error_r);
		if (*qbox == NULL)
			return -1;
		*qt = dovekie_transaction_begin(*qbox, MAILBOX_TRANSACTION_FLAG_EXTERNAL,
						"dovekie sync quarantine", DOVEKIE_OWN_SAVES);
	}
	return dovekie_quarantine_move(mail, *qt, result->keyword, error_r);
}

/* Judges the listed UIDs of box (ours, synced, under the lock), moves the
   diverted ones, stores their notices and advances the mark over what
   was judged without a gap. */
static void
av_sync_judge(struct dovekie_user *duser, struct mailbox *box, uint32_t ext_id,
	      uint32_t mark, const ARRAY_TYPE(uint32_t) *uids)
{
	struct mailbox_transaction_context *t, *qt = NULL;
	struct mail_transaction_commit_changes changes;
	struct mailbox *qbox = NULL;
	struct dovekie_bridge_result result;
	struct av_sync_header hdr;
	ARRAY(struct av_sync_moved) moved;
	struct av_sync_moved *m;
	enum dovekie_bridge_verdict verdict;
	const char *vname = mailbox_get_vname(box), *error;
	const uint32_t *uidp;
	struct mail *mail;
	uint32_t new_mark = mark;
	uint64_t memo;
	bool contiguous = TRUE, done, have_memo;
	int ret = 0;

	/* Messages accepted here are remembered for the reads, as a read's
	   own acceptance is: a read of them then asks nothing. */
	have_memo = dovekie_bridge_av_read_memo_key(duser->bridge, &memo) == 0;
	t_array_init(&moved, 4);
	/* Its reads are the check's, its expunges quarantine moves. */
	t = dovekie_transaction_begin(box, 0, "dovekie sync",
				      DOVEKIE_OWN_READS | DOVEKIE_OWN_MOVES);
	mail = mail_alloc(t, 0, NULL);
	array_foreach(uids, uidp) {
		done = TRUE;
		if (!mail_set_uid(mail, *uidp)) {
			/* expunged since the listing */
		} else if (have_memo && dovekie_read_memo_holds(mail, memo)) {
			/* Judged when it was saved (APPEND, COPY, a delivery)
			   under the current read policy. */
		} else {
			verdict = dovekie_check_stored(duser, mail, DOVEKIE_BRIDGE_READ_SYNC,
						       &result, &error);
			if (error != NULL) {
				e_warning(duser->event, "sync: cannot read uid=%u of %s: %s",
					  *uidp, dovekie_log_quote(vname), error);
				done = FALSE;
			} else if (verdict == DOVEKIE_BRIDGE_TEMPFAIL) {
				/* Logged by the module. The scanner is down or
				   hung: asking it about every other message would
				   hold this sync for a timeout each, and so would
				   every sync of the next minute. Reads guard what
				   is left meanwhile. */
				e_warning(duser->event, "sync: %s: not judging new mail for %u s: "
					  "the scanner failed on uid=%u", dovekie_log_quote(vname),
					  AV_SYNC_RETRY_SECS, *uidp);
				duser->av_sync_retry_after = ioloop_time + AV_SYNC_RETRY_SECS;
				contiguous = FALSE;
				break;
			} else if (verdict == DOVEKIE_BRIDGE_ACCEPT) {
				if (have_memo)
					dovekie_read_memo_set(mail, memo);
			} else if (verdict == DOVEKIE_BRIDGE_DIVERT &&
				   dovekie_quarantine_is(box->storage->user, result.mailbox, vname)) {
				/* Already in quarantine: it stays, refused to readers. */
			} else if (verdict == DOVEKIE_BRIDGE_DIVERT) {
				m = array_append_space(&moved);
				m->uid = *uidp;
				m->flags = mail_get_flags(mail);
				if (mail_get_received_date(mail, &m->received) < 0)
					m->received = (time_t)-1;
				m->notice = dovekie_quarantine_notice_text(duser->bridge, mail,
					result.mailbox, result.reason, &error);
				if (m->notice == NULL) {
					/* The move goes on: the notice is a courtesy. */
					e_error(duser->event, "sync: no notice for uid=%u of %s: %s",
						*uidp, dovekie_log_quote(vname), error);
				}
				m->reason = t_strdup(result.reason);
				m->quarantine = t_strdup(result.mailbox);
				if (av_sync_move(duser, mail, &result, &qbox, &qt, &error) < 0) {
					e_error(duser->event, "sync: cannot quarantine uid=%u of %s: %s",
						*uidp, dovekie_log_quote(vname), error);
					array_pop_back(&moved);
					done = FALSE;
				}
			}
		}
		if (done && contiguous)
			new_mark = *uidp;
		else
			contiguous = FALSE;
	}
	mail_free(&mail);

	/* The copies first: a crash between the commits leaves a duplicate in
	   quarantine, never a lost message. */
	if (qt != NULL && mailbox_transaction_commit_get_changes(&qt, &changes) < 0) {
		e_error(duser->event, "sync: cannot commit to %s: %s",
			dovekie_log_quote(mailbox_get_vname(qbox)),
			mailbox_get_last_internal_error(qbox, NULL));
		ret = -1;
	} else if (qbox != NULL) {
		dovekie_quarantine_record_origin(duser, &changes, vname);
		pool_unref(&changes.pool);
	}
	if (qbox != NULL)
		mailbox_free(&qbox);
	if (ret < 0) {
		/* Nothing moved, the mark stays: the next sync tries again. */
		mailbox_transaction_rollback(&t);
		return;
	}
	/* The notices before the expunges: a session that syncs meanwhile
	   sees mail beyond the mark and waits for our lock, so no view ever
	   holds the mailbox without both. */
	array_foreach_modifiable(&moved, m) {
		if (m->notice != NULL &&
		    dovekie_quarantine_store_notice(box, m->flags, m->received,
						    m->notice, &error) < 0)
			e_error(duser->event, "%s", error);
	}
	if (new_mark > mark) {
		i_zero(&hdr);
		hdr.judged_uid = new_mark;
		mail_index_update_header_ext(t->itrans, ext_id, 0, &hdr, sizeof(hdr));
	}
	/* Not EXTERNAL: that marks expunges as done already, and maildir
	   would keep the file. The sync is what makes maildir unlink it. */
	if (mailbox_transaction_commit(&t) < 0 || mailbox_sync(box, 0) < 0) {
		/* Deleted under us by another session, a race Dovecot answers
		   the sessions itself: the mail went with the mailbox, and what
		   moved is in quarantine already. With nothing moved, only the
		   mark and the read memos were lost (another session's DELETE
		   and CREATE replaced the index under us): the next sync checks
		   again, a warning. An Error is for moved mail left behind. */
		bool moved_any = array_count(&moved) > 0;

		if (!moved_any) {
			e_warning(duser->event, "sync: cannot record the check of %s "
				  "(the next sync checks again): %s", dovekie_log_quote(vname),
				  mailbox_get_last_internal_error(box, NULL));
			return;
		}
		e_log(duser->event, mailbox_get_last_mail_error(box) == MAIL_ERROR_NOTFOUND ?
		      LOG_TYPE_WARNING : LOG_TYPE_ERROR,
		      "sync: cannot expunge from %s after quarantining: %s",
		      dovekie_log_quote(vname), mailbox_get_last_internal_error(box, NULL));
		return;
	}
	array_foreach_modifiable(&moved, m) {
		e_info(duser->event, "moved uid=%u from %s to %s: %s", m->uid,
		       dovekie_log_quote(vname), dovekie_log_quote(m->quarantine), m->reason);
	}
}

static void av_sync_box(struct dovekie_user *duser, struct mailbox *box)
{
	struct mailbox_status status;
	struct file_lock *lock;
	ARRAY_TYPE(uint32_t) uids;
	const char *vname = mailbox_get_vname(box), *error;
	uint32_t ext_id, mark;
	int ret;

	/* The sync makes mail another MDA wrote known to the index. */
	if (mailbox_sync(box, 0) < 0) {
		e_warning(duser->event, "sync: cannot sync %s: %s", dovekie_log_quote(vname),
			  mailbox_get_last_internal_error(box, NULL));
		return;
	}
	ext_id = mail_index_ext_register(box->index, AV_SYNC_EXT_NAME,
					 sizeof(struct av_sync_header), 0, 0);
	mailbox_get_open_status(box, STATUS_UIDNEXT, &status);
	if (status.uidnext <= av_sync_mark(box, ext_id) + 1)
		return;

	ret = dovekie_av_sync_lock(box, &lock, &error);
	if (ret <= 0) {
		e_warning(duser->event, "sync: %s: not judging new mail now: %s",
			  dovekie_log_quote(vname), error);
		return;
	}
	/* Another session may have moved and marked while we waited. */
	if (mailbox_sync(box, 0) < 0) {
		e_warning(duser->event, "sync: cannot sync %s: %s", dovekie_log_quote(vname),
			  mailbox_get_last_internal_error(box, NULL));
	} else {
		mark = av_sync_mark(box, ext_id);
		t_array_init(&uids, 64);
		if (av_sync_list(box, mark, dovekie_bridge_av_sync_max_messages(duser->bridge),
				 &uids) < 0) {
			e_warning(duser->event, "sync: cannot list %s: %s", dovekie_log_quote(vname),
				  mailbox_get_last_internal_error(box, NULL));
		} else if (array_count(&uids) > 0) {
			av_sync_judge(duser, box, ext_id, mark, &uids);
		}
	}
	file_lock_free(&lock);
}

void dovekie_av_sync(struct dovekie_user *duser, struct mailbox *box,
		     struct mailbox **own_box)
{
	const char *quarantine, *module, *why;

	/* A failed module: reads refuse everything, nothing can be judged.
	   The quarantine mailbox: nothing to move, and its bodies are never
	   served to imap or pop3. */
	if (ioloop_time < duser->av_sync_retry_after || !dovekie_av_sync_wanted(duser, box) ||
	    dovekie_bridge_guarded(duser->bridge, DOVEKIE_BRIDGE_GUARD_READ, &module, &why))
		return;
	if (dovekie_bridge_av_quarantine_mailbox(duser->bridge, &quarantine) == 0 &&
	    quarantine[0] != '\0' &&
	    dovekie_quarantine_is(box->storage->user, quarantine, mailbox_get_vname(box)))
		return;
	/* A mailbox instance of our own: box's view must learn of the new
	   mail only in its own sync, with the moves already done. Kept open,
	   a sync that finds nothing new costs its sync and a header lookup.
	   Its own syncs (and the notices' saves into it) are this check's:
	   the instance is marked, and they never start another check. */
	if (*own_box == NULL) {
		*own_box = mailbox_alloc(box->list, mailbox_get_vname(box), 0);
		dovekie_mailbox_set_av_sync_own(*own_box);
	}
	T_BEGIN {
		av_sync_box(duser, *own_box);
	} T_END;
}
