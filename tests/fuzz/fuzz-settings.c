/* Fuzz target for setting values (loader/dovekie-settings.c): every value an
 * admin or a userdb writes is parsed there.
 *
 * Input: the first byte picks the setting type, the rest is the value.
 * Built with --enable-libfuzzer (clang) it is a libFuzzer target; otherwise
 * (make check) a built-in driver replays seeds and seeded random mutations,
 * so it also runs under ASan/UBSan and valgrind with the unit tests.
 */
#include "dovekie-config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dovekie/loader.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const gchar *const choices[] = { "off", "unscanned", "always", NULL };

static const DovekieSettingDef defs[] = {
  { "dovekie_fuzz_string", DOVEKIE_SETTING_STRING, NULL, 0, 64, NULL, "" },
  { "dovekie_fuzz_uint", DOVEKIE_SETTING_UINT, "1", 1, 1000000, NULL, "" },
  { "dovekie_fuzz_size", DOVEKIE_SETTING_SIZE, "1M", 0, G_MAXUINT64, NULL, "" },
  { "dovekie_fuzz_bool", DOVEKIE_SETTING_BOOL, "no", 0, 1, NULL, "" },
  { "dovekie_fuzz_enum", DOVEKIE_SETTING_ENUM, "off", 0, 0, choices, "" },
};

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const DovekieSettingDef *def;
  g_autofree gchar *value = NULL;
  g_autoptr (GError) error = NULL;
  guint64 number = 0;

  if (size == 0)
    return 0;
  def = &defs[data[0] % G_N_ELEMENTS (defs)];
  /* Settings arrive as C strings: cut at the first NUL. */
  value = g_strndup ((const gchar *) data + 1, size - 1);

  if (dovekie_setting_validate (def, value, &number, &error))
    {
      if (error != NULL)
        abort ();
      switch (def->type)
        {
        case DOVEKIE_SETTING_UINT:
        case DOVEKIE_SETTING_SIZE:
          if (number < def->min || number > def->max)
            abort ();
          break;
        case DOVEKIE_SETTING_BOOL:
          if (number > 1)
            abort ();
          break;
        case DOVEKIE_SETTING_ENUM:
          if (number >= g_strv_length ((gchar **) choices) || !g_str_equal (choices[number], value))
            abort ();
          break;
        case DOVEKIE_SETTING_STRING:
          if (strlen (value) > def->max || !g_utf8_validate (value, -1, NULL))
            abort ();
          break;
        default:
          abort ();
        }
    }
  else if (error == NULL || !g_str_has_prefix (error->message, def->name))
    abort (); /* every refusal names the setting */
  return 0;
}

#ifndef DOVEKIE_LIBFUZZER
static const char *const seeds[] = {
  "\x01" "42", "\x02" "10M", "\x02" "18446744073709551615", "\x02" "16383P",
  "\x03" "yes", "\x04" "unscanned", "\x00" "text", "\x01" "", "\x02" "1k",
};

int
main (void)
{
  GRand *rand = g_rand_new_with_seed (7);
  guint8 buf[128];
  guint runs = 0;

  for (guint i = 0; i < 50000; i++)
    {
      const char *seed = seeds[g_rand_int_range (rand, 0, G_N_ELEMENTS (seeds))];
      /* seeds[] entries may start with a NUL selector: length by hand. */
      gsize len = 1 + strlen (seed + 1);
      /* Mutations may grow the input: no byte of it may be uninitialised
       * (valgrind caught exactly that in the first version). */
      memset (buf, 0, sizeof buf);
      memcpy (buf, seed, len);
      for (guint e = (guint) g_rand_int_range (rand, 0, 4); e > 0; e--)
        {
          gsize at = (gsize) g_rand_int_range (rand, 0, (gint32) sizeof buf);
          buf[at] = (guint8) g_rand_int_range (rand, 0, 256);
          if (at >= len)
            len = at + 1;
        }
      LLVMFuzzerTestOneInput (buf, len);
      runs++;
    }
  g_rand_free (rand);
  printf ("fuzz-settings: %u inputs, no failure\n", runs);
  return EXIT_SUCCESS;
}
#endif
