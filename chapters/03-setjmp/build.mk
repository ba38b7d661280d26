# Chapter 03 needs GNU C: inline assembly to get onto a new stack, and
# _setjmp()/_longjmp(), which glibc declares only outside strict ISO C.
CHAPTER_STD := -std=gnu11
echo_server_SRCS := echo_server.c co.c
