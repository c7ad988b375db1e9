/* The quarantine notice. */
#include "dovekie-config.h"

#include <string.h>
#include <time.h>

#include "dovekie-av-notice.h"

/* English, as RFC 5322 dates are, whatever the locale. */
static const gchar *const weekday_names[] = {
  "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
};
static const gchar *const month_names[] = {
  "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

/* Whether the code point c would break a line or hide text: C0 controls
 * but TAB (legal inside a header value), DEL and the C1 controls (U+0085
 * is NEL). */
static gboolean
is_control (gunichar c)
{
  return (c < 0x20 && c != '\t') || (c >= 0x7f && c < 0xa0);
}

/* Appends value on one line, at most max bytes (0: no limit), as the
 * header comment says; sets *eight_bit_r when an 8-bit byte went out. */
static void
append_quoted (GString *out, const gchar *value, gsize max, gboolean *eight_bit_r)
{
  gboolean utf8 = g_utf8_validate (value, -1, NULL);
  gsize start = out->len;
  const gchar *p = value;

  while (*p != '\0')
    {
      const gchar *next;
      gunichar c;

      if (!utf8 || (guchar) *p < 0x80)
        {
          next = p + 1;
          c = (guchar) *p;
        }
      else
        {
          next = g_utf8_next_char (p);
          c = g_utf8_get_char (p);
        }
      if (max > 0 && out->len - start + (gsize) (next - p) > max)
        break;
      if (c >= 0x80 && !utf8)
        g_string_append_c (out, '?');
      else if (is_control (c))
        g_string_append_c (out, ' ');
      else
        {
          g_string_append_len (out, p, next - p);
          if (c >= 0x80)
            *eight_bit_r = TRUE;
        }
      p = next;
    }
}

static void
append_field (GString *out, const gchar *value, gboolean *eight_bit_r)
{
  if (value == NULL)
    g_string_append (out, "(none)");
  else
    append_quoted (out, value, DOVEKIE_AV_NOTICE_FIELD_MAX, eight_bit_r);
}

/* A host name or token inside an address or Message-ID. */
static void
append_atom (GString *out, const gchar *value)
{
  for (const gchar *p = value; *p != '\0'; p++)
    {
      guchar c = (guchar) *p;
      gboolean ok = c > 0x20 && c < 0x7f && strchr ("<>@()[]\\,;:\"", c) == NULL;

      g_string_append_c (out, ok ? (gchar) c : '_');
    }
}

/* The RFC 5322 date of t in the local time zone, "Mon, 07 Dec 2026
 * 16:01:44 +0100": the format Dovecot's own messages use. */
static gboolean
append_date (GString *out, gint64 t, GError **error)
{
  time_t tt = (time_t) t;
  struct tm tm;
  long offset;

  if ((gint64) tt != t || localtime_r (&tt, &tm) == NULL)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                   "notice: cannot tell time %" G_GINT64_FORMAT " as a local date", t);
      return FALSE;
    }
  offset = tm.tm_gmtoff / 60;
  g_string_append_printf (out, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
                          weekday_names[tm.tm_wday], tm.tm_mday, month_names[tm.tm_mon],
                          tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
                          offset < 0 ? '-' : '+', ABS (offset) / 60, ABS (offset) % 60);
  return TRUE;
}

static gboolean
present (const gchar *s)
{
  return s != NULL && s[0] != '\0';
}

gchar *
dovekie_av_notice_text (const DovekieAntivirusNotice *notice, GError **error)
{
  g_autoptr (GString) head = NULL;
  g_autoptr (GString) body = NULL;
  gboolean eight_bit = FALSE;

  if (!present (notice->mailbox) || !present (notice->reason) || !present (notice->host) ||
      !present (notice->unique))
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                           "notice: no mailbox, reason, host name or unique token");
      return NULL;
    }
  head = g_string_new ("From: Mail virus scanner <postmaster@");
  append_atom (head, notice->host);
  g_string_append (head, ">\r\nTo: ");
  append_field (head, notice->to, &eight_bit);
  g_string_append (head, "\r\nSubject: [virus removed] ");
  append_field (head, notice->subject, &eight_bit);
  g_string_append (head, "\r\nDate: ");
  if (!append_date (head, notice->time, error))
    return NULL;
  g_string_append_printf (head, "\r\nMessage-ID: <dovekie.%" G_GINT64_FORMAT ".", notice->time);
  append_atom (head, notice->unique);
  g_string_append_c (head, '@');
  append_atom (head, notice->host);
  g_string_append (head, ">\r\nMIME-Version: 1.0\r\n");

  body = g_string_new (NULL);
  append_quoted (body, notice->reason, 0, &eight_bit);
  g_string_append (body, ".\r\nThe message was moved to the mailbox \"");
  append_quoted (body, notice->mailbox, 0, &eight_bit);
  g_string_append (body, "\".\r\n\r\n  From:    ");
  append_field (body, notice->from, &eight_bit);
  g_string_append (body, "\r\n  Subject: ");
  append_field (body, notice->subject, &eight_bit);
  g_string_append (body, "\r\n  Date:    ");
  append_field (body, notice->date, &eight_bit);
  g_string_append (body, "\r\n\r\nAsk your mail administrator if you need it.\r\n");

  g_string_append_printf (head, "Content-Type: text/plain; charset=%s\r\n\r\n",
                          eight_bit ? "utf-8" : "us-ascii");
  g_string_append_len (head, body->str, body->len);
  return g_string_free (g_steal_pointer (&head), FALSE);
}
