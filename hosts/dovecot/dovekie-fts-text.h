#ifndef DOVEKIE_FTS_TEXT_H
#define DOVEKIE_FTS_TEXT_H

#include "dovekie-bridge.h"

struct mail;
struct istream;

/* Where the text of one mail goes, and the first failure feeding it. */
struct dovekie_fts_text {
	struct dovekie_bridge_index *index;
	char error[DOVEKIE_BRIDGE_REASON_MAX];
	bool failed;
};

/* Feeds the mail read from input to text->index (between doc_begin and
   doc_end), as a sequential TEXT/BODY/header search compares against it:
   every header of every part (message parser with CLEAN_ONELINE, message
   decoder with the user's normalizer), the decoded bodies of text/ and
   message/ parts, and the normalized address lists of the top part.
   Returns 0, or -1 with error_r set (a read or index failure). */
int dovekie_fts_extract(struct dovekie_fts_text *text, struct mail *mail,
			struct istream *input, const char **error_r);

#endif
