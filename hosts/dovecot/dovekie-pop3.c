/* POP3 process hooks: the end of a session (QUIT or a dropped link).
 *
 * This file is linked into the one plugin that every mail process loads,
 * but its symbols only exist in the pop3 binary, so they are weak: outside
 * pop3 they resolve to NULL and nothing is hooked.
 */
#include "lib.h"
#include "pop3-common.h"
#include "pop3-client.h"
#include "dovekie-plugin.h"

#pragma weak pop3_client_created_hook_set
#pragma weak pop3_module_register

#define DOVEKIE_POP3_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, dovekie_pop3_module)

struct dovekie_pop3_client {
	union pop3_module_context module_ctx;
};

static MODULE_CONTEXT_DEFINE_INIT(dovekie_pop3_module, &pop3_module_register);
static pop3_client_created_func_t *next_hook_client_created;
static bool dovekie_pop3_hooked;

static void dovekie_pop3_destroy(struct client *client, const char *reason)
{
	struct dovekie_pop3_client *dclient = DOVEKIE_POP3_CONTEXT(client);
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(client->user);

	/* client_update_mails() has already run at QUIT, so modules see the
	   session's expunges before its end. */
	if (duser != NULL && duser->pop3_started) T_BEGIN {
		dovekie_bridge_pop3_end(duser->bridge, client->user->username,
					client->messages_count, client->quit_seen);
	} T_END;
	dclient->module_ctx.super.destroy(client, reason);
}

static void dovekie_pop3_client_created(struct client **clientp)
{
	struct client *client = *clientp;
	struct dovekie_pop3_client *dclient;

	dclient = p_new(client->pool, struct dovekie_pop3_client, 1);
	dclient->module_ctx.super = client->v;
	client->v.destroy = dovekie_pop3_destroy;
	MODULE_CONTEXT_SET(client, dovekie_pop3_module, dclient);

	if (next_hook_client_created != NULL)
		next_hook_client_created(clientp);
}

void dovekie_pop3_hooks_init(void)
{
	if (pop3_client_created_hook_set == NULL)
		return;
	next_hook_client_created =
		pop3_client_created_hook_set(dovekie_pop3_client_created);
	dovekie_pop3_hooked = TRUE;
}

void dovekie_pop3_hooks_deinit(void)
{
	if (dovekie_pop3_hooked)
		(void)pop3_client_created_hook_set(next_hook_client_created);
	dovekie_pop3_hooked = FALSE;
}
