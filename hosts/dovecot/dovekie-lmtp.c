/* LMTP process hooks: judge a delivery before it is stored, so a refusal
 * becomes a real SMTP reply (550 5.7.1 / 451 4.7.1) instead of the 451 that
 * any storage error turns into inside mail_deliver(). A DIVERT is stored
 * into the verdict's mailbox (created if missing, not subscribed), a
 * DISCARD is answered 250 with nothing stored, and a verdict keyword is
 * added to the stored message by dovekie-storage.c's copy hook.
 *
 * Every recipient of a transaction is judged on the message as received
 * (Dovecot's raw mail: the MTA's bytes behind the trace fields Dovecot
 * prepends once per transaction), not on the source Dovecot copies from:
 * after the first recipient is stored, Dovecot copies the later ones from
 * that stored copy, whose bytes differ (line endings, a Sieve edit). So a
 * transaction's recipients all hand the modules the same bytes, and the
 * antivirus module scans them once (its "one scan per LMTP transaction").
 *
 * The dovekie_lmtp plugin (lib95_dovekie_lmtp_plugin.so): it depends on the
 * core dovekie plugin and is meant for the lmtp binary only, as
 * dovekie-pop3.c is for pop3.
 */
#include "lib.h"
#include "smtp-server.h"
#include "lmtp-common.h"
#include "lmtp-client.h"
#include "lmtp-recipient.h"
#include "mail-storage.h"
#include "mail-namespace.h"
#include "dovekie-log-quote.h"
#include "dovekie-plugin.h"
#include "dovekie-quarantine.h"
#include "dovekie-part.h"

const char *dovekie_lmtp_plugin_version = DOVECOT_ABI_VERSION;
const char *dovekie_lmtp_plugin_dependencies[] = { "dovekie", NULL };
const char dovekie_lmtp_plugin_binary_dependency[] = "lmtp";

void dovekie_lmtp_plugin_init(struct module *module);
void dovekie_lmtp_plugin_deinit(void);

#define DOVEKIE_LMTP_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, dovekie_lmtp_module)

/* Longest transaction id remembered; Dovecot's are about 22 characters. */
#define DOVEKIE_LMTP_TRANS_ID_MAX 128

struct dovekie_lmtp_client {
	union lmtp_module_context module_ctx;
	/* The transaction whose first delivery we saw, and its raw mail
	   (Dovecot frees it with the transaction, whose id is unique). */
	char trans_id[DOVEKIE_LMTP_TRANS_ID_MAX];
	struct mail *raw_mail;
};

static MODULE_CONTEXT_DEFINE_INIT(dovekie_lmtp_module, &lmtp_module_register);
static lmtp_client_created_func_t *next_hook_client_created;

static int
dovekie_lmtp_local_deliver(struct client *client, struct lmtp_recipient *lrcpt,
			   struct smtp_server_cmd_ctx *cmd,
			   struct smtp_server_transaction *trans,
			   struct lmtp_local_deliver_context *lldctx)
{
	struct dovekie_lmtp_client *dclient = DOVEKIE_LMTP_CONTEXT(client);
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(lldctx->rcpt_user);
	enum dovekie_bridge_verdict verdict;
	struct dovekie_bridge_result *result;
	struct dovekie_delivery delivery;
	const char *error, *module, *why;
	struct mail *judged;
	int ret;

	/* The first delivery of a transaction gets the raw mail: nothing is
	   stored yet to copy from. */
	if (trans->id == NULL || strlen(trans->id) >= sizeof(dclient->trans_id)) {
		dclient->trans_id[0] = '\0';
		dclient->raw_mail = NULL;
	} else if (strcmp(dclient->trans_id, trans->id) != 0) {
		i_strocpy(dclient->trans_id, trans->id, sizeof(dclient->trans_id));
		dclient->raw_mail = lldctx->src_mail;
	}
	judged = dclient->raw_mail != NULL ? dclient->raw_mail : lldctx->src_mail;

	if (duser == NULL || !dovekie_bridge_wants_save(duser->bridge)) {
		return dclient->module_ctx.super.local_deliver(client, lrcpt, cmd,
							       trans, lldctx);
	}
	/* A guard that is configured but not running: the MTA retries, and
	   4.3.0 (other mail system problem) tells its admin the cause is
	   here, not in the message (4.7.1). */
	if (dovekie_bridge_guarded(duser->bridge, DOVEKIE_BRIDGE_GUARD_SAVE,
				   &module, &why)) {
		e_error(duser->event, "refusing delivery: module %s is configured "
			"but not running: %s", module, why);
		smtp_server_recipient_reply(lrcpt->rcpt, 451, "4.3.0", "%s",
					    DOVEKIE_BRIDGE_GUARD_REASON);
		return -1;
	}
	/* Large buffers: keep them off the stack. Freed with the data stack
	   frame of this delivery. */
	result = t_new(struct dovekie_bridge_result, 1);
	i_zero(&delivery);
	verdict = dovekie_check_delivery(duser, judged,
					 lldctx->rcpt_default_mailbox, result);
	switch (verdict) {
	case DOVEKIE_BRIDGE_REJECT:
		smtp_server_recipient_reply(lrcpt->rcpt, 550, "5.7.1", "%s",
					    result->reason);
		return -1;
	case DOVEKIE_BRIDGE_TEMPFAIL:
		smtp_server_recipient_reply(lrcpt->rcpt, 451, "4.7.1", "%s",
					    result->reason);
		return -1;
	case DOVEKIE_BRIDGE_DISCARD:
		e_info(duser->event, "delivery discarded (nothing stored): %s",
		       result->reason);
		smtp_server_recipient_reply(lrcpt->rcpt, 250, "2.0.0",
					    "%s %s",
					    lldctx->session_id, result->reason);
		return 0;
	case DOVEKIE_BRIDGE_DIVERT:
		/* A divert into the very mailbox the message was going to
		   would store it unguarded where the user reads it. */
		if (dovekie_quarantine_is(lldctx->rcpt_user, result->mailbox,
					  lldctx->rcpt_default_mailbox != NULL ?
					  lldctx->rcpt_default_mailbox : "INBOX")) {
			e_error(duser->event, "refusing delivery: the divert "
				"mailbox %s is the delivery target; set the "
				"module's quarantine mailbox to another one",
				dovekie_log_quote(result->mailbox));
			smtp_server_recipient_reply(lrcpt->rcpt, 451, "4.3.0", "%s",
						    DOVEKIE_BRIDGE_GUARD_REASON);
			return -1;
		}
		/* The mailbox must exist before mail_deliver saves into it
		   (lda_mailbox_autocreate is off by default, and would
		   subscribe it when on). */
		if (dovekie_quarantine_create(lldctx->rcpt_user, duser->event,
					      result->mailbox, &error) < 0) {
			e_error(duser->event, "%s", error);
			smtp_server_recipient_reply(lrcpt->rcpt, 451, "4.2.0",
				"Temporary failure storing the message, try again later");
			return -1;
		}
		e_info(duser->event, "delivery diverted to %s: %s",
		       dovekie_log_quote(result->mailbox), result->reason);
		lldctx->rcpt_default_mailbox = result->mailbox;
		delivery.mailbox = result->mailbox;
		break;
	case DOVEKIE_BRIDGE_ACCEPT:
		/* Accepted with a keyword is delivered flagged (dovekie_av_action
		   = tag): reads of it are refused, so no read memo. */
		delivery.accepted = result->keyword[0] == '\0';
		break;
	}
	if (result->keyword[0] != '\0')
		delivery.keyword = result->keyword;
	/* rcpt_user is this recipient's, made for this delivery. */
	i_assert(duser->delivery == NULL);
	duser->delivery = &delivery;
	ret = dclient->module_ctx.super.local_deliver(client, lrcpt, cmd, trans, lldctx);
	duser->delivery = NULL;
	return ret;
}

static void dovekie_lmtp_client_created(struct client **clientp)
{
	struct client *client = *clientp;
	struct dovekie_lmtp_client *dclient;

	dclient = p_new(client->pool, struct dovekie_lmtp_client, 1);
	dclient->module_ctx.super = client->v;
	client->v.local_deliver = dovekie_lmtp_local_deliver;
	MODULE_CONTEXT_SET(client, dovekie_lmtp_module, dclient);

	if (next_hook_client_created != NULL)
		next_hook_client_created(clientp);
}

void dovekie_lmtp_plugin_init(struct module *module ATTR_UNUSED)
{
	next_hook_client_created =
		lmtp_client_created_hook_set(dovekie_lmtp_client_created);
	/* lmtp loads its mail_plugins before it creates a client: the hook
	   covers every delivery of the process. */
	dovekie_part_register(DOVEKIE_PART_LMTP, NULL, NULL);
}

void dovekie_lmtp_plugin_deinit(void)
{
	dovekie_part_unregister(DOVEKIE_PART_LMTP);
	(void)lmtp_client_created_hook_set(next_hook_client_created);
}
