#!/usr/bin/env bash
# `make compare`: measures every chapter's echo server, and the reference
# peers, under the same load, and writes one Markdown table (and a plot where
# gnuplot is installed). The server runs pinned to CPU 0 and the load
# generator to CPU 1, so neither steals the other's core.
#
#   compare.sh [-c "01-blocking ..."] [-n "1 100 1000 10000"] [-d SECONDS]
#              [-s SIZE] [-o REPORT.md] [-p "callback uring gevent go"]
#              [-t solutions|chapters]   whose servers: the reference ones,
#                                        or the students' (built already)
#              [-r RUNS]                 runs of each, taking turns; the
#                                        table shows each figure's median
set -euo pipefail

chapters=""
conns="1 100 1000 10000"
seconds=3
size=64
report=docs/benchmarks.md
peers="callback uring gevent go"
tree=solutions
runs=1
while getopts "c:n:d:s:o:p:t:r:" flag; do
	case $flag in
	c) chapters=$OPTARG ;;
	n) conns=$OPTARG ;;
	d) seconds=$OPTARG ;;
	s) size=$OPTARG ;;
	o) report=$OPTARG ;;
	p) peers=$OPTARG ;;
	t) tree=$OPTARG ;;
	r) runs=$OPTARG ;;
	*) echo "usage: $0 [-c CHAPTERS] [-n \"N...\"] [-d SECONDS] [-s SIZE] [-o REPORT] [-p PEERS]" \
		"[-t solutions|chapters] [-r RUNS]" >&2
	   exit 2 ;;
	esac
done

loadgen=build/tools/loadgen
# A folder per report, so that two runs (a full one, a smoke run) do not
# write over each other's files.
work=build/compare/$(basename "$report" .md)
mkdir -p "$work" "$(dirname "$report")"
results=$work/results.tsv
: >"$results"
# One row per implementation and N: each figure the median of its runs.
medians=$work/medians.tsv

# The implementations: "name|command[|cpus]" (the command gets -p 0
# appended; cpus, where given, replaces the server's CPU). A chapter whose
# server is worth measuring in several settings lists them, one
# "label|flags|cpus" a line, in its compare.variants file.
impls=()
for ch in $chapters; do
	server=build/$tree/$ch/echo_server
	variants=$tree/$ch/compare.variants
	if [ ! -f "$variants" ]; then
		impls+=("$ch|$server")
		continue
	fi
	while IFS='|' read -r label flags cpus; do
		case $label in '#'* | '') continue ;; esac
		impls+=("$ch, $label|$server $flags|$cpus")
	done <"$variants"
done
wants() { [[ " $peers " == *" $1 "* ]]; }
if wants callback; then
	impls+=("epoll callback (C)|build/tools/epoll_echo")
fi
if wants uring; then
	impls+=("io_uring callback (C)|build/tools/uring_echo")
fi
if ! wants gevent; then
	:
elif /usr/bin/python3 -c 'import gevent' 2>/dev/null; then
	impls+=("gevent|/usr/bin/python3 tools/peers/gevent_echo.py")
else
	echo "compare: python3-gevent is not installed; the gevent peer is left out" >&2
fi
if ! wants go; then
	:
elif [ -x build/tools/go_echo ]; then
	impls+=("Go goroutines|build/tools/go_echo")
else
	echo "compare: Go is not installed; the Go peer is left out" >&2
fi

cpus=$(nproc)
server_cpu=0
load_cpu=$((cpus > 1 ? 1 : 0))
[ "$cpus" -gt 1 ] || echo "compare: one CPU only: server and load generator share it" >&2
# Every connection is a descriptor on both sides.
ulimit -n "$(ulimit -Hn)"

server_pid=""
stop_server() {
	[ -n "$server_pid" ] || return 0
	kill -TERM "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=""
}
trap stop_server EXIT

# start_server COMMAND [CPUS]: starts it pinned to CPUS (default: the server
# CPU), sets server_pid and port.
start_server() {
	local out=$work/server.out
	: >"$out"
	# shellcheck disable=SC2086 # the command is a command line
	taskset -c "${2:-$server_cpu}" $1 -p 0 >"$out" 2>"$work/server.err" &
	server_pid=$!
	for _ in $(seq 100); do
		if grep -q '^listening on ' "$out"; then
			port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
			return 0
		fi
		sleep 0.1
	done
	echo "compare: $1 did not print its listening line; its stderr:" >&2
	cat "$work/server.err" >&2
	return 1
}

# Field of /proc/PID/status, in KiB.
status_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
# Bytes PID has passed to write(2) and its kin (proc(5), /proc/PID/io wchar):
# the server's own count of what it echoed, to check the load generator's.
# send(2) is not counted there: gevent's server shows none.
written() { awk '$1 == "wchar:" { print $2 }' "/proc/$1/io"; }

# With several runs, the implementations take turns (run 1 of each, then
# run 2...), so that a slow spell of the machine does not fall on one alone.
for run in $(seq "$runs"); do
for impl in "${impls[@]}"; do
	IFS='|' read -r name command cpus <<<"$impl"
	for n in $conns; do
		start_server "$command" "$cpus" || continue
		base_kib=$(status_kib "$server_pid" VmRSS)
		wrote_before=$(written "$server_pid")
		echo "compare: $name, $n connections, ${seconds}s (run $run of $runs)" >&2
		summary=$(taskset -c "$load_cpu" "$loadgen" -p "$port" -n "$n" -d "$seconds" -s "$size" -q \
			-P "$server_pid" \
			2>"$work/loadgen.err" | grep '^RESULT ' || true)
		wrote_after=$(written "$server_pid")
		hwm_kib=$(status_kib "$server_pid" VmHWM)
		stop_server
		if [ -z "$summary" ]; then
			echo "compare: the load generator failed:" >&2
			cat "$work/loadgen.err" >&2
			continue
		fi
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$n" "$summary" "$base_kib" "$hwm_kib" \
			"$((wrote_after - wrote_before))" >>"$results"
	done
done
done

# The medians: the rows of results.tsv, one per implementation and N in
# the order first measured, each number the median of that column over the
# runs (the load generator's RESULT fields one by one, and the server CPU per
# round trip of each run as cpu_us).
awk -F'\t' '
function median(k, field,    m, i, j, t, a) {
	m = count[k]
	for (i = 1; i <= m; i++)
		a[i] = value[k, field, i] + 0
	for (i = 2; i <= m; i++) {
		t = a[i]
		for (j = i - 1; j >= 1 && a[j] > t; j--)
			a[j + 1] = a[j]
		a[j + 1] = t
	}
	return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
{
	key = $1 SUBSEP $2
	if (!(key in index_of)) {
		index_of[key] = ++keys
		label[keys] = $1 "\t" $2
	}
	k = index_of[key]
	c = ++count[k]
	n = split($3, kv, " ")
	for (i = 2; i <= n; i++) {
		split(kv[i], p, "=")
		if (!((k, p[1]) in known)) {
			known[k, p[1]] = 1
			fields[k] = fields[k] " " p[1]
		}
		value[k, p[1], c] = p[2]
		f[p[1]] = p[2]
	}
	value[k, "cpu_us", c] = f["rounds"] > 0 ? f["server_cpu_s"] * 1e6 / f["rounds"] : 0
	value[k, "#base", c] = $4
	value[k, "#hwm", c] = $5
	value[k, "#wrote", c] = $6
}
END {
	for (k = 1; k <= keys; k++) {
		line = "RESULT"
		n = split(fields[k] " cpu_us", names, " ")
		for (i = 1; i <= n; i++)
			line = line " " names[i] "=" median(k, names[i])
		printf "%s\t%s\t%s\t%s\t%s\n", label[k], line, median(k, "#base"),
			median(k, "#hwm"), median(k, "#wrote")
	}
}' "$results" >"$medians"

# The table, from the medians: one row per implementation and N.
table() {
	echo "| implementation | N | round trips/s | p50 µs | p99 µs | served | errors | peak RSS | KiB/conn | server CPU µs/round trip | server/loadgen bytes |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' -v size="$size" '
	{
		delete f
		n = split($3, kv, " ")
		for (i = 2; i <= n; i++) { split(kv[i], p, "="); f[p[1]] = p[2] }
		per_conn = $2 > 0 ? ($5 - $4) / $2 : 0
		echoed = f["all_rounds"] * size
		check = (echoed > 0 && $6 > echoed / 2) ? sprintf("%.3f", $6 / echoed) : "n/a"
		cpu = f["rounds"] > 0 ? sprintf("%.2f", f["cpu_us"]) : "n/a"
		printf "| %s | %d | %.0f | %.0f | %.0f | %d of %d | %d | %.1f MiB | %.1f | %s | %s |\n",
			$1, $2, f["rps"], f["p50_us"], f["p99_us"], f["served"], $2,
			f["errors"] + f["wrong_bytes"] + f["connect_failures"], $5 / 1024, per_conn,
			cpu, check
	}' "$medians"
}

machine="$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)),"
machine+=" $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
{
	echo "# Benchmarks"
	echo
	echo "Every chapter's echo server and the reference peers under the same load, measured by"
	echo "\`make compare\` on $(date -u +%Y-%m-%d): $machine."
	if [ "$runs" -gt 1 ]; then
		echo "Each row sums up $runs runs of \`tools/loadgen\` (the implementations taking turns), each figure"
		echo "the median of its $runs, for ${seconds} s with ${size}-byte messages over N"
	else
		echo "Each row is one run of \`tools/loadgen\` for ${seconds} s with ${size}-byte messages over N"
	fi
	echo "connections (\`$0 -n \"$conns\" -d $seconds -s $size -r $runs\`); the server is pinned to CPU $server_cpu (a row"
	echo "that names its CPUs ran on those) and"
	echo "the load generator to CPU $load_cpu. *Served* counts connections that got at least one correct"
	echo "reply; *errors* adds connect failures, broken connections and wrong bytes. *Peak RSS* is"
	echo "the server's VmHWM; *KiB/conn* is its growth over the idle server's VmRSS, divided by N;"
	echo "*server CPU µs/round trip* is the server's user + system time during the measured window (its"
	echo "CPU clock, read by \`loadgen -P\`) over the round trips of that window: the fairer figure when"
	echo "the load generator's core is the one that saturates. A server that serves one client at a time"
	echo "(chapter 01) shows the rate of that one."
	echo "*server/loadgen bytes* checks the load generator against the server's own count: what the"
	echo "server wrote (/proc/PID/io) over what the load generator verified, the opening included; a"
	echo "little above 1 for the rounds still in flight when the run ended, and n/a where the server"
	echo "writes with send(2) or through io_uring, which that count leaves out (gevent, chapter 09,"
	echo "the io_uring callback server)."
	echo
	echo "Reading it: chapter 01 serves one connection at a time, so at N > 1 one connection is served"
	echo "and the others wait (at 10000, past the listen backlog, their connects time out). Chapter 02's"
	echo "accept loop competes with thousands of busy handler threads for the CPU, so within the run many"
	echo "clients are never accepted. Chapters 03 and 04 accept one client per round of turns over every"
	echo "coroutine, each turn a failed read, so at 10000 the opening outlasts loadgen's 5-second connect"
	echo "limit for many. From chapter 05 on, and in the callback server, Go and gevent, the kernel says"
	echo "which sockets are ready, and a client is served as soon as it connects; the slowest of them per"
	echo "round trip (gevent) may still not have reached all 10000 within the run."
	echo
	table
} >"$report.tmp"

# plot: round trips per second and memory per connection against N, one line
# per implementation.
plot() {
	local png=$1 rps=() mem=() i=0 name
	while IFS= read -r name; do
		i=$((i + 1))
		awk -F'\t' -v name="$name" '$1 == name {
			n = split($3, kv, " ")
			for (j = 2; j <= n; j++) { split(kv[j], p, "="); f[p[1]] = p[2] }
			printf "%d\t%s\t%.2f\n", $2, f["rps"], ($2 > 0 ? ($5 - $4) / $2 : 0)
		}' "$medians" >"$work/plot.$i.dat"
		rps+=("'$work/plot.$i.dat' using 1:2 with linespoints title '$name'")
		mem+=("'$work/plot.$i.dat' using 1:3 with linespoints title '$name'")
	done < <(cut -f1 "$medians" | awk '!seen[$0]++')
	local IFS=,
	gnuplot <<-GNUPLOT
		set terminal pngcairo size 1200,500 noenhanced
		set output '$png'
		set multiplot layout 1,2
		set logscale x
		set xlabel 'connections (N)'
		set key left bottom
		set title 'round trips per second'
		set logscale y
		plot ${rps[*]}
		set title 'server memory per connection (KiB)'
		unset logscale y
		set key left top
		plot ${mem[*]}
	GNUPLOT
}

if command -v gnuplot >/dev/null 2>&1; then
	png=${report%.md}.png
	if plot "$png" 2>"$work/gnuplot.err"; then
		printf '\n![round trips per second and memory per connection against N](%s)\n' \
			"${png##*/}" >>"$report.tmp"
	else
		echo "compare: gnuplot failed: $(cat "$work/gnuplot.err")" >&2
	fi
fi
mv "$report.tmp" "$report"
table
echo "compare: wrote $report" >&2
