/* The antivirus module's host side, plain C: what `doveadm dovekie
 * scan-status` (dovekie-av-doveadm.c) asks the module through the bridge
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
			     char error_r[DOVEKIE_BRIDGE_REASON_MAX]);

#endif
