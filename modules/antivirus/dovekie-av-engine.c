/* In-process libclamav engine, one per process. */
#include "dovekie-config.h"

#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>
#include <clamav.h>

#include "dovekie-av-engine.h"

static GMutex engine_lock;
static gboolean engine_initialized;
static struct cl_engine *engine;
static struct cl_stat engine_stat;
static gchar *engine_dir;
static DovekieAvLimits engine_limits;
static guint engine_signatures;
/* "+<hex>" naming the DB directory's unofficial signature files, or "". */
static gchar engine_local[20];
static gint64 engine_checked; /* monotonic µs of the last cl_statchkdir */
/* libclamav's last error line, instead of its default of writing to stderr
 * (which Dovecot would log as a bare error). Under engine_lock. */
static gchar last_message[256];

static void
engine_message (enum cl_msg severity, const char *fullmsg, const char *msg, void *context)
{
  (void) fullmsg;
  (void) context;
  if (severity == CL_MSG_ERROR && msg != NULL)
    {
      gsize len;
      g_strlcpy (last_message, msg, sizeof (last_message));
      len = strlen (last_message);
      while (len > 0 && g_ascii_isspace (last_message[len - 1]))
        last_message[--len] = '\0';
    }
}

/* " (libclamav: <last error>)" or "", for error texts. */
static const gchar *
engine_detail (void)
{
  static gchar detail[sizeof (last_message) + 16];
  if (last_message[0] == '\0')
    return "";
  g_snprintf (detail, sizeof (detail), " (%s)", last_message);
  last_message[0] = '\0';
  return detail;
}

static gboolean
set_num (struct cl_engine *e, enum cl_engine_field field, long long value, const gchar *what,
         GError **error)
{
  cl_error_t ret = cl_engine_set_num (e, field, value);
  if (ret != CL_SUCCESS)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "libclamav: setting %s: %s",
                   what, cl_strerror (ret));
      return FALSE;
    }
  return TRUE;
}

static struct cl_engine *
build (const gchar *db_dir, const DovekieAvLimits *limits, guint *signatures_r, GError **error)
{
  struct cl_engine *e;
  unsigned int sigs = 0;
  cl_error_t ret;

  e = cl_engine_new ();
  if (e == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE,
                           "libclamav: cannot create an engine");
      return NULL;
    }
  last_message[0] = '\0';
  ret = cl_load (db_dir, e, &sigs, CL_DB_STDOPT);
  if (ret != CL_SUCCESS)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE,
                   "libclamav: loading the signature DB from %s: %s%s", db_dir, cl_strerror (ret),
                   engine_detail ());
      cl_engine_free (e);
      return NULL;
    }
  if (!set_num (e, CL_ENGINE_MAX_SCANSIZE, (long long) limits->max_scansize, "max scan size", error) ||
      !set_num (e, CL_ENGINE_MAX_FILESIZE, (long long) limits->max_filesize, "max file size", error) ||
      !set_num (e, CL_ENGINE_MAX_RECURSION, limits->max_recursion, "max recursion", error) ||
      !set_num (e, CL_ENGINE_MAX_FILES, limits->max_files, "max files", error) ||
      !set_num (e, CL_ENGINE_MAX_SCANTIME, limits->max_scantime_ms, "max scan time", error))
    {
      cl_engine_free (e);
      return NULL;
    }
  ret = cl_engine_compile (e);
  if (ret != CL_SUCCESS)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE,
                   "libclamav: compiling the engine: %s", cl_strerror (ret));
      cl_engine_free (e);
      return NULL;
    }
  *signatures_r = sigs;
  return e;
}

/* The official DB version (cl_engine_get_num) only moves with the .cvd and
 * .cld files. Third-party signature files (.ndb, .hdb, .ldb, ... from
 * Sanesecurity and the like, or an admin's own) change without it, yet a
 * verdict made before they changed is stale. So the version the verdict
 * cache and the rescan go by also carries a fingerprint of every other
 * file of the directory: names, sizes and modification times. Left out:
 * dotfiles and *.dat (freshclam's own state, rewritten on every run). */
static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const gchar *const *) a, *(const gchar *const *) b);
}

static void
local_fingerprint (const gchar *db_dir, gchar *out, gsize out_len)
{
  g_autoptr (GDir) dir = g_dir_open (db_dir, 0, NULL);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  const gchar *name;

  out[0] = '\0';
  if (dir == NULL)
    return;
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      if (name[0] == '.' || g_str_has_suffix (name, ".cvd") || g_str_has_suffix (name, ".cld") ||
          g_str_has_suffix (name, ".dat"))
        continue;
      g_ptr_array_add (names, g_strdup (name));
    }
  if (names->len == 0)
    return;
  g_ptr_array_sort (names, compare_names);
  for (guint i = 0; i < names->len; i++)
    {
      g_autofree gchar *path = g_build_filename (db_dir, names->pdata[i], NULL);
      g_autofree gchar *line = NULL;
      GStatBuf st;

      if (g_stat (path, &st) != 0 || !S_ISREG (st.st_mode))
        continue;
      line = g_strdup_printf ("%s\t%" G_GUINT64_FORMAT "\t%" G_GINT64_FORMAT ".%09ld\n",
                              (const gchar *) names->pdata[i], (guint64) st.st_size,
                              (gint64) st.st_mtim.tv_sec, (long) st.st_mtim.tv_nsec);
      g_checksum_update (sum, (const guchar *) line, (gssize) strlen (line));
    }
  g_snprintf (out, out_len, "+%.8s", g_checksum_get_string (sum));
}

static void
drop_locked (void)
{
  if (engine != NULL)
    {
      cl_engine_free (engine);
      cl_statfree (&engine_stat);
      engine = NULL;
    }
  g_clear_pointer (&engine_dir, g_free);
}

static gboolean
rebuild_locked (const gchar *db_dir, const DovekieAvLimits *limits, GError **error)
{
  guint sigs = 0;
  struct cl_engine *e = build (db_dir, limits, &sigs, error);

  if (e == NULL)
    return FALSE;
  drop_locked ();
  engine = e;
  engine_dir = g_strdup (db_dir);
  local_fingerprint (db_dir, engine_local, sizeof (engine_local));
  engine_limits = *limits;
  engine_signatures = sigs;
  memset (&engine_stat, 0, sizeof (engine_stat));
  cl_statinidir (db_dir, &engine_stat);
  engine_checked = g_get_monotonic_time ();
  return TRUE;
}

static gchar *
version_locked (void)
{
  int err = 0;
  long long db = engine != NULL ? cl_engine_get_num (engine, CL_ENGINE_DB_VERSION, &err) : 0;
  return g_strdup_printf ("%s/%lld%s", cl_retver (), err == CL_SUCCESS ? db : 0,
                          engine != NULL ? engine_local : "");
}

gboolean
dovekie_av_engine_prepare (const gchar *db_dir, const DovekieAvLimits *limits, guint check_secs,
                           gchar **notice_r, GError **error)
{
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&engine_lock);
  g_autoptr (GError) local = NULL;

  *notice_r = NULL;
  if (!engine_initialized)
    {
      cl_error_t ret;
      cl_set_clcb_msg (engine_message);
      ret = cl_init (CL_INIT_DEFAULT);
      if (ret != CL_SUCCESS)
        {
          g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE, "libclamav: cl_init: %s",
                       cl_strerror (ret));
          return FALSE;
        }
      engine_initialized = TRUE;
    }
  if (engine == NULL || g_strcmp0 (engine_dir, db_dir) != 0 ||
      memcmp (&engine_limits, limits, sizeof (*limits)) != 0)
    {
      if (!rebuild_locked (db_dir, limits, error))
        return FALSE;
      g_autofree gchar *version = version_locked ();
      *notice_r = g_strdup_printf ("libclamav engine ready: version %s, %u signatures from %s",
                                   version, engine_signatures, db_dir);
      return TRUE;
    }
  if (g_get_monotonic_time () - engine_checked < (gint64) check_secs * G_USEC_PER_SEC)
    return TRUE;
  engine_checked = g_get_monotonic_time ();
  if (cl_statchkdir (&engine_stat) != 1)
    return TRUE;
  if (!rebuild_locked (db_dir, limits, &local))
    {
      /* Keep scanning with what we have; try again at the next check. */
      *notice_r = g_strdup_printf ("signature DB in %s changed but could not be reloaded "
                                   "(keeping the loaded one): %s", db_dir, local->message);
      return TRUE;
    }
  g_autofree gchar *version = version_locked ();
  *notice_r = g_strdup_printf ("libclamav engine reloaded: version %s, %u signatures from %s",
                               version, engine_signatures, db_dir);
  return TRUE;
}

gboolean
dovekie_av_engine_scan (const guint8 *data, gsize len, DovekieAvStatus *status_r,
                        gchar **signature_r, GError **error)
{
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&engine_lock);
  struct cl_scan_options options;
  const char *virname = NULL;
  unsigned long scanned = 0;
  cl_fmap_t *map;
  cl_error_t ret;

  *signature_r = NULL;
  if (engine == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE,
                           "libclamav: no engine prepared");
      return FALSE;
    }
  /* What clamd does by default: every parser (mail and archives
   * included) and heuristic alerts. */
  memset (&options, 0, sizeof (options));
  options.parse = ~0u;
  options.general = CL_SCAN_GENERAL_HEURISTICS;
  /* An empty message still needs a valid map. */
  map = cl_fmap_open_memory (len > 0 ? (const void *) data : (const void *) "", len);
  if (map == NULL)
    {
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED,
                           "libclamav: cannot map the message");
      return FALSE;
    }
  ret = cl_scanmap_callback (map, "message", &virname, &scanned, engine, &options, NULL);
  cl_fmap_close (map);
  switch (ret)
    {
    case CL_CLEAN:
      *status_r = DOVEKIE_AV_CLEAN;
      return TRUE;
    case CL_VIRUS:
      *status_r = DOVEKIE_AV_INFECTED;
      *signature_r = g_strndup (virname != NULL ? virname : "unknown", DOVEKIE_AV_SIGNATURE_MAX);
      return TRUE;
    case CL_ETIMEOUT:
      g_set_error_literal (error, DOVEKIE_ERROR, DOVEKIE_ERROR_TIMEOUT,
                           "libclamav: scan time limit reached");
      return FALSE;
    default:
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_FAILED, "libclamav: scan failed: %s",
                   cl_strerror (ret));
      return FALSE;
    }
}

gchar *
dovekie_av_engine_version (void)
{
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&engine_lock);
  return version_locked ();
}

gboolean
dovekie_av_engine_peek_version (const gchar *db_dir, gchar **version_r, GError **error)
{
  g_autoptr (GDir) dir = NULL;
  g_autoptr (GError) local = NULL;
  const gchar *name;
  gchar fingerprint[sizeof (engine_local)];
  guint official = 0;

  *version_r = NULL;
  dir = g_dir_open (db_dir, 0, &local);
  if (dir == NULL)
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE,
                   "libclamav: cannot read the signature DB directory: %s", local->message);
      return FALSE;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree gchar *path = NULL;
      struct cl_cvd *head;

      if (!g_str_has_suffix (name, ".cvd") && !g_str_has_suffix (name, ".cld"))
        continue;
      path = g_build_filename (db_dir, name, NULL);
      head = cl_cvdhead (path);
      if (head == NULL)
        continue;
      official = MAX (official, head->version);
      cl_cvdfree (head);
    }
  local_fingerprint (db_dir, fingerprint, sizeof (fingerprint));
  if (official == 0 && fingerprint[0] == '\0')
    {
      g_set_error (error, DOVEKIE_ERROR, DOVEKIE_ERROR_UNAVAILABLE,
                   "libclamav: no signature file in %s", db_dir);
      return FALSE;
    }
  *version_r = g_strdup_printf ("%s/%u%s", cl_retver (), official, fingerprint);
  return TRUE;
}

void
dovekie_av_engine_shutdown (void)
{
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&engine_lock);
  drop_locked ();
}
