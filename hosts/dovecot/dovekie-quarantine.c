/* The quarantine mailbox, and moving stored mail into it.
 *
 * Used by an LMTP DIVERT (the mailbox must exist first), by `doveadm
 * dovekie rescan` (moves new detections) and by the sync check
 * (dovekie-av-sync.c: unscanned infected mail found new in a mailbox
 * moves into quarantine, and a short notice is stored as a new message).
 */
#include "lib.h"
#include "array.h"
#include "hostpid.h"
#include "ioloop.h"
#include "istream.h"
#include "str.h"
#include "seq-range-array.h"
#include "mail-namespace.h"
#include "mail-storage-private.h"
#include "dovekie-plugin.h"
#include "dovekie-antivirus.h"
#include "dovekie-quarantine.h"
#include "dovekie-storage.h"
#include "dovekie-log-quote.h"

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

bool dovekie_quarantine_holds(struct mail_user *user, const char *quarantine_vname,
			      struct mailbox *box)
{
	struct mail_namespace *ns = mailbox_get_namespace(box);
	const char *name;

	if (quarantine_vname == NULL)
		return FALSE;
	if (ns->type == MAIL_NAMESPACE_TYPE_PRIVATE)
		return dovekie_quarantine_is(user, quarantine_vname, mailbox_get_vname(box));
	/* The owner's quarantine seen through a shared namespace, or the
	   caretaker's through a public one (whose private namespace holds
	   the public folders): that name under the namespace's prefix. */
	name = mailbox_list_get_storage_name(ns->list,
		t_strconcat(ns->prefix, quarantine_vname, NULL));
	return strcmp(name, mailbox_get_name(box)) == 0;
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

int dovekie_quarantine_move(struct mail *mail, struct mailbox_transaction_context *qt,
			    const char *keyword, const char **error_r)
{
	struct mail_save_context *save = mailbox_save_alloc(qt);
	struct mail_keywords *ours, *merged;
	const char *names[2] = { keyword, NULL };
	int ret;

	/* The copy keeps the original's flags and keywords, as imap's MOVE
	   does, and gets the verdict's keyword. */
	mailbox_save_copy_flags(save, mail);
	if (keyword != NULL && keyword[0] != '\0' &&
	    mailbox_keywords_create(qt->box, names, &ours) == 0) {
		if (save->data.keywords != NULL) {
			merged = mailbox_keywords_merge(save->data.keywords, ours);
			mailbox_keywords_unref(&ours);
			ours = merged;
		}
		mailbox_save_set_flags(save, save->data.flags, ours);
		mailbox_keywords_unref(&ours);
	}
	/* Judged already: our copy, read and expunge hooks stay out, as the
	   two transactions say (see dovekie-quarantine.h). */
	ret = mailbox_move(&save, mail);
	if (ret < 0) {
		*error_r = t_strdup_printf("cannot move uid=%u from %s to %s: %s", mail->uid,
			dovekie_log_quote(mailbox_get_vname(mail->box)),
			dovekie_log_quote(mailbox_get_vname(qt->box)),
			mailbox_get_last_internal_error(qt->box, NULL));
	}
	return ret;
}

/* The original's header value as stored, or NULL when it has none. */
static const char *notice_header(struct mail *mail, const char *name)
{
	const char *value;

	return mail_get_first_header(mail, name, &value) > 0 ? value : NULL;
}

const char *
dovekie_quarantine_notice_text(struct dovekie_bridge *bridge, struct mail *mail,
			       const char *vname, const char *reason, const char **error_r)
{
	struct dovekie_bridge_av_notice notice = {
		.from = notice_header(mail, "From"),
		.to = notice_header(mail, "To"),
		.subject = notice_header(mail, "Subject"),
		.date = notice_header(mail, "Date"),
		.mailbox = vname,
		.reason = reason,
		.host = my_hostname,
		.unique = t_strdup_printf("%s.%u", my_pid, mail->uid),
		.time = ioloop_time,
	};
	const char *text;

	if (dovekie_bridge_av_notice(bridge, &notice, &text, error_r) < 0)
		return NULL;
	return text;
}

int dovekie_quarantine_store_notice(struct mailbox *box, enum mail_flags flags, time_t received,
				    const char *text, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mail_save_context *save;
	struct istream *input;
	int ret = 0;

	/* The notice is ours: the save hooks stay out. */
	t = dovekie_transaction_begin(box, MAILBOX_TRANSACTION_FLAG_EXTERNAL,
				      "dovekie notice", DOVEKIE_OWN_SAVES);
	save = mailbox_save_alloc(t);
	mailbox_save_set_flags(save, flags & ENUM_NEGATE(MAIL_DELETED | MAIL_RECENT), NULL);
	if (received != (time_t)-1)
		mailbox_save_set_received_date(save, received, 0);
	input = i_stream_create_from_data(text, strlen(text));
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

/* Origins are host state in the user's kv store: "o/<quarantine
   UIDVALIDITY>.<UID>" = the vname the message was moved out of. */
#define QUARANTINE_KV_NAMESPACE "quarantine"

static const char *origin_key(uint32_t uid_validity, uint32_t uid)
{
	return t_strdup_printf("o/%u.%u", uid_validity, uid);
}

void dovekie_quarantine_record_origin(struct dovekie_user *duser,
				      const struct mail_transaction_commit_changes *changes,
				      const char *origin)
{
	struct seq_range_iter iter;
	const char *error;
	unsigned int n = 0;
	uint32_t uid;

	seq_range_array_iter_init(&iter, &changes->saved_uids);
	while (seq_range_array_iter_nth(&iter, n++, &uid)) {
		if (dovekie_kv_set(duser, QUARANTINE_KV_NAMESPACE,
				   origin_key(changes->uid_validity, uid), origin, &error) < 0) {
			/* Only costs the release its way back: it goes to INBOX. */
			e_warning(duser->event, "cannot record where quarantined uid=%u came "
				  "from (%s): %s", uid, dovekie_log_quote(origin), error);
		}
	}
}

const char *dovekie_quarantine_origin(struct dovekie_user *duser, uint32_t uid_validity,
				      uint32_t uid)
{
	const char *value, *error;
	int ret;

	ret = dovekie_kv_get(duser, QUARANTINE_KV_NAMESPACE, origin_key(uid_validity, uid),
			     &value, &error);
	if (ret < 0) {
		e_warning(duser->event, "cannot read where quarantined uid=%u came from: %s",
			  uid, error);
	}
	return ret > 0 && value[0] != '\0' ? value : NULL;
}

void dovekie_quarantine_forget_origin(struct dovekie_user *duser, uint32_t uid_validity,
				      uint32_t uid)
{
	const char *error;

	if (dovekie_kv_set(duser, QUARANTINE_KV_NAMESPACE, origin_key(uid_validity, uid),
			   NULL, &error) < 0)
		e_warning(duser->event, "cannot forget quarantined uid=%u's origin: %s", uid, error);
}
