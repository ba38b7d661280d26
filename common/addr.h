/* Socket addresses as text, "127.0.0.1:8000" or "[::1]:8000", for logs and
 * for the "listening on HOST:PORT" line every server prints first. */
#ifndef ADDR_H
#define ADDR_H

#include <sys/socket.h>

/* Room for "[" IPv6 "]:" port and the terminating NUL. */
enum { ADDR_TEXT_MAX = 64 };

/* Format addr into text (ADDR_TEXT_MAX bytes) and return text. */
const char *addr_format(const struct sockaddr *addr, socklen_t len, char text[ADDR_TEXT_MAX]);

/* Print "listening on HOST:PORT" for a listening socket and flush stdout, so
 * that a test or the load generator reading our output learns the port. */
void addr_announce(int listen_fd);

#endif
