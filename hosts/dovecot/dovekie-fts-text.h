#ifndef DOVEKIE_FTS_TEXT_H
#define DOVEKIE_FTS_TEXT_H

#include "dovekie-bridge.h"

struct mail;
struct istream;

/* Where the text of one mail goes, and the first failure feeding it
   (i_strdup: it outlives the data stack frames of the headers it failed
   in; dovekie_fts_extract frees it). */
struct dovekie_fts_text {
	struct dovekie_bridge_index *index;
	char *error;
	bool failed;
};

/* The keyed field (SUBJECT, FROM, TO, CC, BCC) of the header `name`,
   compared case-insensitively; FALSE for any other header. */
bool dovekie_fts_keyed_field(const char *name, enum dovekie_bridge_index_field *field_r);

/* Feeds the mail read from input to text->index (between doc_begin and
   doc_end), as a sequential TEXT/BODY/header search compares against it:
   every header of every part (message parser with CLEAN_ONELINE, message
   decoder with the user's normalizer), the decoded bodies of text/ and
   message/ parts, and the keyed headers of the top part as their search
   keys compare them.
   Returns 0, or -1 with error_r set (a read or index failure). */
int dovekie_fts_extract(struct dovekie_fts_text *text, struct mail *mail,
			struct istream *input, const char **error_r);

#endif
