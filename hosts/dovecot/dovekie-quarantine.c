/* The quarantine mailbox, and moving stored mail into it.
 *
 * Used by an LMTP DIVERT (the mailbox must exist first), by `doveadm
 * dovekie rescan` (moves new detections) and by a read DIVERT (the
 * antivirus module's dovekie_av_read_action = replace): the infected
 * message moves into quarantine and a notice takes its place in the
 * mailbox; a POP3 reader is served that notice instead of the message.
 */
#include "lib.h"
#include "array.h"
#include "hostpid.h"
#include "ioloop.h"
#include "istream.h"
#include "message-date.h"
#include "message-size.h"
#include "str.h"
#include "mail-namespace.h"
#include "mail-storage-private.h"
#include "dovekie-plugin.h"
#include "dovekie-quarantine.h"
#include "dovekie-log-quote.h"

/* Header values quoted in the notice: one line, at most this long. */
#define NOTICE_FIELD_MAX 200

int dovekie_quarantine_create(struct mail_user *user, struct event *event,
			      const char *vname, const char **error_r)
{
	struct mail_namespace *ns = mail_namespace_find(user->namespaces, vname);
	struct mailbox *box = mailbox_alloc(ns->list, vname, 0);
	enum mail_error error;
	const char *errstr;
	int ret = 0;

	if (mailbox_is_any_inbox(box)) {
		/* "inbox", or a namespace prefix that leads to INBOX: the
		   module cannot see namespaces, so this is the only check.
		   Creating it "exists" and the message would land in INBOX. */
		*error_r = t_strdup_printf("quarantine mailbox %s is INBOX (namespace "
			"prefix %s): not storing quarantined mail into INBOX",
			dovekie_log_quote(vname), dovekie_log_quote(ns->prefix));
		ret = -1;
	} else if (mailbox_create(box, NULL, FALSE) < 0) {
		errstr = mailbox_get_last_internal_error(box, &error);
		if (error != MAIL_ERROR_EXISTS) {
			*error_r = t_strdup_printf("cannot create mailbox %s: %s",
						   dovekie_log_quote(vname), errstr);
			ret = -1;
		}
	} else {
		e_info(event, "created mailbox %s (not subscribed)", dovekie_log_quote(vname));
	}
	mailbox_free(&box);
	return ret;
}

bool dovekie_quarantine_is(struct mail_user *user, const char *quarantine_vname,
			   const char *vname)
{
	struct mail_namespace *ns;
	struct mailbox *box;
	bool equal;

	if (quarantine_vname == NULL || vname == NULL)
		return FALSE;
	ns = mail_namespace_find(user->namespaces, quarantine_vname);
	box = mailbox_alloc(ns->list, quarantine_vname, 0);
	equal = mailbox_equals(box, mail_namespace_find(user->namespaces, vname), vname);
	mailbox_free(&box);
	return equal;
}

struct mailbox *
dovekie_quarantine_open(struct mail_user *user, struct event *event, const char *vname,
			const char **error_r)
{
	struct mail_namespace *ns;
	struct mailbox *box;

	if (dovekie_quarantine_create(user, event, vname, error_r) < 0)
		return NULL;
	ns = mail_namespace_find(user->namespaces, vname);
	box = mailbox_alloc(ns->list, vname, MAILBOX_FLAG_SAVEONLY);
	if (mailbox_open(box) < 0) {
		*error_r = t_strdup_printf("cannot open mailbox %s: %s", dovekie_log_quote(vname),
					   mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		return NULL;
	}
	return box;
}

int dovekie_quarantine_move(struct dovekie_user *duser, struct mail *mail,
			    struct mailbox_transaction_context *qt, const char **error_r)
{
	struct mail_save_context *save = mailbox_save_alloc(qt);
	bool was_checked = duser->delivery_checked, was_in_hook = duser->in_hook;
	bool was_moving = duser->moving;
	int ret;

	/* Judged already: our copy, read and expunge hooks stay out. */
	duser->delivery_checked = TRUE;
	duser->in_hook = TRUE;
	duser->moving = TRUE;
	ret = mailbox_move(&save, mail);
	duser->delivery_checked = was_checked;
	duser->in_hook = was_in_hook;
	duser->moving = was_moving;
	if (ret < 0) {
		*error_r = t_strdup_printf("cannot move uid=%u from %s to %s: %s", mail->uid,
			dovekie_log_quote(mailbox_get_vname(mail->box)),
			dovekie_log_quote(mailbox_get_vname(qt->box)),
			mailbox_get_last_internal_error(qt->box, NULL));
	}
	return ret;
}

/* A header value of the original, on one line and not too long. */
static const char *notice_field(struct mail *mail, const char *name)
{
	const char *value;
	string_t *str;
	size_t i;

	if (mail_get_first_header(mail, name, &value) <= 0)
		return "(none)";
	str = t_str_new(64);
	for (i = 0; value[i] != '\0' && str_len(str) < NOTICE_FIELD_MAX; i++)
		str_append_c(str, value[i] == '\r' || value[i] == '\n' ? ' ' : value[i]);
	return str_c(str);
}

/* The notice, CRLF throughout. `full` adds the original's headers; the
   short form is for small originals. */
static string_t *
notice_text(struct mail *mail, const char *vname, const char *reason, bool full)
{
	string_t *text = t_str_new(1024);
	const char *subject = notice_field(mail, "Subject");

	str_printfa(text, "From: Mail virus scanner <postmaster@%s>\r\n", my_hostname);
	if (full)
		str_printfa(text, "To: %s\r\n", notice_field(mail, "To"));
	str_printfa(text, "Subject: [virus removed] %s\r\n",
		    full ? subject : "message moved to quarantine");
	str_printfa(text, "Date: %s\r\n", message_date_create(ioloop_time));
	if (full) {
		str_printfa(text, "Message-ID: <dovekie.%ld.%s.%u@%s>\r\n",
			    (long)ioloop_time, my_pid, mail->uid, my_hostname);
	}
	str_append(text, "MIME-Version: 1.0\r\n"
		   "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
	str_printfa(text, "%s.\r\n", reason);
	str_printfa(text, "The message was moved to the mailbox \"%s\".\r\n", vname);
	if (full) {
		str_printfa(text, "\r\n  From:    %s\r\n  Subject: %s\r\n  Date:    %s\r\n\r\n"
			    "Ask your mail administrator if you need it.\r\n",
			    notice_field(mail, "From"), subject, notice_field(mail, "Date"));
	}
	return text;
}

/* Pads text with lines of spaces to exactly `size` bytes (it must not be
   longer). */
static void notice_pad(string_t *text, uoff_t size)
{
	uoff_t left = size - str_len(text);

	while (left >= 80) {
		str_append_max(text, "                                                                              ", 78);
		str_append(text, "\r\n");
		left -= 80;
	}
	if (left >= 2) {
		while (left-- > 2)
			str_append_c(text, ' ');
		str_append(text, "\r\n");
	} else if (left == 1) {
		str_append_c(text, ' ');
	}
}

static void
notice_sizes(const string_t *text, struct message_size *hdr_r, struct message_size *body_r)
{
	const unsigned char *data = str_data(text);
	size_t len = str_len(text), i, hdr_len = len;

	for (i = 0; i + 3 < len; i++) {
		if (memcmp(data + i, "\r\n\r\n", 4) == 0) {
			hdr_len = i + 4;
			break;
		}
	}
	i_zero(hdr_r);
	i_zero(body_r);
	hdr_r->physical_size = hdr_r->virtual_size = hdr_len;
	body_r->physical_size = body_r->virtual_size = len - hdr_len;
	for (i = 0; i < len; i++) {
		if (data[i] == '\n') {
			if (i < hdr_len)
				hdr_r->lines++;
			else
				body_r->lines++;
		}
	}
}

/* Stores the notice into box (the original's mailbox), with the flags and
   received date of mail (the original). */
static int
notice_store(struct dovekie_user *duser, struct mailbox *box, struct mail *mail,
	     const string_t *text, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mail_save_context *save;
	struct istream *input;
	time_t received;
	bool was_checked = duser->delivery_checked;
	int ret = 0;

	t = mailbox_transaction_begin(box, MAILBOX_TRANSACTION_FLAG_EXTERNAL,
				      "dovekie notice");
	save = mailbox_save_alloc(t);
	mailbox_save_set_flags(save, mail_get_flags(mail) & ENUM_NEGATE(MAIL_DELETED | MAIL_RECENT),
			       NULL);
	if (mail_get_received_date(mail, &received) == 0)
		mailbox_save_set_received_date(save, received, 0);
	input = i_stream_create_copy_from_data(str_data(text), str_len(text));
	/* The notice is ours: the save hooks stay out. */
	duser->delivery_checked = TRUE;
	if (mailbox_save_begin(&save, input) < 0)
		ret = -1;
	while (ret == 0 && i_stream_read(input) > 0) {
		if (mailbox_save_continue(save) < 0)
			ret = -1;
	}
	if (ret == 0)
		ret = mailbox_save_finish(&save);
	else if (save != NULL)
		mailbox_save_cancel(&save);
	duser->delivery_checked = was_checked;
	i_stream_unref(&input);
	if (ret == 0 && mailbox_transaction_commit(&t) < 0)
		ret = -1;
	if (ret < 0) {
		*error_r = t_strdup_printf("cannot store the notice in %s: %s",
			dovekie_log_quote(mailbox_get_vname(box)), mailbox_get_last_internal_error(box, NULL));
		if (t != NULL)
			mailbox_transaction_rollback(&t);
	}
	return ret;
}

int dovekie_quarantine_replace(struct dovekie_user *duser, struct mail *mail,
			       const char *vname, const char *reason,
			       struct istream **notice_r, struct message_size *hdr_size_r,
			       struct message_size *body_size_r, const char **error_r)
{
	struct mail_user *user = mail->box->storage->user;
	struct mailbox_transaction_context *own_t, *qt;
	struct mailbox *qbox, *own_box;
	struct mail *own;
	string_t *text, *served;
	uoff_t size;
	const char *error;
	int ret = 0;

	if (notice_r != NULL)
		*notice_r = NULL;
	/* mailbox_equals(): INBOX in any case, and the namespace it is in. */
	if (dovekie_quarantine_is(user, vname, mailbox_get_vname(mail->box))) {
		*error_r = "the message is in the quarantine mailbox already";
		return -1;
	}
	/* Read what the notice quotes before the message goes. */
	text = notice_text(mail, vname, reason, TRUE);
	if (mail_get_virtual_size(mail, &size) < 0)
		size = 0;
	served = notice_r == NULL ? NULL :
		str_len(text) > size ? notice_text(mail, vname, reason, FALSE) : text;

	qbox = dovekie_quarantine_open(user, duser->event, vname, error_r);
	if (qbox == NULL)
		return -1;
	/* The move and the notice go through a mailbox of our own, synced
	   after the commit (that is when maildir unlinks the file); the
	   reader's mailbox sees the change at its next sync, as it would see
	   another session's. */
	own_box = mailbox_alloc(mailbox_get_namespace(mail->box)->list,
				mailbox_get_vname(mail->box), 0);
	if (mailbox_open(own_box) < 0 || mailbox_sync(own_box, 0) < 0) {
		*error_r = t_strdup_printf("cannot open %s: %s",
					   dovekie_log_quote(mailbox_get_vname(own_box)),
					   mailbox_get_last_internal_error(own_box, NULL));
		mailbox_free(&own_box);
		mailbox_free(&qbox);
		return -1;
	}
	qt = mailbox_transaction_begin(qbox, MAILBOX_TRANSACTION_FLAG_EXTERNAL,
				       "dovekie quarantine");
	/* Not EXTERNAL: that marks expunges as done already, and maildir would
	   keep the file. */
	own_t = mailbox_transaction_begin(own_box, 0, "dovekie quarantine move");
	own = mail_alloc(own_t, 0, NULL);
	if (!mail_set_uid(own, mail->uid)) {
		*error_r = "the message is gone";
		ret = -1;
	} else if (dovekie_quarantine_move(duser, own, qt, error_r) < 0) {
		ret = -1;
	} else if (mailbox_transaction_commit(&qt) < 0) {
		*error_r = t_strdup_printf("cannot commit to %s: %s", dovekie_log_quote(vname),
					   mailbox_get_last_internal_error(qbox, NULL));
		ret = -1;
	}
	mail_free(&own);
	if (qt != NULL)
		mailbox_transaction_rollback(&qt);
	mailbox_free(&qbox);
	if (ret < 0) {
		mailbox_transaction_rollback(&own_t);
		mailbox_free(&own_box);
		return -1;
	}
	/* The copy is safe in quarantine: a failure from here on leaves the
	   original in place too, never nowhere. */
	if (mailbox_transaction_commit(&own_t) < 0 || mailbox_sync(own_box, 0) < 0) {
		e_error(duser->event, "cannot expunge uid=%u from %s after quarantining it: %s",
			mail->uid, dovekie_log_quote(mailbox_get_vname(own_box)),
			mailbox_get_last_internal_error(own_box, NULL));
	}
	e_info(duser->event, "moved uid=%u from %s to %s: %s", mail->uid,
	       dovekie_log_quote(mailbox_get_vname(own_box)), dovekie_log_quote(vname),
	       reason);
	if (notice_store(duser, own_box, mail, text, &error) < 0)
		e_error(duser->event, "%s", error);
	mailbox_free(&own_box);

	if (served == NULL || str_len(served) > size)
		return 0; /* not wanted, or too small an original to serve it in its place */
	notice_pad(served, size);
	notice_sizes(served, hdr_size_r, body_size_r);
	*notice_r = i_stream_create_copy_from_data(str_data(served), str_len(served));
	return 0;
}
