#ifndef DOVEKIE_QUARANTINE_H
#define DOVEKIE_QUARANTINE_H

#include "mail-types.h"

struct event;
struct istream;
struct mail;
struct mail_user;
struct mailbox;
struct mailbox_transaction_context;
struct dovekie_user;
struct dovekie_bridge;

/* Creates mailbox vname unless it exists, without subscribing it (the
   user finds it by LIST, their client's folder list stays as it was).
   0, or -1 with error_r; -1 also when vname is an INBOX (in any case, or
   through a namespace prefix), so no quarantine ever stores into INBOX. */
int dovekie_quarantine_create(struct mail_user *user, struct event *event,
			      const char *vname, const char **error_r);
/* Whether vname is the quarantine mailbox quarantine_vname, as Dovecot
   compares mailboxes (mailbox_equals(): the same namespace, INBOX in any
   case). false when either is NULL. */
bool dovekie_quarantine_is(struct mail_user *user, const char *quarantine_vname,
			   const char *vname);
/* Whether box is the quarantine quarantine_vname of the user whose modules
   judge box: user's own (as dovekie_quarantine_is) or, for a mailbox of a
   shared or public namespace, the mailbox of that name in the namespace
   (the owner's quarantine, or the public folders' caretaker's). */
bool dovekie_quarantine_holds(struct mail_user *user, const char *quarantine_vname,
			      struct mailbox *box);
/* Creates (as above) and opens vname for saving; NULL with error_r. */
struct mailbox *
dovekie_quarantine_open(struct mail_user *user, struct event *event, const char *vname,
			const char **error_r);
/* Moves mail into qt's mailbox (copy there with mail's flags and
   keywords, plus `keyword` unless it is NULL or "", and expunge in mail's
   transaction); the caller commits qt first, then mail's transaction, so
   a crash in between leaves a duplicate, never a loss. Both transactions
   are the caller's own (dovekie_transaction_begin()), so our hooks stay
   out: mail's with DOVEKIE_OWN_READS | DOVEKIE_OWN_MOVES, qt with
   DOVEKIE_OWN_SAVES. 0, or -1 with error_r. */
int dovekie_quarantine_move(struct mail *mail, struct mailbox_transaction_context *qt,
			    const char *keyword, const char **error_r);
/* The notice for mail (read before it moves), as the antivirus module
   makes it (DovekieAntivirusService.quarantine_notice) from the original's
   From, To, Subject and Date, the quarantine mailbox vname and `reason`;
   this host gives the values as stored and stores the bytes. On the data
   stack; NULL with error_r when the module cannot make it. */
const char *
dovekie_quarantine_notice_text(struct dovekie_bridge *bridge, struct mail *mail,
			       const char *vname, const char *reason, const char **error_r);
/* Saves text as a new message into box, with flags (less \Deleted and
   \Recent) and the received date (unless (time_t)-1), in a transaction of
   its own; our save hooks stay out. 0, or -1 with error_r. */
int dovekie_quarantine_store_notice(struct mailbox *box, enum mail_flags flags, time_t received,
				    const char *text, const char **error_r);
/* Where quarantined mail came from, for `doveadm dovekie quarantine
   release`: records `origin` (a vname) for every UID changes saved into
   the quarantine mailbox (failures are logged: the release then goes to
   INBOX); the origin of one quarantined message, or NULL when none is
   recorded (data stack); and forgets it once the message leaves. */
struct mail_transaction_commit_changes;
void dovekie_quarantine_record_origin(struct dovekie_user *duser,
				      const struct mail_transaction_commit_changes *changes,
				      const char *origin);
const char *dovekie_quarantine_origin(struct dovekie_user *duser, uint32_t uid_validity,
				      uint32_t uid);
void dovekie_quarantine_forget_origin(struct dovekie_user *duser, uint32_t uid_validity,
				      uint32_t uid);

#endif
