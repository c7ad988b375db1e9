/* For the GLib side of the host only (dovekie-bridge*.c): the loader behind
 * a bridge, so service-specific bridge files (an FTS backend, doveadm
 * commands) can reach the modules' services. */
#ifndef DOVEKIE_BRIDGE_PRIVATE_H
#define DOVEKIE_BRIDGE_PRIVATE_H

#include "dovekie/loader.h"
#include "dovekie-bridge.h"

DovekieLoader *dovekie_bridge_get_loader (struct dovekie_bridge *bridge);

/* Reads a struct dovekie_bridge_source (the data pointer) for a module:
 * with dovekie_message_new for service calls that take a message. */
extern const DovekieMessageSource dovekie_bridge_message_source;

/* Sets *error_r to error's message (or `otherwise` when there is none) in
 * Dovecot's data stack (dovekie_bridge_keep), frees error and returns -1. */
int dovekie_bridge_fail (GError *error, const char *otherwise, const char **error_r);

#endif
