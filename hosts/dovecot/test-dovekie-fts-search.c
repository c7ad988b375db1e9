/* Unit tests for dovekie-fts-search.c: the result a search's keys already
   give. Dovecot's own test framework, as the host side follows Dovecot. */
#include "lib.h"
#include "mail-search.h"
#include "test-common.h"
#include "dovekie-fts.h"

/* A key Dovecot evaluates itself (its result as the fts plugin or the
   index checks left it: 1, 0 or -1). */
static struct mail_search_arg *leaf(int result)
{
	struct mail_search_arg *arg = t_new(struct mail_search_arg, 1);

	arg->type = SEARCH_BODY;
	arg->result = result;
	return arg;
}

/* A SUB or OR node over the NULL-terminated keys, not yet evaluated. */
static struct mail_search_arg *
node(enum mail_search_arg_type type, bool match_not, ...)
{
	struct mail_search_arg *arg = t_new(struct mail_search_arg, 1);
	struct mail_search_arg **tail = &arg->value.subargs, *sub;
	va_list va;

	arg->type = type;
	arg->match_not = match_not;
	arg->result = -1;
	va_start(va, match_not);
	while ((sub = va_arg(va, struct mail_search_arg *)) != NULL) {
		*tail = sub;
		tail = &sub->next;
	}
	va_end(va);
	return arg;
}

#define AND(...) node(SEARCH_SUB, FALSE, __VA_ARGS__, NULL)
#define NOT_AND(...) node(SEARCH_SUB, TRUE, __VA_ARGS__, NULL)
#define OR(...) node(SEARCH_OR, FALSE, __VA_ARGS__, NULL)
#define NOT_OR(...) node(SEARCH_OR, TRUE, __VA_ARGS__, NULL)

/* The top-level list of a search is an AND of its keys. */
static int result_of(struct mail_search_arg *top)
{
	struct mail_search_args args;

	i_zero(&args);
	args.args = top->value.subargs;
	return dovekie_fts_search_result(&args);
}

static void test_keys_combine(void)
{
	static const struct {
		const char *what;
		int want;
	} names[] = {
		{ "AND of true keys", 1 },
		{ "AND with an open key", -1 },
		{ "AND with a false key beside an open one", 0 },
		{ "OR of false keys", 0 },
		{ "OR with an open key", -1 },
		{ "OR with a true key beside an open one", 1 },
		{ "NOT OR of false keys", 1 },
		{ "NOT OR with a true key", 0 },
		{ "NOT OR with an open key", -1 },
		{ "NOT SUB of true keys", 0 },
		{ "NOT SUB with a false key", 1 },
		{ "nested: a false OR inside the AND", 0 },
		{ "nested: an open OR inside a true AND", -1 },
	};
	struct mail_search_arg *cases[N_ELEMENTS(names)];
	unsigned int i = 0;

	test_begin("dovekie_fts_search_result combines keys");
	cases[i++] = AND(leaf(1), leaf(1));
	cases[i++] = AND(leaf(1), leaf(-1));
	cases[i++] = AND(leaf(-1), leaf(0));
	cases[i++] = AND(OR(leaf(0), leaf(0)));
	cases[i++] = AND(OR(leaf(0), leaf(-1)));
	cases[i++] = AND(OR(leaf(-1), leaf(1)));
	cases[i++] = AND(NOT_OR(leaf(0), leaf(0)));
	cases[i++] = AND(NOT_OR(leaf(0), leaf(1)));
	cases[i++] = AND(NOT_OR(leaf(0), leaf(-1)));
	cases[i++] = AND(NOT_AND(leaf(1), leaf(1)));
	cases[i++] = AND(NOT_AND(leaf(-1), leaf(0)));
	cases[i++] = AND(leaf(1), OR(AND(leaf(1), leaf(0)), leaf(0)));
	cases[i++] = AND(leaf(1), OR(AND(leaf(1), leaf(-1)), leaf(0)));
	i_assert(i == N_ELEMENTS(names));
	for (i = 0; i < N_ELEMENTS(names); i++) {
		int got = result_of(cases[i]);

		test_assert_idx(got == names[i].want, i);
		if (got != names[i].want)
			i_error("%s: got %d, want %d", names[i].what, got, names[i].want);
	}
	test_end();
}

static void test_stored_result_wins(void)
{
	struct mail_search_arg *top, *or_node;

	test_begin("dovekie_fts_search_result takes a node's stored result");
	/* Dovecot's evaluation stores a node's result, NOT included; it is
	   not recomputed from the keys below it. */
	or_node = OR(leaf(0), leaf(0));
	or_node->result = 1;
	top = AND(or_node, leaf(1));
	test_assert(result_of(top) == 1);
	or_node->match_not = TRUE;
	test_assert(result_of(top) == 1);
	or_node->result = 0;
	test_assert(result_of(top) == 0);
	test_end();
}

static void test_reads_only(void)
{
	struct mail_search_arg *top, *or_node;

	test_begin("dovekie_fts_search_result leaves the results as they are");
	or_node = OR(leaf(0), leaf(-1));
	top = AND(leaf(1), or_node, NOT_AND(leaf(1)));
	test_assert(result_of(top) == 0);
	test_assert(or_node->result == -1);
	test_assert(top->value.subargs->next->next->result == -1);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_keys_combine,
		test_stored_result_wins,
		test_reads_only,
		NULL
	};

	return test_run(tests);
}
