/* dovekie log quoting: renders a string that a user, a client or a message
 * controls (a mailbox name, a POP3 client name, a header excerpt) as one
 * quoted log field, so it can neither forge `key=value` fields nor break
 * the line.
 *
 * Header-only and GLib-only, so every module can use it without a symbol
 * of the loader. The Dovecot host has its own (str_sanitize() based) twin
 * with the same output for printable text.
 */
#ifndef DOVEKIE_LOG_QUOTE_H
#define DOVEKIE_LOG_QUOTE_H

#include <glib.h>

G_BEGIN_DECLS

/* Characters of the input shown at most; a longer input is cut there (never
 * inside a UTF-8 character) and "..." is added inside the quotes. */
#define DOVEKIE_LOG_QUOTE_MAX 80

/* Returns `text` as "..." (g_free it): backslash and double quote are
 * escaped with a backslash, \n \r \t as such, every other control
 * character (C0, DEL, C1) and every byte that is not part of valid UTF-8
 * as \xHH, per byte. Valid UTF-8 otherwise stays as it is. NULL renders
 * as "" like the empty string. Never returns NULL.
 *
 *   dovekie_log (ctx, DOVEKIE_LOG_INFO, "mailbox=%s", q = dovekie_log_quote (name));
 *   x result=clean  ->  "x result=clean" */
static inline gchar *
dovekie_log_quote (const gchar *text)
{
  GString *out = g_string_sized_new (16);
  const gchar *p = text != NULL ? text : "";
  guint shown = 0;

  g_string_append_c (out, '"');
  while (*p != '\0')
    {
      gunichar c = g_utf8_get_char_validated (p, -1);
      const gchar *next;

      if (shown == DOVEKIE_LOG_QUOTE_MAX)
        {
          g_string_append (out, "...");
          break;
        }
      shown++;
      if (c == (gunichar) -1 || c == (gunichar) -2)
        {
          /* Not UTF-8: this byte alone, escaped. */
          g_string_append_printf (out, "\\x%02x", (guint) (guchar) *p);
          p++;
          continue;
        }
      next = g_utf8_next_char (p);
      if (c == '\\' || c == '"')
        {
          g_string_append_c (out, '\\');
          g_string_append_c (out, (gchar) c);
        }
      else if (c == '\n')
        g_string_append (out, "\\n");
      else if (c == '\r')
        g_string_append (out, "\\r");
      else if (c == '\t')
        g_string_append (out, "\\t");
      else if (c < 0x20 || (c >= 0x7f && c <= 0x9f))
        {
          for (const gchar *b = p; b < next; b++)
            g_string_append_printf (out, "\\x%02x", (guint) (guchar) *b);
        }
      else
        g_string_append_len (out, p, next - p);
      p = next;
    }
  g_string_append_c (out, '"');
  return g_string_free (out, FALSE);
}

G_END_DECLS

#endif
