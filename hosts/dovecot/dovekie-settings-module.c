/* libdovekie_settings.so, Dovecot 2.4's settings module for dovekie: the
   config process loads it from the modules' settings/ directory, so that
   doveconf knows the dovekie_* settings, their defaults, and refuses a key
   nobody declared. It holds no code of its own: the declaration is
   dovekie-settings.c's, linked into this module and into the mail plugin. */
#include "lib.h"
#include "settings-parser.h"

extern const struct setting_parser_info dovekie_setting_parser_info;

const char *dovekie_settings_version = DOVECOT_ABI_VERSION;
const struct setting_parser_info *dovekie_settings_set_infos[] = {
	&dovekie_setting_parser_info,
	NULL
};
