/* The text of one mail for the dovekie index, exactly as Dovecot's own
 * sequential search sees it (see dovekie-fts-text.h). */
#include "lib.h"
#include "str.h"
#include "istream.h"
#include "rfc822-parser.h"
#include "message-address.h"
#include "message-parser.h"
#include "message-decoder.h"
#include "mail-storage-private.h"
#include "dovekie-fts-text.h"

static void
text_add(struct dovekie_fts_text *text, enum dovekie_bridge_index_field field,
	 const void *data, size_t size)
{
	const char *error;

	if (text->failed || size == 0)
		return;
	if (dovekie_bridge_index_doc_append(text->index, field, data, size, &error) < 0) {
		text->error = i_strdup(error);
		text->failed = TRUE;
	}
}

static bool content_type_is_text(const struct message_header_line *hdr)
{
	struct rfc822_parser_context parser;
	string_t *content_type = t_str_new(64);
	bool ret;

	rfc822_parser_init(&parser, hdr->full_value, hdr->full_value_len, NULL);
	rfc822_skip_lwsp(&parser);
	(void)rfc822_parse_content_type(&parser, content_type);
	ret = strncasecmp(str_c(content_type), "text/", 5) == 0 ||
		strncasecmp(str_c(content_type), "message/", 8) == 0;
	rfc822_parser_deinit(&parser);
	return ret;
}

bool dovekie_fts_keyed_field(const char *name, enum dovekie_bridge_index_field *field_r)
{
	static const struct {
		const char *name;
		enum dovekie_bridge_index_field field;
	} keyed[] = {
		{ "Subject", DOVEKIE_BRIDGE_INDEX_SUBJECT },
		{ "From", DOVEKIE_BRIDGE_INDEX_FROM },
		{ "To", DOVEKIE_BRIDGE_INDEX_TO },
		{ "Cc", DOVEKIE_BRIDGE_INDEX_CC },
		{ "Bcc", DOVEKIE_BRIDGE_INDEX_BCC },
	};

	for (unsigned int i = 0; i < N_ELEMENTS(keyed); i++) {
		if (strcasecmp(name, keyed[i].name) == 0) {
			*field_r = keyed[i].field;
			return TRUE;
		}
	}
	return FALSE;
}

/* Runs of spaces and tabs as one space, as index-search.c's
   compress_lwsp() gives a SUBJECT search. */
static void compress_lwsp(string_t *dest, const unsigned char *src, size_t size)
{
	bool prev_lwsp = TRUE;

	for (size_t i = 0; i < size; i++) {
		if (src[i] == ' ' || src[i] == '\t') {
			if (!prev_lwsp)
				str_append_c(dest, ' ');
			prev_lwsp = TRUE;
		} else {
			str_append_c(dest, src[i]);
			prev_lwsp = FALSE;
		}
	}
}

/* A keyed header's value as its search key compares it (index-search.c,
   search_header_arg): SUBJECT with white space compressed, FROM/TO/CC/BCC
   as the normalized address list; then MIME-decoded and normalized. */
static void
text_add_keyed(struct dovekie_fts_text *text, struct message_decoder_context *decoder,
	       struct message_block *raw_block, enum dovekie_bridge_index_field field)
{
	struct message_header_line hdr = *raw_block->hdr;
	struct message_block block, decoded;
	string_t *str = t_str_new(hdr.full_value_len + 16);

	if (field == DOVEKIE_BRIDGE_INDEX_SUBJECT) {
		compress_lwsp(str, hdr.full_value, hdr.full_value_len);
	} else {
		struct message_address *addr =
			message_address_parse(pool_datastack_create(), hdr.full_value,
					      hdr.full_value_len, UINT_MAX,
					      MESSAGE_ADDRESS_PARSE_FLAG_FILL_MISSING);
		message_address_write(str, addr);
	}
	hdr.name = ""; hdr.name_len = 0;
	hdr.middle_len = 0;
	hdr.value = hdr.full_value = str_data(str);
	hdr.value_len = hdr.full_value_len = str_len(str);
	i_zero(&block);
	block.part = raw_block->part;
	block.hdr = &hdr;
	if (message_decoder_decode_next_block(decoder, &block, &decoded) &&
	    decoded.hdr != NULL) {
		text_add(text, field, decoded.hdr->full_value, decoded.hdr->full_value_len);
		text_add(text, field, "\n", 1);
	}
}

/* Mirrors message_search_more_get_decoded() of a TEXT search: every
   header of every part, and the bodies of text/ and message/ parts. */
int dovekie_fts_extract(struct dovekie_fts_text *text, struct mail *mail,
			       struct istream *input, const char **error_r)
{
	const struct message_parser_settings parser_set = {
		.hdr_flags = MESSAGE_HEADER_PARSER_FLAG_CLEAN_ONELINE,
	};
	normalizer_func_t *normalizer = mail->box->storage->user->default_normalizer;
	struct message_parser_ctx *parser;
	struct message_decoder_context *decoder, *key_decoder;
	struct message_block raw_block, block;
	struct message_part *prev_part = NULL, *parts;
	enum dovekie_bridge_index_field field;
	bool text_part = TRUE;
	const char *error;
	int ret;

	parser = message_parser_init(pool_datastack_create(), input, &parser_set);
	decoder = message_decoder_init(normalizer, 0);
	key_decoder = message_decoder_init(normalizer, 0);
	while ((ret = message_parser_parse_next_block(parser, &raw_block)) > 0) {
		struct message_header_line *hdr = raw_block.hdr;

		if (raw_block.part != prev_part) {
			/* Part boundaries never match in Dovecot's search:
			   a control character keeps the index from
			   claiming otherwise. */
			if (prev_part != NULL) {
				text_add(text, DOVEKIE_BRIDGE_INDEX_BODY, "\n", 1);
				text_add(text, DOVEKIE_BRIDGE_INDEX_HEADER, "\n", 1);
			}
			message_decoder_decode_reset(decoder);
			prev_part = raw_block.part;
			text_part = hdr != NULL;
		}
		if (hdr != NULL) {
			if (hdr->continues) {
				hdr->use_full_value = TRUE;
				continue;
			}
			if (hdr->eoh) {
				/* the decoder still needs the end of headers */
			} else if (strcasecmp(hdr->name, "Content-Type") == 0) T_BEGIN {
				text_part = content_type_is_text(hdr);
			} T_END;
			if (!hdr->eoh && raw_block.part->parent == NULL &&
			    dovekie_fts_keyed_field(hdr->name, &field)) T_BEGIN {
				text_add_keyed(text, key_decoder, &raw_block, field);
			} T_END;
		} else if (!text_part) {
			continue;
		}
		if (!message_decoder_decode_next_block(decoder, &raw_block, &block))
			continue;
		if (block.hdr != NULL) {
			if (block.hdr->eoh)
				continue;
			text_add(text, DOVEKIE_BRIDGE_INDEX_HEADER,
				 block.hdr->name, block.hdr->name_len);
			text_add(text, DOVEKIE_BRIDGE_INDEX_HEADER,
				 block.hdr->middle, block.hdr->middle_len);
			text_add(text, DOVEKIE_BRIDGE_INDEX_HEADER,
				 block.hdr->full_value, block.hdr->full_value_len);
			text_add(text, DOVEKIE_BRIDGE_INDEX_HEADER, "\r\n", 2);
		} else {
			text_add(text, DOVEKIE_BRIDGE_INDEX_BODY, block.data, block.size);
		}
		if (text->failed)
			break;
	}
	if (ret < 0 && input->stream_errno != 0) {
		*error_r = t_strdup_printf("read(%s) failed: %s", i_stream_get_name(input),
					   i_stream_get_error(input));
		ret = -2;
	}
	(void)message_parser_deinit_from_parts(&parser, &parts, &error);
	message_decoder_deinit(&key_decoder);
	message_decoder_deinit(&decoder);
	if (text->failed) {
		*error_r = t_strdup(text->error);
		i_free(text->error);
		return -1;
	}
	return ret == -2 ? -1 : 0;
}