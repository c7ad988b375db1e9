/* dovekie settings: how a module declares the settings it accepts.
 *
 * Every setting is declared once, with its type, default and range. The
 * loader validates the user's value (or the default) before the module's
 * init runs, and rejects any `dovekie_*` key that no loaded module (nor the
 * loader itself) declares. Error messages always name the setting.
 */
#ifndef DOVEKIE_SETTINGS_H
#define DOVEKIE_SETTINGS_H

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  DOVEKIE_SETTING_STRING, /* any text; `max` > 0 caps its length in bytes */
  DOVEKIE_SETTING_UINT,   /* whole decimal number in [min, max] */
  DOVEKIE_SETTING_SIZE,   /* like UINT, with an optional k/M/G suffix (x1024) */
  DOVEKIE_SETTING_BOOL,   /* yes|no|true|false|1|0|on|off */
  DOVEKIE_SETTING_ENUM,   /* one of `choices` */
} DovekieSettingType;

typedef struct {
  const gchar *name;          /* full key, e.g. "dovekie_example_reject" */
  DovekieSettingType type;
  const gchar *default_value; /* as the admin would write it; may be NULL for STRING */
  guint64 min, max;           /* UINT/SIZE range, inclusive; STRING: min and max length
                               * in bytes (max 0 = 64 KiB), checked on any value given */
  const gchar *const *choices;/* ENUM only, NULL-terminated */
  const gchar *help;          /* one line, used by the man page and conf.d */
} DovekieSettingDef;

G_END_DECLS

#endif
