/* The antivirus module's host side, plain C: what `doveadm dovekie
 * scan-status` and `doveadm dovekie rescan` (dovekie-av-doveadm.c,
 * dovekie-av-rescan.c) and the sync check's quarantine notice
 * (dovekie-quarantine.c) ask the module through the bridge
 * (dovekie-bridge-antivirus.c).
 */
#ifndef DOVEKIE_ANTIVIRUS_HOST_H
#define DOVEKIE_ANTIVIRUS_HOST_H

#include "dovekie-bridge.h"

/* One row of scan-status: a signature-DB version ("" for malformed
   records), a verdict (clean, infected, malformed) and how many cached
   verdicts have both. */
typedef void dovekie_bridge_av_row_func_t(void *context, const char *version,
					  const char *verdict, unsigned int count);

/* Whether a loaded module provides the antivirus service. */
bool dovekie_bridge_has_antivirus(struct dovekie_bridge *bridge);
/* Counts the user's cached verdicts per DB version and verdict, and calls
   row once per pair, sorted by version then verdict. Returns 0, or -1 with
   the reason in error_r. */
int dovekie_bridge_av_status(struct dovekie_bridge *bridge,
			     dovekie_bridge_av_row_func_t *row, void *context,
			     const char **error_r);

/* The user's scanner, for `doveadm dovekie status`: a description in
   scanner_r ("clamd unix:/...", "libclamav /var/lib/clamav") and its DB
   version in version_r. Returns 0 when it answers, -1 with the reason in
   error_r (*scanner_r still set when a module is loaded, else ""). */
int dovekie_bridge_av_probe(struct dovekie_bridge *bridge, const char **scanner_r,
			    const char **version_r, const char **error_r);

/* Readies the in-process libclamav engine for a rescan, with the
   signature-DB version the rescan_mailbox calls then judge with. 0, or -1
   with error_r. */
int dovekie_bridge_av_rescan_begin(struct dovekie_bridge *bridge, const char **error_r);
/* The mailbox infected mail is moved into (the module's setting), in
   *quarantine_r. 0, or -1 when no antivirus module is loaded. */
int dovekie_bridge_av_quarantine_mailbox(struct dovekie_bridge *bridge,
					 const char **quarantine_r);
/* How many new messages one sync of a mailbox judges
   (dovekie_av_sync_max_messages); 0 when no antivirus module is loaded. */
unsigned int dovekie_bridge_av_sync_max_messages(struct dovekie_bridge *bridge);
/* The read memo key (DovekieAntivirusService.read_memo_key), as the eight
   bytes the mailbox index keeps per message; never 0. -1 when reads must be
   judged every time. */
int dovekie_bridge_av_read_memo_key(struct dovekie_bridge *bridge, uint64_t *key_r);
/* The host's steps of a rescan of one mailbox
   (DovekieAntivirusRescanHost in dovekie/antivirus.h says what each does),
   each called with `context`. They return 0 (read: 1 read, 0 expunged
   meanwhile), or -1 with error_r (valid until the next call into them). */
typedef int dovekie_bridge_av_reader_t(void *context, const struct dovekie_bridge_message *msg,
				       const struct dovekie_bridge_source *source,
				       const char **error_r);
struct dovekie_bridge_av_rescan_host {
	int (*list)(void *context, uint32_t after, const uint32_t **uids_r,
		    unsigned int *count_r, const char **error_r);
	int (*batch_begin)(void *context, const char **error_r);
	/* Calls func over message uid; its -1 and error are read's. */
	int (*read)(void *context, uint32_t uid, dovekie_bridge_av_reader_t *func,
		    void *func_context, const char **error_r);
	int (*move)(void *context, uint32_t uid, const char *mailbox, const char *keyword,
		    const char **error_r);
	int (*batch_end)(void *context, bool commit, const char **error_r);
	void (*log)(void *context, enum dovekie_bridge_level level, const char *line);
};

/* DovekieAntivirusRescanJob: the user (for the log), the mailbox's name
   and key, its message count, whether it is the quarantine mailbox,
   --restart, and the run's budget (NULL: no --max-messages). */
struct dovekie_bridge_av_rescan_job {
	const char *user, *mailbox, *mailbox_key;
	unsigned int messages;
	bool is_quarantine, restart;
	uint64_t *budget;
};

/* DovekieAntivirusRescanCounts: a row of the rescan's table when listed. */
struct dovekie_bridge_av_rescan_counts {
	bool listed;
	uint32_t resumed_after;
	unsigned int checked, scanned, cached, too_big, infected, moved;
	bool stopped;
};

/* Rescans one mailbox through host's steps, after
   dovekie_bridge_av_rescan_begin(): the module keeps the resume mark,
   batches, takes from *job->budget, counts into counts_r, moves infected
   mail into quarantine and logs through host->log. 0, or -1 with error_r
   (logged already through host->log when the module ran). */
int dovekie_bridge_av_rescan_mailbox(struct dovekie_bridge *bridge,
				     const struct dovekie_bridge_av_rescan_host *host,
				     void *context, const struct dovekie_bridge_av_rescan_job *job,
				     struct dovekie_bridge_av_rescan_counts *counts_r,
				     const char **error_r);

/* The user's quarantine expiry: 1 with *cutoff_r set (mail saved into
   quarantine before it is due), 0 when dovekie_av_quarantine_days is 0
   (never), -1 with error_r when no antivirus module is loaded. */
int dovekie_bridge_av_quarantine_cutoff(struct dovekie_bridge *bridge, int64_t *cutoff_r,
					const char **error_r);
/* Records in the user's verdict cache that the message read through source
   was released by the admin (held for `signature`, NULL if unknown): it is
   not caught again with the current DB version, returned in *version_r.
   0, or -1 with error_r. */
int dovekie_bridge_av_release(struct dovekie_bridge *bridge,
			      const struct dovekie_bridge_message *msg,
			      const struct dovekie_bridge_source *source, const char *signature,
			      const char **version_r, const char **error_r);

/* The quarantine notice's inputs (DovekieAntivirusNotice): the original's
   header values as read (NULL: absent), the quarantine mailbox, the
   verdict's reason, the host name, a token unique on the host within the
   second, and the time. */
struct dovekie_bridge_av_notice {
	const char *from, *to, *subject, *date;
	const char *mailbox, *reason, *host, *unique;
	int64_t time;
};
/* The bytes of the notice the module makes of `notice`, NUL-terminated,
   in *text_r. 0, or -1 with error_r (no module, or an input missing). */
int dovekie_bridge_av_notice(struct dovekie_bridge *bridge,
			     const struct dovekie_bridge_av_notice *notice,
			     const char **text_r, const char **error_r);

#endif
