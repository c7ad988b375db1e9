/* The example module's testable pieces. */
#ifndef DOVEKIE_EXAMPLE_H
#define DOVEKIE_EXAMPLE_H

#include "dovekie/module.h"

/* Reads msg to its end (or to the first match) and sets *found_r when
 * `needle` occurs anywhere, including across read boundaries. An empty
 * needle never matches. FALSE with `error` when reading fails. */
gboolean dovekie_example_find (DovekieContext *ctx, DovekieMessage *msg, const gchar *needle,
                               gboolean *found_r, GError **error);

#endif
