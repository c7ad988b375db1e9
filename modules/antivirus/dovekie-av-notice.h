/* The quarantine notice: the short message stored in place of a
 * quarantined one (foreign header values in, one well-formed message out).
 */
#ifndef DOVEKIE_AV_NOTICE_H
#define DOVEKIE_AV_NOTICE_H

#include "dovekie-av.h"
#include "dovekie/antivirus.h"

G_BEGIN_DECLS

/* Longest quote of one of the original's header values, in bytes. */
#define DOVEKIE_AV_NOTICE_FIELD_MAX 200

/* Makes the notice for `notice` (see DovekieAntivirusNotice): a text/plain
 * message, CRLF, that names the reason and the quarantine mailbox and
 * quotes the original's From, To, Subject and Date. Every quoted value is
 * one line: CR, LF and the other control characters (C0 but TAB, DEL, C1)
 * become spaces. Header values are cut at DOVEKIE_AV_NOTICE_FIELD_MAX
 * bytes, on a character boundary; NULL ones read "(none)". A value that
 * is valid UTF-8 keeps its 8-bit characters, and the notice then says
 * charset=utf-8 (else us-ascii); in one that is not, each 8-bit byte
 * becomes '?', as its charset is unknown. The host name and the token
 * (in From and Message-ID) keep only printable ASCII that an address
 * allows; anything else becomes '_'. NULL with DOVEKIE_ERROR_FAILED when mailbox, reason, host or unique is NULL or
 * "", or the time cannot be told as a local date. g_free the result. */
gchar *dovekie_av_notice_text (const DovekieAntivirusNotice *notice, GError **error);

G_END_DECLS

#endif
