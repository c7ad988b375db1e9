#ifndef DOVEKIE_LOG_QUOTE_HOST_H
#define DOVEKIE_LOG_QUOTE_HOST_H

/* The Dovecot side's twin of include/dovekie/log-quote.h, for strings a
   user, a client or a message controls (mailbox names, header excerpts)
   in log lines, as the mail-log plugin does with str_sanitize(). Needs
   "lib.h" first. */

#include "str.h"
#include "str-sanitize.h"

/* Bytes of the input shown at most (str_sanitize() cuts at a UTF-8
   character and ends the cut text with "..."). */
#define DOVEKIE_LOG_QUOTE_MAX_BYTES 80

/* Returns s as one quoted log field on the data stack: control characters
   (C0, DEL and C1) become '?', at most DOVEKIE_LOG_QUOTE_MAX_BYTES bytes
   are kept, backslash and double quote get a backslash, and the whole is
   put in double quotes. NULL is "". A mailbox named `x result=clean`
   logs as "x result=clean", never as a forged field. */
static inline const char *dovekie_log_quote(const char *s)
{
	const unsigned char *p;
	string_t *str;

	if (s == NULL)
		s = "";
	p = (const unsigned char *)str_sanitize(s, DOVEKIE_LOG_QUOTE_MAX_BYTES);
	str = t_str_new(strlen((const char *)p) + 8);
	str_append_c(str, '"');
	for (; *p != '\0'; p++) {
		if (*p == 0x7f || *p < 0x20)
			str_append_c(str, '?');
		else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			/* C1 control: one character, one '?' */
			str_append_c(str, '?');
			p++;
		} else {
			if (*p == '"' || *p == '\\')
				str_append_c(str, '\\');
			str_append_c(str, *p);
		}
	}
	str_append_c(str, '"');
	return str_c(str);
}

#endif
