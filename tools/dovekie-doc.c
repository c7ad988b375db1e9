/* dovekie-doc: prints the settings that modules declare, so the man page and
 * the conf.d snippets are checked against (or made from) the one place each
 * setting is declared.
 *
 *   dovekie-doc --list MODULE.so...   one line per setting: name TAB type TAB default TAB range TAB help
 *   dovekie-doc --man MODULE.so...    roff for the SETTINGS section of dovekie(7)
 *   dovekie-doc --dovecot MODULE.so... C X-macros for Dovecot 2.4's settings
 *                                      declaration (hosts/dovecot/dovekie-settings.c)
 *
 * It only reads the modules' tables: no init runs.
 */
#include "dovekie-config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmodule.h>

#include "dovekie/loader.h"

static const gchar *const type_names[] = { "string", "number", "size", "boolean", "choice" };

static gchar *
range_text (const DovekieSettingDef *def)
{
  switch (def->type)
    {
    case DOVEKIE_SETTING_UINT:
    case DOVEKIE_SETTING_SIZE:
      return g_strdup_printf ("%" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT, def->min, def->max);
    case DOVEKIE_SETTING_BOOL:
      return g_strdup ("yes|no");
    case DOVEKIE_SETTING_ENUM:
      return g_strjoinv ("|", (gchar **) def->choices);
    case DOVEKIE_SETTING_STRING:
    default:
      return g_strdup_printf ("up to %" G_GUINT64_FORMAT " bytes", def->max > 0 ? def->max : 65536);
    }
}

/* roff needs its own escapes for backslash and a leading dot or quote. */
static gchar *
roff (const gchar *text)
{
  GString *out = g_string_new (NULL);
  for (const gchar *p = text; *p != '\0'; p++)
    {
      if (*p == '\\')
        g_string_append (out, "\\e");
      else if (*p == '-')
        g_string_append (out, "\\-");
      else
        g_string_append_c (out, *p);
    }
  if (out->str[0] == '.' || out->str[0] == '\'')
    g_string_prepend (out, "\\&");
  return g_string_free (out, FALSE);
}

typedef enum { PRINT_LIST, PRINT_MAN, PRINT_DOVECOT } PrintMode;

/* A C string literal's body: backslash and quote escaped. */
static gchar *
c_string (const gchar *text)
{
  GString *out = g_string_new (NULL);
  for (const gchar *p = text; *p != '\0'; p++)
    {
      if (*p == '\\' || *p == '"')
        g_string_append_c (out, '\\');
      g_string_append_c (out, *p);
    }
  return g_string_free (out, FALSE);
}

/* Dovecot 2.4 takes only settings that are declared, typed, with their
   defaults (doveconf -d shows them, and refuses a value of the wrong type
   before Dovecot starts): one line per setting, in the loader's and the
   modules' order,
     DOVEKIE_SETTING_STR(index, "key", "default")
     DOVEKIE_SETTING_UINT(index, "key", number)     (also for sizes: _SIZE)
     DOVEKIE_SETTING_BOOL(index, "key", TRUE|FALSE)
     DOVEKIE_SETTING_ENUM(index, "key", "default:other:...")  (Dovecot's form)
   Ranges and lengths stay the loader's to check, as on 2.3. */
static guint dovecot_index;

static gboolean
print_dovecot (const DovekieSettingDef *defs)
{
  for (guint i = 0; defs != NULL && defs[i].name != NULL; i++)
    {
      const DovekieSettingDef *def = &defs[i];
      const gchar *dflt = def->default_value != NULL ? def->default_value : "";
      g_autofree gchar *key = c_string (def->name);
      g_autoptr (GError) error = NULL;
      guint64 number = 0;

      if (def->type != DOVEKIE_SETTING_STRING && !dovekie_setting_validate (def, dflt, &number, &error))
        {
          fprintf (stderr, "%s: default: %s\n", def->name, error->message);
          return FALSE;
        }
      switch (def->type)
        {
        case DOVEKIE_SETTING_UINT:
        case DOVEKIE_SETTING_SIZE:
          printf ("\tDOVEKIE_SETTING_%s(%u, \"%s\", %" G_GUINT64_FORMAT "u) \\\n",
                  def->type == DOVEKIE_SETTING_UINT ? "UINT" : "SIZE", dovecot_index++, key, number);
          break;
        case DOVEKIE_SETTING_BOOL:
          printf ("\tDOVEKIE_SETTING_BOOL(%u, \"%s\", %s) \\\n", dovecot_index++, key,
                  number != 0 ? "TRUE" : "FALSE");
          break;
        case DOVEKIE_SETTING_ENUM:
          {
            /* The default first, then the other choices. */
            GString *choices = g_string_new (dflt);
            for (guint c = 0; def->choices[c] != NULL; c++)
              if (strcmp (def->choices[c], dflt) != 0)
                g_string_append_printf (choices, ":%s", def->choices[c]);
            g_autofree gchar *text = c_string (choices->str);
            g_string_free (choices, TRUE);
            printf ("\tDOVEKIE_SETTING_ENUM(%u, \"%s\", \"%s\") \\\n", dovecot_index++, key, text);
            break;
          }
        case DOVEKIE_SETTING_STRING:
        default:
          {
            g_autofree gchar *text = c_string (dflt);
            printf ("\tDOVEKIE_SETTING_STR(%u, \"%s\", \"%s\") \\\n", dovecot_index++, key, text);
            break;
          }
        }
    }
  return TRUE;
}

static void
print_defs (const gchar *title, const DovekieSettingDef *defs, PrintMode mode)
{
  gboolean man = mode == PRINT_MAN;

  if (mode == PRINT_DOVECOT)
    {
      if (!print_dovecot (defs))
        exit (1);
      return;
    }
  if (man && defs != NULL && defs[0].name != NULL)
    {
      g_autofree gchar *t = roff (title);
      printf (".SS %s\n", t);
    }
  for (guint i = 0; defs != NULL && defs[i].name != NULL; i++)
    {
      const DovekieSettingDef *def = &defs[i];
      g_autofree gchar *range = range_text (def);
      const gchar *dflt = def->default_value != NULL ? def->default_value : "";

      if (!man)
        {
          printf ("%s\t%s\t%s\t%s\t%s\n", def->name, type_names[def->type], dflt, range,
                  def->help != NULL ? def->help : "");
          continue;
        }
      g_autofree gchar *name = roff (def->name);
      g_autofree gchar *d = roff (*dflt != '\0' ? dflt : "(empty)");
      g_autofree gchar *r = roff (range);
      g_autofree gchar *h = roff (def->help != NULL ? def->help : "");
      printf (".TP\n.B %s\n%s.\nDefault: \\fB%s\\fR; %s: %s.\n", name, h, d, type_names[def->type], r);
    }
}

int
main (int argc, char **argv)
{
  PrintMode mode;

  if (argc >= 2 && strcmp (argv[1], "--list") == 0)
    mode = PRINT_LIST;
  else if (argc >= 2 && strcmp (argv[1], "--man") == 0)
    mode = PRINT_MAN;
  else if (argc >= 2 && strcmp (argv[1], "--dovecot") == 0)
    mode = PRINT_DOVECOT;
  else
    {
      fprintf (stderr, "usage: %s --list|--man|--dovecot MODULE.so...\n", argv[0]);
      return 2;
    }
  if (mode == PRINT_DOVECOT)
    printf ("/* Made by tools/dovekie-doc --dovecot from the settings tables. */\n"
            "#define DOVEKIE_SETTINGS \\\n");
  print_defs ("loader", dovekie_loader_settings, mode);
  for (int i = 2; i < argc; i++)
    {
      GModule *module = g_module_open (argv[i], G_MODULE_BIND_LOCAL | G_MODULE_BIND_LAZY);
      gpointer symbol = NULL;
      const DovekieModule *m;

      if (module == NULL)
        {
          fprintf (stderr, "%s: %s\n", argv[i], g_module_error ());
          return 1;
        }
      if (!g_module_symbol (module, DOVEKIE_MODULE_SYMBOL, &symbol) ||
          ((const DovekieModule *) symbol)->abi != DOVEKIE_MODULE_ABI)
        {
          fprintf (stderr, "%s: not a dovekie module of ABI %d\n", argv[i], DOVEKIE_MODULE_ABI);
          return 1;
        }
      m = symbol;
      {
        g_autofree gchar *title = g_strdup_printf ("%s module", m->name);
        print_defs (title, m->settings, mode);
      }
      /* Not closed: the strings printed above live in the module. */
    }
  if (mode == PRINT_DOVECOT)
    printf ("\t/* end */\n#define DOVEKIE_SETTING_COUNT %u\n", dovecot_index);
  return 0;
}
