/* Skipping the messages an fts lookup has already ruled out.
 *
 * Dovecot 2.3's search walks every message of the searched range, whatever
 * the fts backend answered: for each one the fts plugin marks the search
 * keys it decided (definite match, definite non-match, or unknown for a
 * maybe UID), then Dovecot sets up the mail (mail_set_seq) and evaluates
 * the keys. With 60,000 messages that walk costs 10-15 ms even when the
 * index answered "no message matches"; perf showed it as 81% of a search's
 * time at corpus x10.
 *
 * This wrapper sits outside the fts plugin's search_next_update_seq: when
 * the keys the fts plugin (and Dovecot's own index checks) set for a
 * message already make the whole search false, the message is passed over
 * without setting up the mail, as Dovecot's own search_next_update_seq
 * does for a message outside a sequence set. A message whose result is
 * still open, or true, is left to Dovecot unchanged, so answers cannot
 * change: the same message would have been a non-match after
 * search_next_match_mail.
 *
 * Left to Dovecot, never skipped:
 *   - searches that keep or update saved results (SEARCHRES, CONTEXT,
 *     NOTIFY): Dovecot records each non-match in never_uids there;
 *   - searches that stop at the first non-match (stop_on_nonmatch).
 */
#include "lib.h"
#include "mail-storage-private.h"
#include "mail-search.h"
#include "dovekie-fts.h"

#define DOVEKIE_FTS_SEARCH_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, dovekie_fts_search_module)

struct dovekie_fts_search_box {
	/* Only to be a module context: its `super` is left empty, as this
	   wraps box->v and not box->vlast. */
	union mailbox_module_context module_ctx;
	/* What box->v held before: the fts plugin's function. */
	bool (*next_update_seq)(struct mail_search_context *ctx);
};

static MODULE_CONTEXT_DEFINE_INIT(dovekie_fts_search_module, &mail_storage_module_register);

/* The result the keys of one list already give: AND of the list when
   `and_list`, else OR. 1 true, 0 false, -1 not known yet. It only reads
   the keys, where Dovecot's own evaluation (mail_search_args_foreach)
   would store results in the OR and SUB nodes it passes. */
static int dovekie_fts_args_result(const struct mail_search_arg *arg, bool and_list);

static int dovekie_fts_arg_result(const struct mail_search_arg *arg)
{
	int result;

	/* A key's stored result already includes its NOT. */
	if (arg->result != -1)
		return arg->result;
	switch (arg->type) {
	case SEARCH_SUB:
		result = dovekie_fts_args_result(arg->value.subargs, TRUE);
		break;
	case SEARCH_OR:
		result = dovekie_fts_args_result(arg->value.subargs, FALSE);
		break;
	default:
		return -1;
	}
	if (result != -1 && arg->match_not)
		result = result > 0 ? 0 : 1;
	return result;
}

static int dovekie_fts_args_result(const struct mail_search_arg *arg, bool and_list)
{
	int result = and_list ? 1 : 0;

	for (; arg != NULL; arg = arg->next) {
		int one = dovekie_fts_arg_result(arg);

		if (one == (and_list ? 0 : 1))
			return one;
		if (one == -1)
			result = -1;
	}
	return result;
}

int dovekie_fts_search_result(const struct mail_search_args *args)
{
	return dovekie_fts_args_result(args->args, TRUE);
}

static bool dovekie_fts_search_next_update_seq(struct mail_search_context *ctx)
{
	struct dovekie_fts_search_box *sbox =
		DOVEKIE_FTS_SEARCH_CONTEXT(ctx->transaction->box);
	bool may_skip = ctx->update_result == NULL &&
		(!array_is_created(&ctx->results) ||
		 array_count(&ctx->results) == 0) &&
		!ctx->args->stop_on_nonmatch;

	while (sbox->next_update_seq(ctx)) {
		if (!may_skip || dovekie_fts_search_result(ctx->args) != 0)
			return TRUE;
		/* As Dovecot does before it evaluates the next message. */
		mail_search_args_reset(ctx->args->args, FALSE);
	}
	return FALSE;
}

void dovekie_fts_search_mailbox_allocated(struct mailbox *box)
{
	struct dovekie_fts_search_box *sbox;

	/* Outermost, so that the fts plugin has set the keys' results
	   before this looks at them. A plugin's mailbox_allocated hook
	   normally wraps box->vlast, which puts it inside every plugin
	   whose hook ran before, and the fts plugin's (lib20) runs before
	   ours (lib90). So this one function is wrapped at box->v itself;
	   the hook chain of every other vfunc is left as it is. */
	sbox = p_new(box->pool, struct dovekie_fts_search_box, 1);
	sbox->next_update_seq = box->v.search_next_update_seq;
	box->v.search_next_update_seq = dovekie_fts_search_next_update_seq;
	MODULE_CONTEXT_SET(box, dovekie_fts_search_module, sbox);
}
