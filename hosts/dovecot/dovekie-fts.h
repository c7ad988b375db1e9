#ifndef DOVEKIE_FTS_H
#define DOVEKIE_FTS_H

struct module;
struct mail_user;
struct mailbox;
struct mail_search_args;

/* The index of a mailbox, in its index directory (also read by
   `doveadm dovekie status`). */
#define DOVEKIE_FTS_INDEX_FILE "dovekie-search.db"

/* The fts backend "dovekie" (fts = dovekie). Its vfuncs need the search
   module (the "index" service) loaded for the user; without it the
   backend's init fails and Dovecot searches without fts. */
extern const struct fts_backend dovekie_fts_backend_template;


/* For a user with fts = dovekie (dovekie-fts-search.c): a search passes
   over the messages whose result the fts lookup already made false,
   without setting up each mail. Answers stay Dovecot's. */
void dovekie_fts_search_mailbox_allocated(struct mailbox *box);
/* The result the search keys of `args` give as they stand: 1 true, 0
   false, -1 not known yet. Reads only. */
int dovekie_fts_search_result(const struct mail_search_args *args);

#endif
