/* dovekie-doc: prints the settings that modules declare, so the man page and
 * the conf.d snippets are checked against (or made from) the one place each
 * setting is declared.
 *
 *   dovekie-doc --list MODULE.so...   one line per setting: name TAB type TAB default TAB range TAB help
 *   dovekie-doc --man MODULE.so...    roff for the SETTINGS section of dovekie(7)
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

static void
print_defs (const gchar *title, const DovekieSettingDef *defs, gboolean man)
{
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
  gboolean man;

  if (argc < 2 || (strcmp (argv[1], "--list") != 0 && strcmp (argv[1], "--man") != 0))
    {
      fprintf (stderr, "usage: %s --list|--man MODULE.so...\n", argv[0]);
      return 2;
    }
  man = strcmp (argv[1], "--man") == 0;
  print_defs ("loader", dovekie_loader_settings, man);
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
        print_defs (title, m->settings, man);
      }
      /* Not closed: the strings printed above live in the module. */
    }
  return 0;
}
