#!/usr/bin/python3
"""The gevent echo server, the reference point `make compare` measures the
chapters against: what the course rebuilds in C, written as a gevent user
would write it. Needs Debian's python3-gevent (hence /usr/bin/python3)."""

import argparse
import os
import signal
import sys

import gevent
from gevent.event import Event
from gevent.server import StreamServer

LISTEN_BACKLOG = 4096
BUFFER_SIZE = 16 * 1024
PROGRAM = os.path.basename(sys.argv[0])

# A table of all 256 byte values with a..z mapped to A..Z: every other byte,
# NUL and 0x80..0xff included, comes back unchanged.
UPPERCASE_ASCII = bytes.maketrans(b'abcdefghijklmnopqrstuvwxyz',
                                  b'ABCDEFGHIJKLMNOPQRSTUVWXYZ')


def parse_args():
    parser = argparse.ArgumentParser(prog=PROGRAM, description='uppercasing TCP echo server')
    parser.add_argument('-H', dest='host', default='127.0.0.1', metavar='HOST',
                        help='address to listen on (default 127.0.0.1; '
                             '0.0.0.0 for every interface)')
    parser.add_argument('-p', dest='port', type=port_number, default=8000, metavar='PORT',
                        help='port to listen on (default 8000; 0 picks a free one)')
    parser.add_argument('-v', dest='verbose', action='store_true',
                        help='log connects and disconnects to stderr')
    return parser.parse_args()


def port_number(text):
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f'{text!r} is not a port number (0..65535)')
    return int(text)


def format_address(address):
    host, port = address[:2]
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


def log(message):
    print(f'{PROGRAM}: {message}', file=sys.stderr, flush=True)


def make_handler(verbose):
    def echo(sock, address):
        """Echo one client until it closes or half-closes its side; the
        server closes the socket when this returns. sendall() parks this
        greenlet while the client is not reading, so we stop reading from it
        too: that is the back-pressure."""
        peer = format_address(address)
        if verbose:
            log(f'{peer} connected')
        try:
            while True:
                data = sock.recv(BUFFER_SIZE)
                if not data:
                    break
                sock.sendall(data.translate(UPPERCASE_ASCII))
        except OSError as err:
            log(f'echo to {peer}: {err.strerror or err}')
        finally:
            if verbose:
                log(f'{peer} disconnected')
    return echo


def main():
    args = parse_args()
    server = StreamServer((args.host, args.port), make_handler(args.verbose),
                          backlog=LISTEN_BACKLOG)
    # Handlers first, so that a SIGTERM sent as soon as the listening line
    # appears is ours to handle.
    stop = Event()
    gevent.signal_handler(signal.SIGINT, stop.set)
    gevent.signal_handler(signal.SIGTERM, stop.set)
    try:
        server.start()
    except OSError as err:
        # gevent has appended the address to the reason.
        log(f'cannot listen: {err.strerror}')
        sys.exit(1)
    print(f'listening on {format_address(server.address)}', flush=True)
    stop.wait()
    # Close the listening socket; the clients' greenlets end with the process.
    server.close()


if __name__ == '__main__':
    main()
