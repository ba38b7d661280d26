// The Go echo server, a peer that `make compare` measures the chapters against:
// a goroutine per connection doing plain blocking reads and writes, which Go's
// runtime multiplexes on epoll, as a Go programmer would write it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

const (
	bufferSize = 16 * 1024
	// Out of file descriptors, wait this long before accepting again;
	// Accept would fail at once otherwise, spinning the CPU.
	acceptPause = 100 * time.Millisecond
)

var program = filepath.Base(os.Args[0])

// reason is why err happened ("connection reset by peer", "no such host"),
// without the operation and addresses Go's net errors wrap around it.
func reason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Err
	}
	return err.Error()
}

func warn(what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %s: %s\n", program, what, reason(err))
}

func die(what string, err error) {
	warn(what, err)
	os.Exit(1)
}

// uppercaseASCII turns a..z into A..Z and leaves every other byte alone;
// bytes.ToUpper would also map UTF-8 letters.
func uppercaseASCII(buf []byte) {
	for i, c := range buf {
		if 'a' <= c && c <= 'z' {
			buf[i] = c - 'a' + 'A'
		}
	}
}

// serve echoes one client until it closes or half-closes its side. Write
// blocks this goroutine while the client is not reading, so we stop reading
// from it too: that is the back-pressure.
func serve(conn net.Conn, verbose bool) {
	peer := conn.RemoteAddr().String()
	if verbose {
		fmt.Fprintf(os.Stderr, "%s: %s connected\n", program, peer)
	}
	defer func() {
		if err := conn.Close(); err != nil {
			warn("close "+peer, err)
		}
		if verbose {
			fmt.Fprintf(os.Stderr, "%s: %s disconnected\n", program, peer)
		}
	}()

	buf := make([]byte, bufferSize)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			uppercaseASCII(buf[:n])
			if _, werr := conn.Write(buf[:n]); werr != nil {
				warn("write to "+peer, werr)
				return
			}
		}
		// io.EOF: the client closed or half-closed (CloseWrite), and
		// all it sent has been echoed; closing tells it we are done.
		if err == io.EOF {
			return
		}
		if err != nil {
			warn("read from "+peer, err)
			return
		}
	}
}

// acceptable reports whether a failed Accept may be retried after a pause:
// descriptors and memory free up as clients leave.
func acceptable(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

func acceptLoop(listener net.Listener, verbose bool) {
	failing := false
	for {
		conn, err := listener.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			if !acceptable(err) {
				die("accept", err)
			}
			// Reported once, not at every retry, until an accept succeeds.
			if !failing {
				warn(fmt.Sprintf("accept (retrying every %v)", acceptPause), err)
			}
			failing = true
			time.Sleep(acceptPause)
			continue
		}
		failing = false
		go serve(conn, verbose)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s [-H HOST] [-p PORT] [-v]\n", program)
	flag.PrintDefaults()
	os.Exit(2)
}

func main() {
	host := flag.String("H", "127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
	port := flag.Int("p", 8000, "port to listen on (0 picks a free one)")
	verbose := flag.Bool("v", false, "log connects and disconnects to stderr")
	flag.Usage = usage
	flag.Parse()
	if flag.NArg() != 0 || *port < 0 || *port > 65535 {
		usage()
	}

	// Notify before listening, so that a SIGTERM sent as soon as the
	// listening line appears is ours to handle.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)

	// Go asks for a listen backlog of net.core.somaxconn, the most the
	// kernel grants; the 1024 the other servers ask for is capped at it.
	address := net.JoinHostPort(*host, strconv.Itoa(*port))
	listener, err := net.Listen("tcp", address)
	if err != nil {
		die("cannot listen on "+address, err)
	}
	// os.Stdout is unbuffered: the line is out when Println returns.
	if _, err := fmt.Println("listening on " + listener.Addr().String()); err != nil {
		die("writing the listening line to stdout", err)
	}

	go acceptLoop(listener, *verbose)
	<-stop
	if err := listener.Close(); err != nil {
		die("close the listening socket", err)
	}
}
