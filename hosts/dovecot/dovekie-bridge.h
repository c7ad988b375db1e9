/* The boundary between Dovecot and GLib.
 *
 * dovekie-bridge.c is the only file of the host that includes GLib; every
 * other file of hosts/dovecot includes Dovecot headers and only this one
 * of ours. Types here are plain C, so neither side sees the other's
 * allocators.
 *
 * One convention for strings across the seam, in both directions:
 * - strings passed in are borrowed for the call;
 * - a function that fails returns -1 (or false) and sets `const char
 *   **error_r`; the GLib side's strings that come out (errors, versions,
 *   names, the quarantine notice) are made with dovekie_bridge_keep(), so
 *   they live in Dovecot's data stack like any Dovecot error_r: valid
 *   until the caller's T_END, and never freed by hand;
 * - the host's callbacks (struct dovekie_bridge_host, struct
 *   dovekie_bridge_source) answer the same way, with strings valid until
 *   the next call into them;
 * - the one exception is a verdict's texts (struct dovekie_bridge_result,
 *   the reason of dovekie_bridge_save/read): a client or sender reads them
 *   on one protocol line, so they come back cut at DOVEKIE_BRIDGE_REASON_MAX
 *   in buffers the caller owns, on purpose.
 */
#ifndef DOVEKIE_BRIDGE_H
#define DOVEKIE_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Longest verdict text handed back to Dovecot, including the NUL. */
#define DOVEKIE_BRIDGE_REASON_MAX 512

/* A copy of text in the data stack of the Dovecot side (t_strdup), for
   the strings the GLib side hands back. The Dovecot side of the host
   implements it (dovekie-plugin.c); a program that links the bridge
   without Dovecot (its unit test) supplies its own. */
const char *dovekie_bridge_keep(const char *text);

enum dovekie_bridge_level {
	DOVEKIE_BRIDGE_DEBUG,
	DOVEKIE_BRIDGE_INFO,
	DOVEKIE_BRIDGE_WARNING,
	DOVEKIE_BRIDGE_ERROR,
};

/* Values equal DovekieSaveOrigin / DovekieReadOrigin / DovekieVerdictKind. */
enum dovekie_bridge_origin {
	DOVEKIE_BRIDGE_SAVE_APPEND = 0,
	DOVEKIE_BRIDGE_SAVE_COPY = 1,
	DOVEKIE_BRIDGE_SAVE_DELIVERY = 2,
};
enum dovekie_bridge_read_origin {
	DOVEKIE_BRIDGE_READ_FETCH = 0,
	DOVEKIE_BRIDGE_READ_POP3 = 1,
	DOVEKIE_BRIDGE_READ_OTHER = 2,
	DOVEKIE_BRIDGE_READ_SYNC = 3,
};
enum dovekie_bridge_verdict {
	DOVEKIE_BRIDGE_ACCEPT = 0,
	DOVEKIE_BRIDGE_REJECT = 1,
	DOVEKIE_BRIDGE_TEMPFAIL = 2,
	/* Only from dovekie_bridge_save_result(): */
	DOVEKIE_BRIDGE_DIVERT = 3,  /* store into result->mailbox instead */
	DOVEKIE_BRIDGE_DISCARD = 4, /* store nothing, tell the sender it was taken */
};

/* kv_iter's callback: return false to stop. */
typedef bool dovekie_bridge_kv_func_t(void *func_context, const char *key,
				      const char *value);

struct dovekie_bridge_host {
	/* module is NULL for the loader's own lines. */
	void (*log)(void *context, enum dovekie_bridge_level level,
		    const char *module, const char *message);
	int64_t (*now)(void *context);
	void *context;

	/* Per-user, per-module persistent state (keys are checked by the
	   loader). Each returns -1 with *error_r on failure. kv_get returns
	   1 with *value_r (valid until the next call) or 0 when absent.
	   kv_set with value NULL deletes. kv_iter calls func for each key
	   starting with prefix. May be NULL: modules then get an error. */
	int (*kv_get)(void *context, const char *module, const char *key,
		      const char **value_r, const char **error_r);
	int (*kv_set)(void *context, const char *module, const char *key,
		      const char *value, const char **error_r);
	int (*kv_iter)(void *context, const char *module, const char *prefix,
		       dovekie_bridge_kv_func_t *func, void *func_context,
		       const char **error_r);
	/* A module's event: name and fields (key, value, ..., NULL) are
	   checked by the loader. May be NULL. */
	void (*emit)(void *context, const char *module, const char *name,
		     const char *const *fields);
	/* kv_set that may be held and committed with later writes (see
	   DovekieHostApi.kv_defer); kv_get sees it. May be NULL: kv_set. */
	int (*kv_defer)(void *context, const char *module, const char *key,
			const char *value, const char **error_r);
};

/* A message's bytes. read() returns bytes read, 0 at the end, or -1 with
   *error_r set (valid until the next call). */
struct dovekie_bridge_source {
	ssize_t (*read)(void *context, unsigned char *buf, size_t len,
			const char **error_r);
	int (*rewind)(void *context, const char **error_r);
	int (*fd)(void *context);
	void *context;
};

struct dovekie_bridge_message {
	const char *mailbox;
	uint32_t uid;
	int64_t size;
};

struct dovekie_bridge;

/* settings: key, value, key, value, ..., NULL (borrowed). user_keys:
   the keys among them that came from the user's own record (userdb), NULL
   terminated, may be NULL. Never returns NULL; problems are logged through
   host->log and the session goes on, with every module that failed to
   start guarding what it guards (see dovekie_bridge_guarded). */
struct dovekie_bridge *
dovekie_bridge_create(const char *const *settings, const char *const *user_keys,
		      const char *default_module_dir,
		      const struct dovekie_bridge_host *host);
void dovekie_bridge_destroy(struct dovekie_bridge **bridge);
/* Every function below accepts a NULL bridge (a user whose modules are
   already torn down) and then acts as if no module were loaded. */

unsigned int dovekie_bridge_module_count(struct dovekie_bridge *bridge);
/* Whether the user has anything to hook: a loaded module, or a listed one
   that failed to start and now guards what it would have checked. */
bool dovekie_bridge_active(struct dovekie_bridge *bridge);

/* The text a client or sender gets for a guarded refusal; equals
   DOVEKIE_GUARD_REASON (checked by the bridge's unit test). */
#define DOVEKIE_BRIDGE_GUARD_REASON \
	"Mail checks are unavailable because of a server configuration problem, try again later"

/* Values equal DovekieGuard. */
enum dovekie_bridge_guard {
	DOVEKIE_BRIDGE_GUARD_SAVE = 1 << 0,
	DOVEKIE_BRIDGE_GUARD_READ = 1 << 1,
	DOVEKIE_BRIDGE_GUARD_POP3 = 1 << 2,
};
/* Modules listed for the user that failed to start, in list order:
   name, why (naming the setting and value where one is to blame) and the
   guards (enum dovekie_bridge_guard bits), borrowed until the bridge is
   destroyed. Returns false when index is out of range. */
unsigned int dovekie_bridge_failed_count(struct dovekie_bridge *bridge);
bool dovekie_bridge_failed_info(struct dovekie_bridge *bridge, unsigned int index,
				const char **name_r, const char **reason_r,
				unsigned int *guards_r);
/* true when a failed module guards `guard`: *module_r and *reason_r (why it
   is not running) are borrowed until the bridge is destroyed. */
bool dovekie_bridge_guarded(struct dovekie_bridge *bridge, enum dovekie_bridge_guard guard,
			    const char **module_r, const char **reason_r);
/* Every problem found when the bridge was created (each also logged
   once), borrowed until the bridge is destroyed. */
unsigned int dovekie_bridge_problem_count(struct dovekie_bridge *bridge);
const char *dovekie_bridge_problem(struct dovekie_bridge *bridge, unsigned int index);
/* Facts about loaded module `index` (< module_count), borrowed until the
   bridge is destroyed; services is a space-separated list, maybe empty.
   Returns false when index is out of range. */
bool dovekie_bridge_module_info(struct dovekie_bridge *bridge, unsigned int index,
				const char **name_r, const char **version_r,
				const char **description_r, const char **services_r);
bool dovekie_bridge_wants_save(struct dovekie_bridge *bridge);
bool dovekie_bridge_wants_read(struct dovekie_bridge *bridge);
bool dovekie_bridge_wants_expunge(struct dovekie_bridge *bridge);

/* Runs the save / read hooks. The reason of a non-ACCEPT verdict is
   copied into reason (truncated at DOVEKIE_BRIDGE_REASON_MAX). They
   return only ACCEPT, REJECT or TEMPFAIL: a module's DIVERT or DISCARD
   (meant for deliveries) becomes REJECT with the module's reason, and a
   keyword is dropped. */
enum dovekie_bridge_verdict
dovekie_bridge_save(struct dovekie_bridge *bridge, enum dovekie_bridge_origin origin,
		    const struct dovekie_bridge_message *msg,
		    const struct dovekie_bridge_source *source,
		    char reason[DOVEKIE_BRIDGE_REASON_MAX]);

/* Everything a save verdict says, in caller-owned buffers. */
struct dovekie_bridge_result {
	/* Non-ACCEPT: the text for the client or sender; else "". */
	char reason[DOVEKIE_BRIDGE_REASON_MAX];
	/* DIVERT: the mailbox to store into (never ""); else "". */
	char mailbox[DOVEKIE_BRIDGE_REASON_MAX];
	/* ACCEPT or DIVERT: an IMAP keyword to add to the stored message, or
	   "" for none; else "". */
	char keyword[DOVEKIE_BRIDGE_REASON_MAX];
};

/* The save hooks for a delivery: like dovekie_bridge_save, but DIVERT and
   DISCARD come back as such, with the mailbox and keyword. A DIVERT
   target that does not fit the buffer becomes TEMPFAIL (logged). */
enum dovekie_bridge_verdict
dovekie_bridge_save_result(struct dovekie_bridge *bridge, enum dovekie_bridge_origin origin,
			   const struct dovekie_bridge_message *msg,
			   const struct dovekie_bridge_source *source,
			   struct dovekie_bridge_result *result);
enum dovekie_bridge_verdict
dovekie_bridge_read(struct dovekie_bridge *bridge, enum dovekie_bridge_read_origin origin,
		    const struct dovekie_bridge_message *msg,
		    const struct dovekie_bridge_source *source,
		    char reason[DOVEKIE_BRIDGE_REASON_MAX]);
/* The read hooks. For DOVEKIE_BRIDGE_READ_SYNC a DIVERT (move the message
   into result->mailbox with result->keyword) is kept as such; a client's
   read gets REJECT instead, and no keyword. DISCARD becomes REJECT. */
enum dovekie_bridge_verdict
dovekie_bridge_read_result(struct dovekie_bridge *bridge, enum dovekie_bridge_read_origin origin,
			   const struct dovekie_bridge_message *msg,
			   const struct dovekie_bridge_source *source,
			   struct dovekie_bridge_result *result);
/* Returns true if the expunge may go ahead, false if a module kept it. */
bool dovekie_bridge_expunge(struct dovekie_bridge *bridge,
			    const struct dovekie_bridge_message *msg, bool pop3);
void dovekie_bridge_pop3_start(struct dovekie_bridge *bridge, const char *user,
			       unsigned int messages);
void dovekie_bridge_pop3_end(struct dovekie_bridge *bridge, const char *user,
			     unsigned int messages, bool quit_seen);

/* ---- the "index" service (dovekie/index.h), for the fts backend ----
   Every int function returns 0 (lookup: 1 handled, 0 not handled) or -1
   with the reason in error_r. */
enum dovekie_bridge_index_field {
	DOVEKIE_BRIDGE_INDEX_HEADER = 0,
	DOVEKIE_BRIDGE_INDEX_BODY = 1,
	/* What the search keys SUBJECT, FROM, TO, CC, BCC compare. */
	DOVEKIE_BRIDGE_INDEX_SUBJECT = 2,
	DOVEKIE_BRIDGE_INDEX_FROM = 3,
	DOVEKIE_BRIDGE_INDEX_TO = 4,
	DOVEKIE_BRIDGE_INDEX_CC = 5,
	DOVEKIE_BRIDGE_INDEX_BCC = 6,
};
/* The keyed scopes (SUBJECT to BCC) are in the keyed fields' order. */
enum dovekie_bridge_index_scope {
	DOVEKIE_BRIDGE_INDEX_SCOPE_TEXT = 0,
	DOVEKIE_BRIDGE_INDEX_SCOPE_BODY = 1,
	DOVEKIE_BRIDGE_INDEX_SCOPE_HEADER = 2,
	DOVEKIE_BRIDGE_INDEX_SCOPE_SUBJECT = 3,
	DOVEKIE_BRIDGE_INDEX_SCOPE_FROM = 4,
	DOVEKIE_BRIDGE_INDEX_SCOPE_TO = 5,
	DOVEKIE_BRIDGE_INDEX_SCOPE_CC = 6,
	DOVEKIE_BRIDGE_INDEX_SCOPE_BCC = 7,
};
struct dovekie_bridge_index;

/* Whether a loaded module provides the index service. */
bool dovekie_bridge_has_index(struct dovekie_bridge *bridge);
/* Opens the index file at path (see DovekieIndexVtable.open). */
int dovekie_bridge_index_open(struct dovekie_bridge *bridge, const char *path,
			      uint32_t uidvalidity, struct dovekie_bridge_index **index_r,
			      const char **error_r);
/* Commits what is pending and frees; *index becomes NULL. */
void dovekie_bridge_index_close(struct dovekie_bridge_index **index);
int dovekie_bridge_index_last_uid(struct dovekie_bridge_index *index, uint32_t *last_uid_r,
				  const char **error_r);
int dovekie_bridge_index_doc_begin(struct dovekie_bridge_index *index, uint32_t uid,
				   const char **error_r);
int dovekie_bridge_index_doc_append(struct dovekie_bridge_index *index,
				    enum dovekie_bridge_index_field field,
				    const void *data, size_t size,
				    const char **error_r);
int dovekie_bridge_index_doc_end(struct dovekie_bridge_index *index,
				 const char **error_r);
int dovekie_bridge_index_expunge(struct dovekie_bridge_index *index, uint32_t uid,
				 const char **error_r);
int dovekie_bridge_index_flush(struct dovekie_bridge_index *index,
			       const char **error_r);
/* add() is called per UID in ascending order; *last_uid_r is the last UID
   the answer covers (DovekieIndexVtable.lookup). */
int dovekie_bridge_index_lookup(struct dovekie_bridge_index *index,
				enum dovekie_bridge_index_scope scope, const char *needle,
				void (*add)(void *context, uint32_t uid, bool definite),
				void *context, uint32_t *last_uid_r,
				const char **error_r);
int dovekie_bridge_index_reset(struct dovekie_bridge_index *index,
			       const char **error_r);
int dovekie_bridge_index_optimize(struct dovekie_bridge_index *index,
				  const char **error_r);

#endif
