#ifndef DOVEKIE_STORAGE_H
#define DOVEKIE_STORAGE_H

struct mailbox;
struct mail;

/* mail-storage hooks: save / copy / read / expunge / POP3 session start. */
void dovekie_mailbox_allocated(struct mailbox *box);
void dovekie_mail_allocated(struct mail *mail);

#endif
