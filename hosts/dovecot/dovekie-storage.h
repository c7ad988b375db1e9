#ifndef DOVEKIE_STORAGE_H
#define DOVEKIE_STORAGE_H

#include "mail-storage.h"
#include "dovekie-bridge.h"

struct mailbox;
struct mailbox_info;
struct mail;
struct mail_user;
struct dovekie_user;

/* mail-storage hooks: save / copy / read / expunge / POP3 session start. */
void dovekie_mailbox_allocated(struct mailbox *box);
void dovekie_mail_allocated(struct mail *mail);

/* What a transaction dovekie begins for itself does that our own hooks must
   stay out of. State of that transaction: it goes with it, and nothing
   has to put it back. */
enum dovekie_own {
	/* Its mails are read for a hook or a job, never served to a client:
	   the read hook stays out. */
	DOVEKIE_OWN_READS = 0x01,
	/* What it saves or copies was judged already, or is ours (a
	   quarantine move, a notice, a release): the save hooks stay out. */
	DOVEKIE_OWN_SAVES = 0x02,
	/* Its expunges are quarantine moves and releases, neither the user's
	   expunge nor a POP3 DELE: the modules' expunge hooks stay out. */
	DOVEKIE_OWN_MOVES = 0x04,
};
/* mailbox_transaction_begin(), marked with `own` (in a mailbox dovekie does
   not hook, no hook of ours runs anyway, and nothing is marked). */
struct mailbox_transaction_context *
dovekie_transaction_begin(struct mailbox *box, enum mailbox_transaction_flags flags,
			  const char *reason, enum dovekie_own own);
/* box is dovekie-av-sync.c's own instance of a mailbox: its syncs are the
   sync check's, and never run the check again. */
void dovekie_mailbox_set_av_sync_own(struct mailbox *box);
/* POP3: whether the last failed read of box (the session's INBOX) failed
   because it could not be judged now (MAIL_ERROR_TEMP, set by our read
   hook); take forgets it. */
bool dovekie_mailbox_pop3_tempfail(struct mailbox *box, bool take);
/* Remembers in the mailbox index that a read of mail may be accepted while
   the antivirus read policy's key is `key` (see dovekie-storage.c, the read
   memo). In mail's own transaction; nothing in a read-only mailbox or in
   another user's. */
void dovekie_read_memo_set(struct mail *mail, uint64_t key);
/* TRUE when mail's index record holds the read memo `key`. */
bool dovekie_read_memo_holds(struct mail *mail, uint64_t key);

/* Hands func a bridge source over mail's bytes (from the start) and the
   message's facts, for a job that reads stored mail (doveadm). Our own
   read hook stays out of this mail object while it runs. Returns func's
   result, or -1 with *error_r when the stream cannot be opened. */
typedef int dovekie_mail_reader_t(void *context, const struct dovekie_bridge_message *msg,
				  const struct dovekie_bridge_source *source,
				  const char **error_r);
int dovekie_read_mail(struct mail *mail, dovekie_mail_reader_t *func, void *context,
		      const char **error_r);

/* Judges stored mail for a job that is not a client's read (origin: a
   dovekie_bridge_read_origin, e.g. DOVEKIE_BRIDGE_READ_SYNC), with
   everything the verdict says in result. When the bytes cannot be read
   the verdict is TEMPFAIL and *error_r says why (nothing logged); else
   *error_r is NULL. */
enum dovekie_bridge_verdict
dovekie_check_stored(struct dovekie_user *duser, struct mail *mail, int origin,
		     struct dovekie_bridge_result *result, const char **error_r);

/* Calls func (inside a data stack frame) for each selectable mailbox of
   the user's private namespaces, until it returns FALSE. Returns -1 when
   the listing failed, else 0. */
typedef bool dovekie_mailbox_func_t(void *context, const struct mailbox_info *info);
int dovekie_foreach_mailbox(struct mail_user *user, dovekie_mailbox_func_t *func,
			    void *context);

#endif
