/* doveadm dovekie quarantine list|release|delete|expire
 *
 *   list    [-u user | -A]        one row per quarantined message: user, uid,
 *                                 date, from, subject, signature
 *   release -u user <uid> ...     back into the mailbox it was moved out of
 *                                 (INBOX when that is not known or gone),
 *                                 marked released for the current
 *                                 signature-DB version
 *   delete  -u user <uid> ...     expunged from the quarantine mailbox
 *   expire  [-u user | -A]        expunges what has been in quarantine longer
 *                                 than dovekie_av_quarantine_days
 *
 * The quarantine is the antivirus module's dovekie_av_quarantine_mailbox;
 * a quarantined message carries the keyword "$Virus:<signature>" (the
 * module adds it), which is where list takes the signature from. A release
 * records a "released" verdict for the message's digest and the current DB
 * version (so no read or rescan catches it again until the DB changes),
 * then copies it back where the sync check or the rescan moved it from
 * (recorded in the user's kv store; a delivery's is INBOX), without that
 * keyword, with our save hooks
 * out, and expunges it from quarantine: the copy commits first, so a
 * failure in between leaves a duplicate, never a loss. Registered with the
 * other commands by dovekie-doveadm.c.
 */
#include "lib.h"
#include "array.h"
#include "iso8601-date.h"
#include "str.h"
#include "strnum.h"
#include "mail-namespace.h"
#include "mail-search-build.h"
#include "mail-storage.h"
#include "dovekie-plugin.h"
#include "dovekie-doveadm.h"
#include "dovekie-storage.h"
#include "dovekie-antivirus.h"
#include "dovekie-quarantine.h"
#include "dovekie-log-quote.h"

#include <sysexits.h>

#define QUARANTINE_KEYWORD_PREFIX "$Virus:"
/* Header values in a row: one line, at most this many bytes. */
#define ROW_FIELD_MAX 200

enum quarantine_op {
	QUARANTINE_LIST,
	QUARANTINE_RELEASE,
	QUARANTINE_DELETE,
	QUARANTINE_EXPIRE,
};

struct quarantine_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	enum quarantine_op op;
	ARRAY_TYPE(uint32_t) uids;
};

/* The signature a quarantined message was held for, or NULL. */
static const char *quarantine_signature(struct mail *mail)
{
	const char *const *keywords = mail_get_keywords(mail);

	for (; *keywords != NULL; keywords++) {
		if (strncasecmp(*keywords, QUARANTINE_KEYWORD_PREFIX,
				strlen(QUARANTINE_KEYWORD_PREFIX)) == 0 &&
		    (*keywords)[strlen(QUARANTINE_KEYWORD_PREFIX)] != '\0')
			return *keywords + strlen(QUARANTINE_KEYWORD_PREFIX);
	}
	return NULL;
}

/* A header (decoded) on one line and bounded: the row stays one row. */
static const char *row_header(struct mail *mail, const char *name)
{
	const char *value;
	string_t *str;
	size_t i;

	if (mail_get_first_header_utf8(mail, name, &value) <= 0)
		return "";
	str = t_str_new(64);
	for (i = 0; value[i] != '\0' && str_len(str) < ROW_FIELD_MAX; i++) {
		unsigned char c = value[i];
		str_append_c(str, c < 0x20 || c == 0x7f ? ' ' : c);
	}
	return str_c(str);
}

static const char *row_date(time_t t)
{
	return t <= 0 ? "" : iso8601_date_create(t);
}

/* Opens the user's quarantine mailbox: 1, 0 when it does not exist (nothing
   was ever quarantined), -1 with error_r. */
static int
quarantine_open(struct dovekie_user *duser, struct mail_user *user, struct mailbox **box_r,
		const char **error_r)
{
	struct mail_namespace *ns;
	struct mailbox *box;
	enum mail_error error;
	const char *vname, *errstr;

	*box_r = NULL;
	if (dovekie_bridge_av_quarantine_mailbox(duser->bridge, &vname) < 0 ||
	    vname[0] == '\0') {
		*error_r = "the antivirus module is not loaded";
		return -1;
	}
	ns = mail_namespace_find(user->namespaces, vname);
	box = mailbox_alloc(ns->list, vname, 0);
	if (mailbox_open(box) < 0 || mailbox_sync(box, 0) < 0) {
		errstr = mailbox_get_last_internal_error(box, &error);
		mailbox_free(&box);
		if (error == MAIL_ERROR_NOTFOUND)
			return 0;
		*error_r = t_strdup_printf("cannot open %s: %s", dovekie_log_quote(vname), errstr);
		return -1;
	}
	*box_r = box;
	return 1;
}

/* Every UID of box, ascending. */
static int quarantine_uids(struct mailbox *box, ARRAY_TYPE(uint32_t) *uids)
{
	struct mailbox_transaction_context *t;
	struct mail_search_args *args;
	struct mail_search_context *search;
	struct mail *mail;

	args = mail_search_build_init();
	mail_search_build_add_all(args);
	t = mailbox_transaction_begin(box, 0, "dovekie quarantine list");
	search = mailbox_search_init(t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	while (mailbox_search_next(search, &mail))
		array_push_back(uids, &mail->uid);
	if (mailbox_search_deinit(&search) < 0) {
		mailbox_transaction_rollback(&t);
		return -1;
	}
	mailbox_transaction_rollback(&t);
	return 0;
}

static void quarantine_list(struct mail_user *user, struct mailbox *box)
{
	struct mailbox_transaction_context *t;
	struct mail *mail;
	ARRAY_TYPE(uint32_t) uids;
	const uint32_t *uid;
	const char *signature;
	time_t date;

	t_array_init(&uids, 64);
	if (quarantine_uids(box, &uids) < 0) {
		i_error("dovekie: quarantine list for %s: %s", user->username,
			mailbox_get_last_internal_error(box, NULL));
		return;
	}
	t = mailbox_transaction_begin(box, 0, "dovekie quarantine list");
	mail = mail_alloc(t, MAIL_FETCH_RECEIVED_DATE, NULL);
	array_foreach(&uids, uid) {
		if (!mail_set_uid(mail, *uid))
			continue;
		T_BEGIN {
			if (mail_get_received_date(mail, &date) < 0)
				date = 0;
			signature = quarantine_signature(mail);
			doveadm_print(user->username);
			doveadm_print_num(mail->uid);
			doveadm_print(row_date(date));
			doveadm_print(row_header(mail, "From"));
			doveadm_print(row_header(mail, "Subject"));
			doveadm_print(signature != NULL ? signature : "-");
		} T_END;
	}
	mail_free(&mail);
	mailbox_transaction_rollback(&t);
}

struct release_read_ctx {
	struct dovekie_user *duser;
	const char *signature;
	const char *version;
};

static int
release_read(void *context, const struct dovekie_bridge_message *msg,
	     const struct dovekie_bridge_source *source, const char **error_r)
{
	struct release_read_ctx *rctx = context;

	return dovekie_bridge_av_release(rctx->duser->bridge, msg, source, rctx->signature,
					 &rctx->version, error_r);
}

/* Copies mail into dest (committed), with its flags and keywords but the
   quarantine keyword, and its received date; our save hooks stay out (the
   release verdict is recorded already). */
static int
release_copy(struct mailbox *dest, struct mail *mail, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mail_save_context *save;
	struct mail_keywords *kw;
	ARRAY_TYPE(const_string) names;
	const char *const *keywords = mail_get_keywords(mail);
	time_t received;
	int ret;

	t_array_init(&names, 8);
	for (; *keywords != NULL; keywords++) {
		if (strncasecmp(*keywords, QUARANTINE_KEYWORD_PREFIX,
				strlen(QUARANTINE_KEYWORD_PREFIX)) != 0)
			array_push_back(&names, keywords);
	}
	array_append_zero(&names);
	/* Released: its copy is not judged again (mail's transaction, the
	   caller's, keeps our read hook out of the copy's read). */
	t = dovekie_transaction_begin(dest, MAILBOX_TRANSACTION_FLAG_EXTERNAL,
				      "dovekie quarantine release", DOVEKIE_OWN_SAVES);
	save = mailbox_save_alloc(t);
	kw = array_count(&names) == 1 ? NULL :
		mailbox_keywords_create_valid(dest, array_front(&names));
	mailbox_save_set_flags(save, mail_get_flags(mail) &
			       ENUM_NEGATE(MAIL_DELETED | MAIL_RECENT), kw);
	if (kw != NULL)
		mailbox_keywords_unref(&kw);
	if (mail_get_received_date(mail, &received) == 0)
		mailbox_save_set_received_date(save, received, 0);
	ret = mailbox_copy(&save, mail);
	if (ret == 0 && mailbox_transaction_commit(&t) < 0)
		ret = -1;
	if (ret < 0) {
		*error_r = t_strdup_printf("cannot copy it into %s: %s",
			dovekie_log_quote(mailbox_get_vname(dest)),
			mailbox_get_last_internal_error(dest, NULL));
		if (t != NULL)
			mailbox_transaction_rollback(&t);
	}
	return ret;
}

/* Where a release of uid goes: the mailbox it was moved out of, when
   that is recorded and can be opened (and is not the quarantine), else
   inbox. Free the result with quarantine_release_dest_free(). */
static struct mailbox *
quarantine_release_dest(struct dovekie_user *duser, struct mail_user *user,
			struct mailbox *box, struct mailbox *inbox, uint32_t uid)
{
	struct mailbox_status status;
	struct mail_namespace *ns;
	struct mailbox *dest;
	const char *origin;

	mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
	origin = dovekie_quarantine_origin(duser, status.uidvalidity, uid);
	if (origin == NULL ||
	    dovekie_quarantine_is(user, mailbox_get_vname(box), origin))
		return inbox;
	ns = mail_namespace_find(user->namespaces, origin);
	dest = mailbox_alloc(ns->list, origin, 0);
	if (mailbox_open(dest) < 0) {
		e_warning(duser->event, "quarantine: uid=%u came from %s, which cannot be "
			  "opened (%s): releasing it to INBOX", uid, dovekie_log_quote(origin),
			  mailbox_get_last_internal_error(dest, NULL));
		mailbox_free(&dest);
		return inbox;
	}
	return dest;
}

/* Releases (or deletes) one message of box. 0, or -1 with error_r. */
static int
quarantine_release_one(struct dovekie_user *duser, struct mail_user *user,
		       struct mailbox *box, struct mailbox *inbox,
		       uint32_t uid, bool release, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct release_read_ctx rctx;
	struct mailbox_status status;
	struct mailbox *dest = inbox;
	struct mail *mail;
	int ret = 0;

	/* Its reads are ours; a release's expunge is a move, not the user's
	   expunge (a delete's is the user's). */
	t = dovekie_transaction_begin(box, 0, release ? "dovekie quarantine release" :
				      "dovekie quarantine delete", DOVEKIE_OWN_READS |
				      (release ? DOVEKIE_OWN_MOVES : 0));
	mail = mail_alloc(t, 0, NULL);
	if (!mail_set_uid(mail, uid)) {
		*error_r = "no such message in quarantine";
		ret = -1;
	} else if (release) {
		i_zero(&rctx);
		rctx.duser = duser;
		rctx.signature = quarantine_signature(mail);
		dest = quarantine_release_dest(duser, user, box, inbox, uid);
		if (dovekie_read_mail(mail, release_read, &rctx, error_r) < 0 ||
		    release_copy(dest, mail, error_r) < 0)
			ret = -1;
		else {
			e_info(duser->event, "quarantine: released uid=%u to %s "
			       "(signature %s, not caught again with DB version %s)", uid,
			       dovekie_log_quote(mailbox_get_vname(dest)),
			       rctx.signature != NULL ? rctx.signature : "unknown",
			       rctx.version);
		}
	}
	if (ret == 0)
		mail_expunge(mail);
	mail_free(&mail);
	if (dest != inbox)
		mailbox_free(&dest);
	if (ret == 0 && (mailbox_transaction_commit(&t) < 0 || mailbox_sync(box, 0) < 0)) {
		*error_r = t_strdup_printf("cannot expunge it: %s",
					   mailbox_get_last_internal_error(box, NULL));
		return -1;
	}
	if (t != NULL)
		mailbox_transaction_rollback(&t);
	if (ret == 0) {
		mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
		dovekie_quarantine_forget_origin(duser, status.uidvalidity, uid);
	}
	return ret;
}

static int
quarantine_by_uid(struct quarantine_cmd_context *ctx, struct dovekie_user *duser,
		  struct mail_user *user, struct mailbox *box)
{
	bool release = ctx->op == QUARANTINE_RELEASE;
	struct mail_namespace *ns;
	struct mailbox *inbox = NULL;
	const uint32_t *uid;
	const char *error;
	int ret = 0;

	if (release) {
		ns = mail_namespace_find_inbox(user->namespaces);
		inbox = mailbox_alloc(ns->list, "INBOX", 0);
		if (mailbox_open(inbox) < 0) {
			i_error("dovekie: quarantine release for %s: cannot open INBOX: %s",
				user->username, mailbox_get_last_internal_error(inbox, NULL));
			mailbox_free(&inbox);
			return -1;
		}
	}
	array_foreach(&ctx->uids, uid) {
		T_BEGIN {
			if (quarantine_release_one(duser, user, box, inbox, *uid, release,
						   &error) < 0) {
				i_error("dovekie: quarantine %s uid=%u for %s: %s",
					release ? "release" : "delete", *uid, user->username, error);
				ret = -1;
			} else {
				doveadm_print(user->username);
				doveadm_print_num(*uid);
				doveadm_print(release ? "released" : "deleted");
			}
		} T_END;
	}
	if (inbox != NULL)
		mailbox_free(&inbox);
	return ret;
}

/* Expunges what was saved into quarantine before cutoff. */
static int quarantine_expire(struct dovekie_user *duser, struct mail_user *user,
			     struct mailbox *box, time_t cutoff)
{
	struct mailbox_transaction_context *t;
	struct mailbox_status status;
	struct mail *mail;
	ARRAY_TYPE(uint32_t) uids, expired;
	const uint32_t *uid;
	time_t saved;
	int ret = 0;

	t_array_init(&uids, 64);
	t_array_init(&expired, 16);
	if (quarantine_uids(box, &uids) < 0)
		return -1;
	t = mailbox_transaction_begin(box, 0, "dovekie quarantine expire");
	mail = mail_alloc(t, MAIL_FETCH_SAVE_DATE, NULL);
	array_foreach(&uids, uid) {
		if (!mail_set_uid(mail, *uid))
			continue;
		/* The save date is when it entered quarantine; a backend
		   without one has the received date. */
		if (mail_get_save_date(mail, &saved) <= 0 &&
		    mail_get_received_date(mail, &saved) < 0)
			continue;
		if (saved >= cutoff)
			continue;
		mail_expunge(mail);
		array_push_back(&expired, &mail->uid);
		doveadm_print(user->username);
		doveadm_print_num(mail->uid);
		doveadm_print(row_date(saved));
		doveadm_print("expired");
	}
	mail_free(&mail);
	if (mailbox_transaction_commit(&t) < 0 || mailbox_sync(box, 0) < 0)
		return -1;
	mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
	array_foreach(&expired, uid)
		dovekie_quarantine_forget_origin(duser, status.uidvalidity, *uid);
	return ret;
}

static int
cmd_quarantine_run(struct doveadm_mail_cmd_context *_ctx, struct mail_user *user)
{
	struct quarantine_cmd_context *ctx = (struct quarantine_cmd_context *)_ctx;
	struct dovekie_user *duser = DOVEKIE_USER_CONTEXT(user);
	struct mailbox *box;
	const char *error;
	int64_t cutoff = 0;
	int ret;

	if (!dovekie_doveadm_module_runs(_ctx, user, duser, "antivirus",
					 duser != NULL && dovekie_bridge_has_antivirus(duser->bridge)))
		return -1;
	if (ctx->op == QUARANTINE_EXPIRE) {
		ret = dovekie_bridge_av_quarantine_cutoff(duser->bridge, &cutoff, &error);
		if (ret < 0) {
			i_error("dovekie: quarantine expire for %s: %s", user->username, error);
			doveadm_mail_failed_error(_ctx, MAIL_ERROR_TEMP);
			return -1;
		}
		if (ret == 0)
			return 0; /* dovekie_av_quarantine_days = 0: kept */
	}
	ret = quarantine_open(duser, user, &box, &error);
	if (ret < 0) {
		i_error("dovekie: quarantine for %s: %s", user->username, error);
		doveadm_mail_failed_error(_ctx, MAIL_ERROR_TEMP);
		return -1;
	}
	if (ret == 0) {
		if (ctx->op == QUARANTINE_RELEASE || ctx->op == QUARANTINE_DELETE) {
			i_error("dovekie: quarantine for %s: nothing is quarantined",
				user->username);
			doveadm_mail_failed_error(_ctx, MAIL_ERROR_NOTFOUND);
			return -1;
		}
		return 0;
	}
	ret = 0;
	switch (ctx->op) {
	case QUARANTINE_LIST:
		quarantine_list(user, box);
		break;
	case QUARANTINE_RELEASE:
	case QUARANTINE_DELETE:
		ret = quarantine_by_uid(ctx, duser, user, box);
		break;
	case QUARANTINE_EXPIRE:
		if (quarantine_expire(duser, user, box, (time_t)cutoff) < 0) {
			i_error("dovekie: quarantine expire for %s: %s", user->username,
				mailbox_get_last_internal_error(box, NULL));
			ret = -1;
		}
		break;
	}
	mailbox_free(&box);
	if (ret < 0)
		doveadm_mail_failed_error(_ctx, MAIL_ERROR_TEMP);
	return ret;
}

DOVEKIE_DOVEADM_INIT(cmd_quarantine_init)
{
	struct quarantine_cmd_context *ctx = (struct quarantine_cmd_context *)_ctx;
	const char *const *args = dovekie_doveadm_args(_ctx, "uid");
	const char *name = ctx->op == QUARANTINE_RELEASE ? "release" : "delete";
	uint32_t uid;

	doveadm_print_header("username", "Username", 0);
	doveadm_print_header("uid", "UID", 0);
	switch (ctx->op) {
	case QUARANTINE_LIST:
		doveadm_print_header("date", "Date", 0);
		doveadm_print_header("from", "From", 0);
		doveadm_print_header("subject", "Subject", 0);
		doveadm_print_header("signature", "Signature", 0);
		return;
	case QUARANTINE_EXPIRE:
		doveadm_print_header("saved", "Quarantined", 0);
		doveadm_print_header("result", "Result", 0);
		return;
	case QUARANTINE_RELEASE:
	case QUARANTINE_DELETE:
		doveadm_print_header("result", "Result", 0);
		break;
	}
	if (args[0] == NULL)
		i_fatal_status(EX_USAGE, "dovekie quarantine %s: no UID given", name);
	p_array_init(&ctx->uids, _ctx->pool, 8);
	for (; *args != NULL; args++) {
		/* As rescan does: doveadm's own error path for a bad
		   argument reads freed memory, so a usage error ends here. */
		if (str_to_uint32(*args, &uid) < 0 || uid == 0) {
			i_fatal_status(EX_USAGE, "dovekie quarantine %s: not a UID: '%s'",
				       name, *args);
		}
		array_push_back(&ctx->uids, &uid);
	}
}

static struct doveadm_mail_cmd_context *quarantine_alloc(enum quarantine_op op)
{
	struct quarantine_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct quarantine_cmd_context);
	ctx->op = op;
	ctx->ctx.v.init = cmd_quarantine_init;
	ctx->ctx.v.run = cmd_quarantine_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

static struct doveadm_mail_cmd_context *cmd_quarantine_list_alloc(void)
{
	return quarantine_alloc(QUARANTINE_LIST);
}

static struct doveadm_mail_cmd_context *cmd_quarantine_release_alloc(void)
{
	return quarantine_alloc(QUARANTINE_RELEASE);
}

static struct doveadm_mail_cmd_context *cmd_quarantine_delete_alloc(void)
{
	return quarantine_alloc(QUARANTINE_DELETE);
}

static struct doveadm_mail_cmd_context *cmd_quarantine_expire_alloc(void)
{
	return quarantine_alloc(QUARANTINE_EXPIRE);
}

struct doveadm_cmd_ver2 dovekie_cmd_quarantine_list = {
	.name = "dovekie quarantine list",
	.usage = "[-u <user>|-A]",
	.mail_cmd = cmd_quarantine_list_alloc,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 dovekie_cmd_quarantine_release = {
	.name = "dovekie quarantine release",
	.usage = "-u <user> <uid> [<uid> ...]",
	.mail_cmd = cmd_quarantine_release_alloc,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('\0', "uid", CMD_PARAM_ARRAY, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 dovekie_cmd_quarantine_delete = {
	.name = "dovekie quarantine delete",
	.usage = "-u <user> <uid> [<uid> ...]",
	.mail_cmd = cmd_quarantine_delete_alloc,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('\0', "uid", CMD_PARAM_ARRAY, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 dovekie_cmd_quarantine_expire = {
	.name = "dovekie quarantine expire",
	.usage = "[-u <user>|-A]",
	.mail_cmd = cmd_quarantine_expire_alloc,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
};
