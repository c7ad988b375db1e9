/* Unit tests for dovekie-log-quote.h, the Dovecot side's log quoting.
   Dovecot's own test framework, as the host side follows Dovecot. */
#include "lib.h"
#include "test-common.h"
#include "dovekie-log-quote.h"

/* Bug: mailbox names were logged bare, so a mailbox named
   "x result=clean" forged a field and a line feed forged a line. */
static void test_quote_table(void)
{
	static const struct {
		const char *in, *out;
	} tests[] = {
		{ NULL, "\"\"" },
		{ "", "\"\"" },
		{ "INBOX", "\"INBOX\"" },
		{ "x result=clean", "\"x result=clean\"" },
		{ "say \"hi\"", "\"say \\\"hi\\\"\"" },
		{ "back\\slash", "\"back\\\\slash\"" },
		{ "line\nforged=1", "\"line?forged=1\"" },
		{ "cr\rtab\t", "\"cr?tab?\"" },
		{ "esc\x1b[31m", "\"esc?[31m\"" },
		{ "del\x7f", "\"del?\"" },
		{ "c1\xc2\x85nel", "\"c1?nel\"" },
		{ "caf\xc3\xa9", "\"caf\xc3\xa9\"" },
	};
	unsigned int i;

	test_begin("dovekie_log_quote table");
	for (i = 0; i < N_ELEMENTS(tests); i++)
		test_assert_strcmp_idx(dovekie_log_quote(tests[i].in), tests[i].out, i);
	test_end();
}

/* Bug: a long header excerpt made an unbounded log line. */
static void test_quote_bound(void)
{
	string_t *in = t_str_new(256);
	const char *out;
	unsigned int i;
	size_t len;

	test_begin("dovekie_log_quote bound");
	for (i = 0; i < 200; i++)
		str_append(in, "\xc3\xa9");
	out = dovekie_log_quote(str_c(in));
	test_assert(strlen(out) <= DOVEKIE_LOG_QUOTE_MAX_BYTES + 2);
	test_assert(strncmp(out, "\"\xc3\xa9", 3) == 0);
	len = strlen(out);
	test_assert(len >= 6 && strcmp(out + len - 6, "\xc3\xa9...\"") == 0);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_quote_table,
		test_quote_bound,
		NULL
	};

	return test_run(tests);
}
