/* Chapter 04 pitfall: the chapter's co.c, DELIBERATELY built without telling
 * Valgrind about its stacks. NVALGRIND makes every Valgrind client request in
 * <valgrind/valgrind.h> compile to nothing, VALGRIND_STACK_REGISTER included;
 * see pitfalls/valgrind_stacks.c. It also leaves the parameters of
 * stack_tools.h's functions unused, which is all right here. */
#define NVALGRIND 1
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "../co.c"
