/* Dispatch of host events to the loaded modules, in load order. */
#include "dovekie-config.h"

#include <string.h>

#include "dovekie-loader-private.h"

typedef gboolean (*VerdictHook) (const DovekieModule *module, LoadedModule *lm, gint origin,
                                 const DovekieMessageInfo *info, DovekieMessage *msg,
                                 DovekieVerdict *verdict, GError **error);

static gboolean
call_save (const DovekieModule *module, LoadedModule *lm, gint origin,
           const DovekieMessageInfo *info, DovekieMessage *msg,
           DovekieVerdict *verdict, GError **error)
{
  if (module->save == NULL)
    return TRUE;
  return module->save (&lm->pub, (DovekieSaveOrigin) origin, info, msg, verdict, error);
}

static gboolean
call_read (const DovekieModule *module, LoadedModule *lm, gint origin,
           const DovekieMessageInfo *info, DovekieMessage *msg,
           DovekieVerdict *verdict, GError **error)
{
  if (module->read == NULL)
    return TRUE;
  return module->read (&lm->pub, (DovekieReadOrigin) origin, info, msg, verdict, error);
}

/* An IMAP keyword is an atom: printable ASCII without atom-specials. */
static gboolean
keyword_is_valid (const gchar *keyword)
{
  if (keyword[0] == '\0' || strlen (keyword) > 200)
    return FALSE;
  for (const gchar *p = keyword; *p != '\0'; p++)
    {
      if (*p <= 0x20 || *p >= 0x7f || strchr ("(){]%*\"\\", *p) != NULL)
        return FALSE;
    }
  return TRUE;
}

/* Checks the parts of a verdict the host acts on; a module that broke the
 * contract gets a TEMPFAIL (nothing is lost) and a logged error. */
static gboolean
verdict_is_valid (DovekieLoader *loader, const LoadedModule *lm, DovekieVerdict *verdict)
{
  const gchar *problem = NULL;

  if ((gint) verdict->kind < (gint) DOVEKIE_VERDICT_ACCEPT ||
      (gint) verdict->kind > (gint) DOVEKIE_VERDICT_DISCARD)
    problem = "unknown verdict kind";
  else if (verdict->kind == DOVEKIE_VERDICT_DIVERT &&
           (verdict->mailbox == NULL || verdict->mailbox[0] == '\0'))
    problem = "DIVERT without a mailbox";
  else if (verdict->keyword != NULL && !keyword_is_valid (verdict->keyword))
    problem = "invalid keyword";
  if (problem == NULL)
    return TRUE;
  dovekie_loader_log (loader, DOVEKIE_LOG_ERROR, lm->module->name, problem);
  dovekie_verdict_clear (verdict);
  dovekie_verdict_set (verdict, DOVEKIE_VERDICT_TEMPFAIL,
                       "Temporary failure checking the message, try again later");
  return FALSE;
}

DovekieMessage *
dovekie_message_new (const DovekieMessageSource *source, gpointer data)
{
  DovekieMessage *msg = g_new (DovekieMessage, 1);

  msg->source = source;
  msg->data = data;
  return msg;
}

void
dovekie_message_free (DovekieMessage *msg)
{
  g_free (msg);
}

/* A failed module that guards `guard` refuses: one error line naming the
 * module and why it is not running, and a TEMPFAIL that says the server is
 * misconfigured. TRUE if refused. (The Dovecot host asks
 * dovekie_loader_guarded itself where its reply differs: LMTP's 4.3.0, the
 * POP3 login, one line per FETCH.) */
static gboolean
refuse_if_guarded (DovekieLoader *loader, DovekieGuard guard, const gchar *what,
                   const DovekieMessageInfo *info, DovekieVerdict *verdict)
{
  const gchar *name, *reason;

  if (!dovekie_loader_guarded (loader, guard, &name, &reason))
    return FALSE;
  g_autofree gchar *line = g_strdup_printf (
    "refusing %s (uid %u): module %s is configured but not running: %s",
    what, info != NULL ? info->uid : 0, name, reason);
  dovekie_loader_log (loader, DOVEKIE_LOG_ERROR, NULL, line);
  dovekie_verdict_clear (verdict);
  dovekie_verdict_set (verdict, DOVEKIE_VERDICT_TEMPFAIL, DOVEKIE_GUARD_REASON);
  return TRUE;
}

static void
dispatch_verdict (DovekieLoader *loader, VerdictHook hook, gint origin,
                  const DovekieMessageInfo *info, const DovekieMessageSource *source,
                  gpointer source_data, DovekieVerdict *verdict)
{
  DovekieMessage msg = { source, source_data };

  verdict->kind = DOVEKIE_VERDICT_ACCEPT;
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      g_autoptr (GError) error = NULL;

      /* Each module reads from the start, whatever the previous one did. */
      if (i > 0 && !source->rewind (source_data, &error))
        {
          dovekie_loader_log (loader, DOVEKIE_LOG_ERROR, NULL, error->message);
          dovekie_verdict_clear (verdict);
          dovekie_verdict_set (verdict, DOVEKIE_VERDICT_TEMPFAIL,
                               "Temporary failure reading the message, try again later");
          return;
        }
      if (!hook (lm->module, lm, origin, info, &msg, verdict, &error))
        {
          dovekie_loader_log (loader, DOVEKIE_LOG_ERROR, lm->module->name,
                      error != NULL ? error->message : "hook failed without a reason");
          dovekie_verdict_clear (verdict);
          dovekie_verdict_set (verdict, DOVEKIE_VERDICT_TEMPFAIL,
                               "Temporary failure checking the message, try again later");
          return;
        }
      if (!verdict_is_valid (loader, lm, verdict))
        return;
      if (verdict->kind != DOVEKIE_VERDICT_ACCEPT)
        {
          if (verdict->reason == NULL)
            verdict->reason = g_strdup ("Message refused");
          return;
        }
    }
}

void
dovekie_loader_dispatch_save (DovekieLoader *loader, DovekieSaveOrigin origin,
                              const DovekieMessageInfo *info,
                              const DovekieMessageSource *source, gpointer source_data,
                              DovekieVerdict *verdict)
{
  if (!refuse_if_guarded (loader, DOVEKIE_GUARD_SAVE, "to store a message", info, verdict))
    dispatch_verdict (loader, call_save, (gint) origin, info, source, source_data, verdict);
}

void
dovekie_loader_dispatch_read (DovekieLoader *loader, DovekieReadOrigin origin,
                              const DovekieMessageInfo *info,
                              const DovekieMessageSource *source, gpointer source_data,
                              DovekieVerdict *verdict)
{
  if (!refuse_if_guarded (loader, DOVEKIE_GUARD_READ, "to read a message", info, verdict))
    dispatch_verdict (loader, call_read, (gint) origin, info, source, source_data, verdict);
}

DovekieExpungeAction
dovekie_loader_dispatch_expunge (DovekieLoader *loader, const DovekieMessageInfo *info,
                                 gboolean pop3)
{
  DovekieExpungeAction action = DOVEKIE_EXPUNGE_ALLOW;
  const gchar *name, *reason;

  /* No POP3 deletion while a module that decides about them is down. */
  if (pop3 && dovekie_loader_guarded (loader, DOVEKIE_GUARD_POP3, &name, &reason))
    {
      g_autofree gchar *line = g_strdup_printf (
        "keeping uid %u against a POP3 deletion: module %s is configured but not running: %s",
        info->uid, name, reason);
      dovekie_loader_log (loader, DOVEKIE_LOG_ERROR, NULL, line);
      action = DOVEKIE_EXPUNGE_KEEP;
    }

  /* Every module hears about the expunge, even after one kept it, so that
   * each can keep its own state consistent. */
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      if (lm->module->expunge != NULL &&
          lm->module->expunge (&lm->pub, info, pop3) == DOVEKIE_EXPUNGE_KEEP)
        action = DOVEKIE_EXPUNGE_KEEP;
    }
  return action;
}

void
dovekie_loader_dispatch_pop3_start (DovekieLoader *loader, const DovekiePop3Info *info)
{
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      if (lm->module->pop3_start != NULL)
        lm->module->pop3_start (&lm->pub, info);
    }
}

void
dovekie_loader_dispatch_pop3_end (DovekieLoader *loader, const DovekiePop3Info *info)
{
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      if (lm->module->pop3_end != NULL)
        lm->module->pop3_end (&lm->pub, info);
    }
}

static gboolean
any_module_has (DovekieLoader *loader, gsize offset)
{
  for (guint i = 0; i < loader->modules->len; i++)
    {
      LoadedModule *lm = g_ptr_array_index (loader->modules, i);
      if (G_STRUCT_MEMBER (gpointer, lm->module, offset) != NULL)
        return TRUE;
    }
  return FALSE;
}

gboolean
dovekie_loader_wants_save (DovekieLoader *loader)
{
  return any_module_has (loader, G_STRUCT_OFFSET (DovekieModule, save)) ||
         dovekie_loader_guarded (loader, DOVEKIE_GUARD_SAVE, NULL, NULL);
}

gboolean
dovekie_loader_wants_read (DovekieLoader *loader)
{
  return any_module_has (loader, G_STRUCT_OFFSET (DovekieModule, read)) ||
         dovekie_loader_guarded (loader, DOVEKIE_GUARD_READ, NULL, NULL);
}

gboolean
dovekie_loader_wants_expunge (DovekieLoader *loader)
{
  return any_module_has (loader, G_STRUCT_OFFSET (DovekieModule, expunge)) ||
         dovekie_loader_guarded (loader, DOVEKIE_GUARD_POP3, NULL, NULL);
}
