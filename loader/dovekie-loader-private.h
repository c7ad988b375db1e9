/* libdovekie internals shared by its .c files; not installed. */
#ifndef DOVEKIE_LOADER_PRIVATE_H
#define DOVEKIE_LOADER_PRIVATE_H

#include <sys/types.h>

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

/* A module listed for the user that failed to start. */
typedef struct {
  gchar *name;
  gchar *reason;
  DovekieGuard guards;
} FailedModule;

struct _DovekieLoader {
  GHashTable *settings; /* the user's view: key -> value, owned copies */
  GHashTable *user_keys; /* keys that came from userdb (a set), owned */
  GPtrArray *failed;    /* FailedModule*, list order */
  GPtrArray *problems;  /* gchar*, each logged once */
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

/* Besides root, the owner a module file and its directories may have:
 * root too in production. Tests only may change it, so that a non-root
 * developer can run them. */
extern uid_t dovekie_loader_trusted_uid;
/* Tests only: called between the checks of an opened module file and its
 * loading, to prove a swap of the path then cannot change what loads. */
extern void (*dovekie_loader_test_after_open) (const gchar *path);

#endif
