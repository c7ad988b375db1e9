/* The dovekie_pop3 plugin (lib95_dovekie_pop3_plugin.so): the pop3
 * binary's part of the host. Here: the end of a session (QUIT or a dropped
 * link), and the reply to a read that dovekie refused for now; the
 * retention listing and QUIT are in dovekie-retention-pop3.c.
 *
 * It calls pop3's functions and the core dovekie plugin's (Dovecot loads
 * plugins RTLD_GLOBAL), so it declares both: the core as a dependency,
 * pop3 as its only binary.
 */
#include "lib.h"
#include "str.h"
#include "str-sanitize.h"
#include "ostream-private.h"
#include "mail-storage.h"
#include "pop3-common.h"
#include "pop3-client.h"
#include "dovekie-plugin.h"
#include "dovekie-storage.h"
#include "dovekie-retention.h"
#include "dovekie-part.h"

const char *dovekie_pop3_plugin_version = DOVECOT_ABI_VERSION;
const char *dovekie_pop3_plugin_dependencies[] = { "dovekie", NULL };
const char dovekie_pop3_plugin_binary_dependency[] = "pop3";

void dovekie_pop3_plugin_init(struct module *module);
void dovekie_pop3_plugin_deinit(void);

#define DOVEKIE_POP3_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, dovekie_pop3_module)

struct dovekie_pop3_client {
	union pop3_module_context module_ctx;
};

static MODULE_CONTEXT_DEFINE_INIT(dovekie_pop3_module, &pop3_module_register);
static pop3_client_created_func_t *next_hook_client_created;

/* Dovecot 2.3's pop3 answers every failed RETR/TOP "-ERR Message N
   expunged." (pop3-commands.c fetch()), whatever the storage error, and
   offers no hook between the failed read and that reply. When the read
   failed because dovekie could not judge the message now (scanner down,
   module not running: dovekie-storage.c sets MAIL_ERROR_TEMP and marks
   the mailbox, dovekie_mailbox_pop3_tempfail()), the message is not expunged and a client must not
   drop it: this filter over the client's output puts RFC 3206's
   "-ERR [SYS/TEMP] <reason>" in that one reply's place. Every other byte
   passes through unchanged. */
struct dovekie_pop3_ostream {
	struct ostream_private ostream;
	struct client *client;
};

#define DOVEKIE_POP3_EXPUNGED_PREFIX "-ERR Message "
#define DOVEKIE_POP3_EXPUNGED_SUFFIX " expunged.\r\n"
/* The longest reply the filter looks at: prefix, a message number, suffix. */
#define DOVEKIE_POP3_EXPUNGED_MAX 64

static bool dovekie_pop3_is_expunged_reply(const unsigned char *data, size_t size)
{
	size_t prefix = strlen(DOVEKIE_POP3_EXPUNGED_PREFIX);
	size_t suffix = strlen(DOVEKIE_POP3_EXPUNGED_SUFFIX);

	if (size > DOVEKIE_POP3_EXPUNGED_MAX || size <= prefix + suffix ||
	    memcmp(data, DOVEKIE_POP3_EXPUNGED_PREFIX, prefix) != 0 ||
	    memcmp(data + size - suffix, DOVEKIE_POP3_EXPUNGED_SUFFIX, suffix) != 0)
		return FALSE;
	for (size_t i = prefix; i < size - suffix; i++) {
		if (data[i] < '0' || data[i] > '9')
			return FALSE;
	}
	return TRUE;
}

/* The text that replaces the reply in data, or NULL to send data as it is.
   Any status line (+OK or -ERR) ends what a refused read may rewrite. */
static const char *
dovekie_pop3_reply_rewrite(struct client *client, const unsigned char *data, size_t size)
{
	enum mail_error error;
	const char *reason;
	bool refused;

	if (client->mailbox == NULL || !dovekie_mailbox_pop3_tempfail(client->mailbox, FALSE))
		return NULL;
	if ((size < 3 || memcmp(data, "+OK", 3) != 0) &&
	    (size < 4 || memcmp(data, "-ERR", 4) != 0))
		return NULL;
	refused = dovekie_pop3_is_expunged_reply(data, size);
	(void)dovekie_mailbox_pop3_tempfail(client->mailbox, TRUE);
	if (!refused)
		return NULL;
	reason = mailbox_get_last_error(client->mailbox, &error);
	if (error != MAIL_ERROR_TEMP)
		return NULL;
	return t_strdup_printf("-ERR [SYS/TEMP] %s\r\n", str_sanitize(reason, 200));
}

static ssize_t
dovekie_pop3_ostream_sendv(struct ostream_private *stream,
			   const struct const_iovec *iov, unsigned int iov_count)
{
	struct dovekie_pop3_ostream *dstream =
		container_of(stream, struct dovekie_pop3_ostream, ostream);
	const char *reply = NULL;
	size_t total = 0;
	ssize_t ret;

	for (unsigned int i = 0; i < iov_count; i++)
		total += iov[i].iov_len;
	/* client_send_line() sends each line whole, in one iovec. */
	if (iov_count == 1)
		reply = dovekie_pop3_reply_rewrite(dstream->client, iov[0].iov_base, total);
	if (reply == NULL) {
		if ((ret = o_stream_sendv(stream->parent, iov, iov_count)) < 0) {
			o_stream_copy_error_from_parent(stream);
			return -1;
		}
		stream->ostream.offset += ret;
		return ret;
	}
	if ((ret = o_stream_send_str(stream->parent, reply)) < 0) {
		o_stream_copy_error_from_parent(stream);
		return -1;
	}
	stream->ostream.offset += ret;
	/* The caller asserts that its whole line was taken. */
	return ret == (ssize_t)strlen(reply) ? (ssize_t)total : 0;
}

static struct ostream *dovekie_pop3_ostream_create(struct client *client)
{
	struct dovekie_pop3_ostream *dstream;
	struct ostream *output;

	dstream = i_new(struct dovekie_pop3_ostream, 1);
	dstream->client = client;
	dstream->ostream.sendv = dovekie_pop3_ostream_sendv;
	output = o_stream_create(&dstream->ostream, client->output,
				 o_stream_get_fd(client->output));
	o_stream_set_name(output, o_stream_get_name(client->output));
	return output;
}

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

	if (DOVEKIE_USER_CONTEXT(client->user) != NULL) {
		struct ostream *plain = client->output;

		client->output = dovekie_pop3_ostream_create(client);
		o_stream_unref(&plain);
	}

	if (next_hook_client_created != NULL)
		next_hook_client_created(clientp);
}

void dovekie_pop3_plugin_init(struct module *module)
{
	const struct mail_storage_hooks *hooks;

	next_hook_client_created =
		pop3_client_created_hook_set(dovekie_pop3_client_created);
	/* After ours, so that its QUIT work runs before pop3_end (see
	   dovekie-retention-pop3.c). */
	hooks = dovekie_retention_hooks_init(module);
	dovekie_part_register(DOVEKIE_PART_POP3, hooks, NULL);
}

void dovekie_pop3_plugin_deinit(void)
{
	dovekie_part_unregister(DOVEKIE_PART_POP3);
	dovekie_retention_hooks_deinit();
	(void)pop3_client_created_hook_set(next_hook_client_created);
}
