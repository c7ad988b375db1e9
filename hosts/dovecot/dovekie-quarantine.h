#ifndef DOVEKIE_QUARANTINE_H
#define DOVEKIE_QUARANTINE_H

struct event;
struct istream;
struct mail;
struct mail_user;
struct mailbox;
struct mailbox_transaction_context;
struct message_size;
struct dovekie_user;

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
/* Creates (as above) and opens vname for saving; NULL with error_r. */
struct mailbox *
dovekie_quarantine_open(struct mail_user *user, struct event *event, const char *vname,
			const char **error_r);
/* Moves mail into qt's mailbox (copy there, expunge in mail's
   transaction); the caller commits qt first, then mail's transaction, so
   a crash in between leaves a duplicate, never a loss. Our own hooks stay
   out. 0, or -1 with error_r. */
int dovekie_quarantine_move(struct dovekie_user *duser, struct mail *mail,
			    struct mailbox_transaction_context *qt, const char **error_r);
/* A read DIVERT: moves the stored message (mail, in its own transactions)
   into mailbox vname and stores a notice quoting `reason` in its place,
   with its flags and received date. When notice_r is not NULL,
   *notice_r is that notice padded to the original's virtual size, with
   its header and body sizes, for a POP3 reader (its client has the
   original's size already); NULL when the original is too small to hold
   it. Returns -1
   with error_r when the message could not be moved (it is then where it
   was). */
int dovekie_quarantine_replace(struct dovekie_user *duser, struct mail *mail,
			       const char *vname, const char *reason,
			       struct istream **notice_r, struct message_size *hdr_size_r,
			       struct message_size *body_size_r, const char **error_r);

#endif
