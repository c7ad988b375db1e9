/* libdovekie internals shared by its .c files; not installed. */
#ifndef DOVEKIE_LOADER_PRIVATE_H
#define DOVEKIE_LOADER_PRIVATE_H

#include <gmodule.h>

#include "dovekie/loader.h"

typedef struct {
  DovekieContext pub; /* first: modules get &pub and we cast back */
  DovekieLoader *loader;
  GModule *gmodule;
  const DovekieModule *module;
  GHashTable *values;  /* key -> effective value (owned copies) */
  GHashTable *numbers; /* key -> guint64* (owned) */
  gboolean initialized;
} LoadedModule;

struct _DovekieLoader {
  GHashTable *settings; /* the user's view: key -> value, owned copies */
  gchar *module_dir;
  DovekieHost host;
  gint64 clock_offset;
  GPtrArray *modules;   /* LoadedModule*, load order */
  GHashTable *services; /* service name -> LoadedModule* (borrowed) */
};

struct _DovekieMessage {
  const DovekieMessageSource *source;
  gpointer data;
};

/* The host API every module context points at (dovekie-host-api.c). */
extern const DovekieHostApi dovekie_host_api;

/* One log line through the host; module NULL for the loader's own. */
void dovekie_loader_log (DovekieLoader *loader, DovekieLogLevel level, const gchar *module,
                         const gchar *message);

#endif
