/* Socket addresses as text; see addr.h. */
#define _POSIX_C_SOURCE 200809L

#include "addr.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

const char *addr_format(const struct sockaddr *addr, socklen_t len, char text[ADDR_TEXT_MAX])
{
	char host[48], port[8];
	int err = getnameinfo(addr, len, host, sizeof host, port, sizeof port,
			      NI_NUMERICHOST | NI_NUMERICSERV);
	if (err != 0)
		snprintf(text, ADDR_TEXT_MAX, "(unknown address: %s)", gai_strerror(err));
	else if (addr->sa_family == AF_INET6)
		snprintf(text, ADDR_TEXT_MAX, "[%s]:%s", host, port);
	else
		snprintf(text, ADDR_TEXT_MAX, "%s:%s", host, port);
	return text;
}

void addr_announce(int listen_fd)
{
	struct sockaddr_storage addr;
	socklen_t len = sizeof addr;
	char text[ADDR_TEXT_MAX];

	/* With -p 0 the kernel chose the port at bind(); ask it which. */
	if (getsockname(listen_fd, (struct sockaddr *)&addr, &len) < 0)
		cli_die("getsockname on the listening socket");
	printf("listening on %s\n", addr_format((struct sockaddr *)&addr, len, text));
	if (fflush(stdout) == EOF)
		cli_die("writing the listening line to stdout");
}
