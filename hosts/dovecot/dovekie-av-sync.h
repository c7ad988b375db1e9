#ifndef DOVEKIE_AV_SYNC_H
#define DOVEKIE_AV_SYNC_H

struct mailbox;
struct dovekie_user;

/* Whether box gets the sync check: an imap or pop3 session, the antivirus
   module loaded (its read hook is asked, with any other module's), a mailbox of a private namespace (shared and public ones
   belong to another user, whose mail never moves into the reader's
   quarantine: their reads are judged and refused instead). */
bool dovekie_av_sync_wanted(struct dovekie_user *duser, struct mailbox *box);

/* Judges the mail box holds beyond its mark (the highest UID judged at a
   sync, kept in the mailbox index), before box's view learns of it: each
   infected message the module diverts is moved into quarantine (one copy,
   with its $Virus keyword), and a notice is stored as a new message. Runs
   under a lock file in the mailbox's index directory, which the rescan
   takes too, so concurrent sessions and jobs move a message once. Errors
   are logged; the read hooks still guard whatever it could not judge.
   Call it before box's own sync starts (no transaction open). *own_box is
   the caller's to keep between calls (NULL at first; an instance of box
   that this opens and reuses) and to mailbox_free() before box closes. */
void dovekie_av_sync(struct dovekie_user *duser, struct mailbox *box,
		     struct mailbox **own_box);

/* The lock dovekie_av_sync() moves mail under, for other movers (the
   rescan): 1 locked (*lock_r set), 0 timed out, -1 error; error_r for
   both. */
struct file_lock;
int dovekie_av_sync_lock(struct mailbox *box, struct file_lock **lock_r,
			 const char **error_r);

#endif
