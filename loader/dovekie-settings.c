/* Setting validation: every value an admin writes passes through here. */
#include "dovekie-config.h"

#include <errno.h>
#include <string.h>

#include "dovekie/loader.h"

#define DOVEKIE_STRING_DEFAULT_MAX (64 * 1024)

static gboolean
parse_uint (const DovekieSettingDef *def, const gchar *value, gboolean with_suffix,
            guint64 *number_r, GError **error)
{
  const gchar *p = value;
  guint64 number = 0;
  guint64 multiplier = 1;

  /* Whole-string decimal with overflow checks; g_ascii_strtoull would
   * accept leading spaces and signs, which an admin never means. */
  if (*p < '0' || *p > '9')
    goto invalid;
  for (; *p >= '0' && *p <= '9'; p++)
    {
      guint digit = (guint) (*p - '0');
      if (number > (G_MAXUINT64 - digit) / 10)
        goto invalid;
      number = number * 10 + digit;
    }
  if (with_suffix && *p != '\0' && p[1] == '\0')
    {
      switch (*p)
        {
        case 'k': case 'K': multiplier = G_GUINT64_CONSTANT (1) << 10; break;
        case 'm': case 'M': multiplier = G_GUINT64_CONSTANT (1) << 20; break;
        case 'g': case 'G': multiplier = G_GUINT64_CONSTANT (1) << 30; break;
        default: goto invalid;
        }
      p++;
      if (number > G_MAXUINT64 / multiplier)
        goto invalid;
      number *= multiplier;
    }
  if (*p != '\0')
    goto invalid;
  if (number < def->min || number > def->max)
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
                   "%s = %s: out of range (%" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ")",
                   def->name, value, def->min, def->max);
      return FALSE;
    }
  *number_r = number;
  return TRUE;

invalid:
  g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
               "%s = %s: not a whole number%s", def->name, value,
               with_suffix ? " (optionally with k, M or G)" : "");
  return FALSE;
}

static gboolean
parse_bool (const DovekieSettingDef *def, const gchar *value, guint64 *number_r, GError **error)
{
  static const gchar *const yes[] = { "yes", "true", "on", "1", NULL };
  static const gchar *const no[] = { "no", "false", "off", "0", NULL };

  if (g_strv_contains (yes, value))
    *number_r = 1;
  else if (g_strv_contains (no, value))
    *number_r = 0;
  else
    {
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
                   "%s = %s: expected yes or no", def->name, value);
      return FALSE;
    }
  return TRUE;
}

static gboolean
parse_enum (const DovekieSettingDef *def, const gchar *value, guint64 *number_r, GError **error)
{
  for (guint i = 0; def->choices != NULL && def->choices[i] != NULL; i++)
    {
      if (g_str_equal (def->choices[i], value))
        {
          *number_r = i;
          return TRUE;
        }
    }
  g_autofree gchar *choices = def->choices != NULL
    ? g_strjoinv (" | ", (gchar **) def->choices) : g_strdup ("");
  g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
               "%s = %s: expected one of %s", def->name, value, choices);
  return FALSE;
}

gboolean
dovekie_setting_validate (const DovekieSettingDef *def, const gchar *value,
                          guint64 *number_r, GError **error)
{
  guint64 ignored;

  g_return_val_if_fail (def != NULL, FALSE);
  if (number_r == NULL)
    number_r = &ignored;
  *number_r = 0;

  if (value == NULL)
    {
      if (def->type == DOVEKIE_SETTING_STRING)
        return TRUE;
      g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
                   "%s: no value and no default", def->name);
      return FALSE;
    }

  switch (def->type)
    {
    case DOVEKIE_SETTING_STRING:
      {
        gsize max = def->max > 0 ? (gsize) def->max : DOVEKIE_STRING_DEFAULT_MAX;
        if (strlen (value) < def->min)
          {
            g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
                         "%s = \"%s\": value shorter than %" G_GUINT64_FORMAT " byte%s",
                         def->name, value, def->min, def->min == 1 ? "" : "s");
            return FALSE;
          }
        if (strlen (value) > max)
          {
            g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
                         "%s: value longer than %" G_GSIZE_FORMAT " bytes", def->name, max);
            return FALSE;
          }
        if (!g_utf8_validate (value, -1, NULL))
          {
            g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
                         "%s: value is not valid UTF-8", def->name);
            return FALSE;
          }
        return TRUE;
      }
    case DOVEKIE_SETTING_UINT:
      return parse_uint (def, value, FALSE, number_r, error);
    case DOVEKIE_SETTING_SIZE:
      return parse_uint (def, value, TRUE, number_r, error);
    case DOVEKIE_SETTING_BOOL:
      return parse_bool (def, value, number_r, error);
    case DOVEKIE_SETTING_ENUM:
      return parse_enum (def, value, number_r, error);
    default:
      break;
    }
  g_set_error (error, DOVEKIE_LOADER_ERROR, DOVEKIE_LOADER_ERROR_SETTING,
               "%s: declared with an unknown type %d", def->name, (gint) def->type);
  return FALSE;
}
