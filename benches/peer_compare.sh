#!/usr/bin/env bash
# Load comparison of gslb against gdnsd 3.x on loopback: server CPU per answered query.
#
# Both servers serve the same zone with one GSLB name, `app.gslb.example`, weighted 50/50
# across two gateways that are health-checked over HTTP (/hc every 2 s) against two
# local HTTP targets this script starts. Each server gets one UDP socket/thread and is
# pinned to one CPU; dnsperf is pinned to the other. Runs alternate A/B/A/B and the
# figure of merit is (utime+stime of the server process) / (queries dnsperf saw
# answered): dnsperf itself saturates a core, so raw QPS mostly measures dnsperf.
#
# Usage: benches/peer_compare.sh            (defaults: ~2 minutes once built)
# Environment:
#   DURATION=8        seconds per measured dnsperf run
#   ROUNDS=3          A/B rounds per mode (at least 2; the summary takes the median)
#   MODES="udp tcp"   any of: udp, tcp, udpq (UDP at a fixed offered load, see QPS),
#                     sys (system calls per answered query: strace -f -c on the server
#                     during a run at SYS_QPS; exact and repeatable, unlike CPU time)
#   QPS=20000         offered load for the udpq mode (dnsperf -Q)
#   SYS_QPS=2000      offered load for the sys mode
#   VALGRIND=1        run both servers under valgrind --tool=callgrind; then the only
#                     mode is instr: user-space instructions per answered query (counters
#                     zeroed before and dumped after a dnsperf run at INSTR_QPS, minus
#                     an idle stretch of the same length: probes and timers)
#   INSTR_QPS=1000    offered load for the instr mode
#   XDP=1             gslb serves over AF_XDP on lo (xdp_interface = "lo"); sets the
#                     sysctls net.ipv4.conf.lo.route_localnet and accept_local to 1 for
#                     the run (replies injected on lo are routed like arriving
#                     packets, and 127/8 sources are martians otherwise), restored on exit.
#                     With NETNS=1: on the veth gpc0 instead, in native mode
#                     (xdp_mode = "native"), and no sysctl is touched
#   NETNS=1           dnsperf (and dig) run in a network namespace of the script's,
#                     behind a veth pair, as a client across a link: the servers listen
#                     on 10.53.0.1 (veth gpc0 here), dnsperf sends from 10.53.0.2 (gpc1
#                     in namespace gslb-peer-compare). The namespace goes on exit
#   PERF=1            also sample each server with `perf record -e cpu-clock -g` (a
#                     software timer: works where hardware counters do not) during the
#                     udp and tcp runs and print the hottest symbols, kernel and user,
#                     of each; needs perf (Debian: linux-perf) and kernel.kptr_restrict=0
#   QUERY=gslb        what dnsperf asks: gslb (the weighted name), static (www, a
#                     static A record), ecs (the weighted name with EDNS Client Subnet
#                     198.51.100.0/24)
#   WARMUP=1          seconds of unmeasured load per server before each mode
#   CLIENTS=4         dnsperf -c
#   GSLB_PORT=15353 GDNSD_PORT=15354 HC_PORT=18091 HC_A=127.0.0.41 HC_B=127.0.0.42
#   NO_BUILD=1        skip `cargo build --release`
#   KEEP=1            keep the temporary directory (configs, logs, dnsperf output)
set -euo pipefail

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-"udp tcp"}
QPS=${QPS:-20000}
SYS_QPS=${SYS_QPS:-2000}
QUERY=${QUERY:-gslb}
INSTR_QPS=${INSTR_QPS:-1000}
VALGRIND=${VALGRIND:-0}
PERF=${PERF:-0}
XDP=${XDP:-0}
NETNS=${NETNS:-0}
PERF_TOP=${PERF_TOP:-25}
[[ $VALGRIND == 1 ]] && MODES=instr
WARMUP=${WARMUP:-1}
CLIENTS=${CLIENTS:-4}
GSLB_PORT=${GSLB_PORT:-15353}
GDNSD_PORT=${GDNSD_PORT:-15354}
HC_PORT=${HC_PORT:-18091}
HC_A=${HC_A:-127.0.0.41}
HC_B=${HC_B:-127.0.0.42}
ZONE=gslb.example
NAME=app.$ZONE

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
GSLB_BIN=${GSLB_BIN:-$TARGET_DIR/release/gslb}
CLK_TCK=$(getconf CLK_TCK)

TOOLS="dnsperf gdnsd python3 taskset dig"
[[ $PERF == 1 ]] && TOOLS+=" perf"
for tool in $TOOLS; do
    command -v "$tool" >/dev/null || { echo "peer_compare: $tool not found" >&2; exit 1; }
done
SRV_ADDR=127.0.0.1
[[ $NETNS == 1 ]] && SRV_ADDR=10.53.0.1
for a in "$HC_A" "$HC_B"; do
    case $a in 127.*) ;; *) echo "peer_compare: $a is not a loopback address" >&2; exit 1 ;; esac
done

# --------------------------------------------------------------------------- cleanup
PIDS=()
WORK=$(mktemp -d /tmp/peer_compare.XXXXXX)
SYSCTL_OLD=()
NS=gslb-peer-compare
NS_MADE=0
cleanup() {
    local pid kv
    for kv in "${SYSCTL_OLD[@]}"; do
        echo "${kv#*=}" >"/proc/sys/net/ipv4/conf/lo/${kv%%=*}"
    done
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $NS_MADE == 1 ]]; then
        ip netns del "$NS" 2>/dev/null || true
        ip link del gpc0 2>/dev/null || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "peer_compare: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------------------- CPUs
if (( $(nproc) >= 2 )); then
    SRV_CPU=1
    CLI_CPU=0
    OTHER_CPU=$SRV_CPU
    PIN_SRV=(taskset -c "$SRV_CPU")
    PIN_CLI=(taskset -c "$CLI_CPU")
    PINNING="server on CPU $SRV_CPU, dnsperf on CPU $CLI_CPU"
else
    PIN_SRV=()
    PIN_CLI=()
    OTHER_CPU=
    PINNING="single CPU: no pinning (server and dnsperf share it)"
fi

# --------------------------------------------------------------------------- client namespace
# IN_CLI runs a client command (dnsperf, dig, the sanity sampler) where the client is:
# here, or in the namespace behind the veth.
IN_CLI=("${PIN_CLI[@]}")
if [[ $NETNS == 1 ]]; then
    if [[ -e /run/netns/$NS ]] || ip link show gpc0 >/dev/null 2>&1; then
        echo "peer_compare: namespace $NS or link gpc0 exists (another run?); remove them first" >&2
        exit 1
    fi
    if grep -q ' 10\.53\.0\.[0-3]/' <<<"$(ip -4 -o addr show)"; then
        echo "peer_compare: 10.53.0.0/30 is already in use on this host" >&2
        exit 1
    fi
    ip netns add "$NS"
    NS_MADE=1
    ip link add gpc0 type veth peer name gpc1 netns "$NS"
    ip addr add 10.53.0.1/30 dev gpc0
    ip link set gpc0 up
    ip -n "$NS" addr add 10.53.0.2/30 dev gpc1
    ip -n "$NS" link set gpc1 up
    ip -n "$NS" link set lo up
    IN_CLI=(ip netns exec "$NS" "${PIN_CLI[@]}")
    PINNING+="; dnsperf in namespace $NS across veth gpc0/gpc1"
fi

port_free() { # addr port -> 0 when both UDP and TCP can bind
    python3 - "$1" "$2" <<'EOF'
import socket, sys
for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:  # as the servers do: TIME_WAIT leftovers are fine
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((sys.argv[1], int(sys.argv[2])))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
}
for spec in "$SRV_ADDR $GSLB_PORT" "$SRV_ADDR $GDNSD_PORT" "$HC_A $HC_PORT" "$HC_B $HC_PORT"; do
    # shellcheck disable=SC2086
    port_free $spec || { echo "peer_compare: $spec is in use; set the *_PORT variables" >&2; exit 1; }
done

# --------------------------------------------------------------------------- build
if [[ ${NO_BUILD:-0} != 1 ]]; then
    echo "== cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
fi
[[ -x $GSLB_BIN ]] || { echo "peer_compare: no binary at $GSLB_BIN" >&2; exit 1; }

# --------------------------------------------------------------------------- health targets
cat >"$WORK/hc.py" <<'EOF'
# A health target: 200 on /hc, 404 elsewhere. Quiet, and indifferent to checkers that
# hang up before reading the body (gdnsd's http_status does).
import http.server, sys

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        ok = self.path.split("?")[0] == "/hc"
        body = b"ok\n" if ok else b"not found\n"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_HEAD = do_GET
    def log_message(self, *a):
        pass

class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass

S((sys.argv[1], int(sys.argv[2])), H).serve_forever()
EOF
for a in "$HC_A" "$HC_B"; do
    "${PIN_CLI[@]}" python3 "$WORK/hc.py" "$a" "$HC_PORT" &
    PIDS+=($!)
done
for a in "$HC_A" "$HC_B"; do
    for _ in $(seq 50); do
        python3 -c "import urllib.request,sys; urllib.request.urlopen('http://$a:$HC_PORT/hc', timeout=1)" 2>/dev/null && break
        sleep 0.1
    done
done

# --------------------------------------------------------------------------- configs
XDP_LINE=
XDP_IF=lo
[[ $NETNS == 1 ]] && XDP_IF=gpc0
if [[ $XDP == 1 ]]; then
    XDP_LINE="xdp_interface = \"$XDP_IF\""
    if [[ $NETNS == 1 ]]; then
        XDP_LINE+=$'\nxdp_mode = "native"'
    else
        for k in route_localnet accept_local; do
            SYSCTL_OLD+=("$k=$(cat /proc/sys/net/ipv4/conf/lo/$k)")
            echo 1 >"/proc/sys/net/ipv4/conf/lo/$k"
        done
    fi
fi
cat >"$WORK/gslb.toml" <<EOF
[server]
listen = ["$SRV_ADDR:$GSLB_PORT"]
udp_sockets = 1
$XDP_LINE

[[zone]]
origin = "$ZONE"
ttl = "1h"
ns = [{ name = "ns1", addresses = ["127.0.0.1"] }]
soa = { minimum = "30s" }

[[zone.record]]
name = "www"
type = "A"
value = "192.0.2.80"

[[gateway]]
name = "m1"
addresses = ["$HC_A"]

[[gateway]]
name = "m2"
addresses = ["$HC_B"]

[[check]]
name = "hc"
kind = "http"
port = $HC_PORT
path = "/hc"
host = "$NAME"
expect_status = [200]
interval = "2s"
timeout = "1s"
rise = 2
fall = 2

[[service]]
name = "$NAME"
ttl = "30s"
check = "hc"
answers = 1
endpoints = [
  { gateway = "m1", weight = 50 },
  { gateway = "m2", weight = 50 },
]
EOF

mkdir -p "$WORK/gdnsd/zones" "$WORK/gdnsd/run" "$WORK/gdnsd/state"
cat >"$WORK/gdnsd/config" <<EOF
options => {
  listen => { $SRV_ADDR:$GDNSD_PORT => { udp_threads => 1, tcp_threads => 1 } }
  run_dir => $WORK/gdnsd/run
  state_dir => $WORK/gdnsd/state
}
service_types => {
  hc => { plugin => http_status, port => $HC_PORT, url_path => /hc, vhost => $NAME, ok_codes => [ 200 ], interval => 2, timeout => 1, up_thresh => 2, ok_thresh => 2, down_thresh => 2 }
}
plugins => {
  weighted => {
    app => { service_types => hc, multi => false, up_thresh => 0.01, m1 => [ $HC_A, 50 ], m2 => [ $HC_B, 50 ] }
  }
}
EOF
cat >"$WORK/gdnsd/zones/$ZONE" <<EOF
\$TTL 3600
@     SOA ns1 hostmaster 1 3600 600 604800 30
@     NS  ns1
ns1   A   127.0.0.1
www   A   192.0.2.80
app   30/30 DYNA weighted!app
EOF

"$GSLB_BIN" check -c "$WORK/gslb.toml"

# --------------------------------------------------------------------------- servers
UNDER=()
if [[ $VALGRIND == 1 ]]; then
    UNDER=(valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p")
fi
start_gslb() {
    "${PIN_SRV[@]}" "${UNDER[@]}" "$GSLB_BIN" serve -c "$WORK/gslb.toml" >"$WORK/gslb.out" 2>>"$WORK/gslb.log" &
    GSLB_PID=$!
    PIDS+=("$GSLB_PID")
    GSLB_UP=1
}
# With XDP=1, gslb's program sees every packet of its interface, gdnsd's included, and
# a packet it passes on costs more (generic XDP on lo copies it first; native XDP on the
# veth takes it through the veth's NAPI instead of the backlog): gdnsd would pay for
# gslb's listener. So gslb runs only for its own turns, started afresh each round and
# stopped before gdnsd's.
stop_gslb() {
    kill "$GSLB_PID" 2>/dev/null || true
    wait "$GSLB_PID" 2>/dev/null || true
    GSLB_UP=0
    # The kernel detaches the program when gslb's last descriptor of it closes.
    for _ in $(seq 50); do
        ip link show "$XDP_IF" | grep -q xdp || return 0
        sleep 0.1
    done
    echo "peer_compare: an XDP program is still attached to $XDP_IF after gslb stopped" >&2
    exit 1
}
restart_gslb() { # XDP=1: a fresh gslb for the next turn, answering
    start_gslb
    if ! wait_ready gslb "$GSLB_PORT" "$GSLB_PID"; then tail -20 "$WORK/gslb.log" >&2; exit 1; fi
}
start_gslb
"${PIN_SRV[@]}" "${UNDER[@]}" gdnsd -c "$WORK/gdnsd" start >"$WORK/gdnsd.log" 2>&1 &
GDNSD_PID=$!
PIDS+=("$GDNSD_PID")

wait_ready() { # name port pid: until NOERROR with one of the gateway addresses
    local name=$1 port=$2 pid=$3 out
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || { echo "peer_compare: $name exited during startup" >&2; return 1; }
        out=$("${IN_CLI[@]}" dig +tries=1 +time=1 @"$SRV_ADDR" -p "$port" "$NAME" A 2>/dev/null || true)
        if grep -q 'status: NOERROR' <<<"$out" && grep -Eq "IN[[:space:]]+A[[:space:]]+($HC_A|$HC_B)\$" <<<"$out"; then
            return 0
        fi
        sleep 0.2
    done
    echo "peer_compare: $name did not answer $NAME within 30 s" >&2
    return 1
}
if ! wait_ready gslb "$GSLB_PORT" "$GSLB_PID"; then cat "$WORK/gslb.log" >&2; exit 1; fi
if ! wait_ready gdnsd "$GDNSD_PORT" "$GDNSD_PID"; then cat "$WORK/gdnsd.log" >&2; exit 1; fi
# gslb starts with every endpoint up and lets the checks take them down; let both see a
# few check rounds so the measured state is steady on both sides.
sleep 3

# --------------------------------------------------------------------------- sanity
cat >"$WORK/sample.py" <<'EOF'
# Sends N sequential queries for NAME/A and summarises the answers: rcodes, answer
# counts, TTLs, and each address's share. Exits 1 when anything is not as expected.
import collections, random, socket, struct, sys

addr, port, name, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
want = set(sys.argv[5].split(","))

def query(qid):
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return q + struct.pack(">HH", 1, 1)

def skip_name(m, i):
    while True:
        l = m[i]
        if l >= 0xC0:
            return i + 2
        if l == 0:
            return i + 1
        i += l + 1

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
rcodes, counts, ttls, addrs, bad = (collections.Counter() for _ in range(5))
for _ in range(n):
    qid = random.getrandbits(16)
    s.sendto(query(qid), (addr, port))
    try:
        m = s.recv(4096)
    except socket.timeout:
        bad["timeout"] += 1
        continue
    rid, flags, qd, an = struct.unpack(">HHHH", m[:8])
    if rid != qid:
        bad["id mismatch"] += 1
        continue
    rcodes[flags & 0xF] += 1
    counts[an] += 1
    i = 12
    for _ in range(qd):
        i = skip_name(m, i) + 4
    for _ in range(an):
        i = skip_name(m, i)
        t, c, ttl, rdlen = struct.unpack(">HHIH", m[i:i + 10])
        i += 10
        if t == 1:
            a = socket.inet_ntoa(m[i:i + 4])
            addrs[a] += 1
            ttls[ttl] += 1
            if a not in want:
                bad["unexpected address " + a] += 1
        i += rdlen
total = sum(addrs.values()) or 1
share = " ".join(f"{a}={100.0 * c / total:.1f}%" for a, c in sorted(addrs.items()))
print(f"rcodes={dict(rcodes)} answers/response={dict(counts)} ttl={dict(ttls)} {share}"
      + (f" PROBLEMS={dict(bad)}" if bad else ""))
ok = (not bad and set(rcodes) == {0} and set(counts) == {1} and set(ttls) == {30}
      and len(addrs) == 2 and all(abs(c / total - 0.5) < 0.1 for c in addrs.values()))
sys.exit(0 if ok else 1)
EOF
SANITY_OK=1
sanity() { # label
    local srv port
    for srv in gslb gdnsd; do
        port=$GSLB_PORT; [[ $srv == gdnsd ]] && port=$GDNSD_PORT
        printf '  %-6s %-5s ' "$1" "$srv"
        "${IN_CLI[@]}" python3 "$WORK/sample.py" "$SRV_ADDR" "$port" "$NAME" 1000 "$HC_A,$HC_B" || { SANITY_OK=0; echo "  ^ NOT AS EXPECTED"; }
    done
}
echo "== sanity: 1000 sequential queries for $NAME A per server (expect NOERROR, 1 answer, TTL 30, ~50/50)"
sanity before

# --------------------------------------------------------------------------- load
cat >"$WORK/strace_sum.py" <<'EOF'
# strace -c summary + dnsperf output -> "round server calls completed top-calls" (TSV).
import re, sys
trace, perf, rnd, srv = sys.argv[1:]
calls, top = 0, []
for line in open(trace):
    f = line.split()
    if len(f) < 5 or not f[0][0].isdigit():
        continue
    # % time, seconds, usecs/call, calls, [errors], syscall
    n = int(f[3])
    if f[-1] == "total":
        calls = n
    else:
        top.append((n, f[-1]))
done = re.search(r"Queries completed:\s+(\d+)", open(perf).read())
top = ",".join(f"{name}={n}" for n, name in sorted(top, reverse=True)[:4])
print(f"{rnd}\t{srv}\t{calls}\t{done.group(1) if done else 0}\t{top}")
EOF
case $QUERY in
    gslb | ecs) echo "$NAME A" >"$WORK/queries.txt" ;;
    static) echo "www.$ZONE A" >"$WORK/queries.txt" ;;
    *) echo "peer_compare: QUERY is gslb, static or ecs" >&2; exit 1 ;;
esac
# ECS option 8: family 1, source /24, scope 0, address 198.51.100.
ECS_ARGS=()
[[ $QUERY == ecs ]] && ECS_ARGS=(-E 8:00011800c63364)
RESULTS=$WORK/results.tsv
: >"$RESULTS"

cpu_ticks() { # pid -> utime+stime of the whole process (all threads), in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
user_ticks() { # pid -> utime of the whole process, in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 }' "/proc/$1/stat"
}
cpu_busy() { # cpu -> busy ticks of that CPU (everything but idle and iowait), 0 if unpinned
    if [[ -z $1 ]]; then echo 0; return; fi
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
rss_kib() { # pid field -> VmRSS / VmHWM in KiB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

dnsperf_args() { # mode port
    local a=(-s "$SRV_ADDR" -p "$2" -d "$WORK/queries.txt" -c "$CLIENTS" -T 1 "${ECS_ARGS[@]}")
    case $1 in
        udp) ;;
        tcp) a+=(-m tcp) ;;
        udpq) a+=(-Q "$QPS" -v) ;; # -v: every query's latency, for the percentiles
        sys) a+=(-Q "$SYS_QPS") ;;
        instr) a+=(-Q "$INSTR_QPS") ;;
    esac
    echo "${a[@]}"
}

run_one() { # mode round server
    local mode=$1 round=$2 srv=$3 pid port out t0 t1 b0 b1 u0 u1
    if [[ $srv == gslb ]]; then pid=$GSLB_PID; port=$GSLB_PORT; else pid=$GDNSD_PID; port=$GDNSD_PORT; fi
    out=$WORK/dnsperf.$mode.$round.$srv.txt
    if [[ $mode == instr ]]; then
        instr_one "$round" "$srv" "$pid" "$port" "$out"
        return
    fi
    local tracer=
    if [[ $mode == sys ]]; then
        # Every thread of the server, counted for the length of the dnsperf run.
        local tids=()
        for t in /proc/"$pid"/task/*; do tids+=(-p "${t##*/}"); done
        strace -f -c -q -o "$out.strace" "${tids[@]}" 2>/dev/null &
        tracer=$!
        sleep 0.5
    fi
    local sampler=
    if [[ $PERF == 1 && ( $mode == udp || $mode == tcp ) ]]; then
        perf record -q -e cpu-clock -g -p "$pid" -o "$out.perf" >/dev/null 2>&1 &
        sampler=$!
        sleep 0.5
    fi
    b0=$(cpu_busy "$OTHER_CPU")
    t0=$(cpu_ticks "$pid")
    u0=$(user_ticks "$pid")
    # shellcheck disable=SC2046
    "${IN_CLI[@]}" dnsperf $(dnsperf_args "$mode" "$port") -l "$DURATION" >"$out" 2>&1 || true
    t1=$(cpu_ticks "$pid") || t1=
    u1=$(user_ticks "$pid") || u1=
    b1=$(cpu_busy "$OTHER_CPU")
    if [[ -n $sampler ]]; then
        kill -INT "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        perf report -i "$out.perf" --stdio --no-children --sort dso,sym -g none 2>/dev/null \
            | grep -E '^ +[0-9.]+%' | head -n "$PERF_TOP" >"$out.perf.top" || true
        echo "  -- perf: $srv, $mode round $round: hottest symbols (share of the server's samples)"
        sed 's/^/    /' "$out.perf.top"
    fi
    if [[ -n $tracer ]]; then
        kill -INT "$tracer" 2>/dev/null || true
        wait "$tracer" 2>/dev/null || true
        python3 "$WORK/strace_sum.py" "$out.strace" "$out" "$round" "$srv" >>"$WORK/syscalls.tsv"
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "peer_compare: $srv DIED during the $mode run (round $round)" >&2
        tail -20 "$WORK/$srv.log" >&2
        exit 1
    fi
    python3 - "$out" "$mode" "$round" "$srv" "$((t1 - t0))" "$CLK_TCK" "$((b1 - b0 - (t1 - t0)))" "$((u1 - u0))" >>"$RESULTS" <<'EOF'
import re, sys
path, mode, rnd, srv, ticks, hz, other, user = sys.argv[1:]
t = open(path).read()
def num(pat, default="nan"):
    m = re.search(pat, t)
    return m.group(1) if m else default
done = int(num(r"Queries completed:\s+(\d+)", "0"))
lost = int(num(r"Queries lost:\s+(\d+)", "0"))
qps = float(num(r"Queries per second:\s+([\d.]+)"))
lat = float(num(r"Average Latency \(s\):\s+([\d.]+)")) * 1e6
noerr = int(num(r"NOERROR (\d+)", "0"))
cpu = int(ticks) / int(hz)
us = cpu / done * 1e6 if done else float("nan")
run = float(num(r"Run time \(s\):\s+([\d.]+)", "0")) or 1.0
# Busy time on the server's CPU that was not the server: other processes interfering.
steal = max(0, int(other)) / int(hz) / run * 100
# The share of the server's CPU time spent in user space (the rest is the kernel).
user_pct = int(user) / int(ticks) * 100 if int(ticks) else 0
# With -v (udpq), one "> RCODE name type seconds" line per query: p99 in microseconds.
lats = sorted(float(l.split()[-1]) for l in t.splitlines() if l.startswith("> "))
p99 = lats[min(len(lats) - 1, int(len(lats) * 0.99))] * 1e6 if lats else 0
print(f"{mode}\t{rnd}\t{srv}\t{qps:.0f}\t{done}\t{lost}\t{noerr}\t{cpu:.2f}\t{us:.3f}\t{lat:.0f}\t{steal:.0f}\t{user_pct:.0f}\t{p99:.0f}")
EOF
}

ir_dump() { # pid -> instructions (Ir) counted since the last zeroing
    local before after f
    before=$(ls "$WORK"/cg."$1".* 2>/dev/null | wc -l)
    callgrind_control -d "$1" >/dev/null 2>&1
    for _ in $(seq 100); do
        after=$(ls "$WORK"/cg."$1".* 2>/dev/null | wc -l)
        (( after > before )) && break
        sleep 0.1
    done
    f=$(ls -t "$WORK"/cg."$1".* | head -1)
    for _ in $(seq 50); do
        grep -q '^totals:' "$f" && break
        sleep 0.1
    done
    awk '/^totals:/ { print $2; exit }' "$f"
}

instr_one() { # round server pid port out
    local round=$1 srv=$2 pid=$3 port=$4 out=$5 idle load
    callgrind_control -z "$pid" >/dev/null 2>&1
    sleep "$DURATION"
    idle=$(ir_dump "$pid")
    callgrind_control -z "$pid" >/dev/null 2>&1
    # shellcheck disable=SC2046
    "${IN_CLI[@]}" dnsperf $(dnsperf_args instr "$port") -l "$DURATION" >"$out" 2>&1 || true
    load=$(ir_dump "$pid")
    local done
    done=$(awk '/Queries completed:/ { print $3 }' "$out")
    echo -e "$round\t$srv\t$load\t$idle\t$done" >>"$WORK/instr.tsv"
    printf '  %-6s %12d Ir under load, %12d idle, %6d answered: %8.0f instructions per query\n' \
        "$srv" "$load" "$idle" "$done" "$(( (load - idle) / (done > 0 ? done : 1) ))"
}

warm() { # mode server
    local port=$GSLB_PORT
    [[ $2 == gdnsd ]] && port=$GDNSD_PORT
    # shellcheck disable=SC2046
    "${IN_CLI[@]}" dnsperf $(dnsperf_args "$1" "$port") -l "$WARMUP" >/dev/null 2>&1 || true
}

print_round() { # mode round
    awk -F'\t' -v m="$1" -v r="$2" '
        $1 == m && $2 == r {
            extra = ($5 == $7) ? "" : sprintf("  (only %d NOERROR)", $7)
            if ($13 > 0) extra = extra sprintf("  p99 %d us", $13)
            printf "  %-6s %9d qps %10d done %6d lost  cpu %6.2f s  %7.3f us/query (user %3d%%)  avg lat %5d us  other load on server CPU %3d%%%s\n",
                $3, $4, $5, $6, $8, $9, $12, $10, $11, extra
        }' "$RESULTS"
}

echo "== $PINNING; query $QUERY ($(cat "$WORK/queries.txt") ${ECS_ARGS[*]}); dnsperf -c $CLIENTS -T 1, ${DURATION}s per run, $ROUNDS rounds, CLK_TCK $CLK_TCK"
for mode in $MODES; do
    case $mode in udp|tcp|udpq|sys|instr) ;; *) echo "peer_compare: unknown mode $mode" >&2; exit 1 ;; esac
    if [[ $mode == tcp && $(dnsperf -h 2>&1 || true) != *"-m set transport mode: udp, tcp"* ]]; then
        echo "== $mode: this dnsperf has no -m tcp; skipped"
        continue
    fi
    echo "== $mode: dnsperf $(dnsperf_args "$mode" PORT) -l $DURATION"
    if (( WARMUP > 0 )); then warm "$mode" gslb; warm "$mode" gdnsd; fi
    for round in $(seq "$ROUNDS"); do
        echo " round $round"
        if [[ $GSLB_UP == 0 ]]; then
            restart_gslb
            sleep 3 # a few check rounds, as at the start
            if (( WARMUP > 0 )); then warm "$mode" gslb; fi
        fi
        run_one "$mode" "$round" gslb
        [[ $XDP == 1 ]] && stop_gslb
        run_one "$mode" "$round" gdnsd
        print_round "$mode" "$round"
    done
done

if [[ $GSLB_UP == 0 ]]; then restart_gslb; fi
echo "== sanity after load"
sanity after

if [[ -s $WORK/instr.tsv ]]; then
    echo "== user-space instructions per answered query at $INSTR_QPS q/s (callgrind; median over rounds)"
    python3 - "$WORK/instr.tsv" <<'EOF'
import collections, statistics, sys
per = collections.defaultdict(list)
for line in open(sys.argv[1]):
    rnd, srv, load, idle, done = line.split()
    per[srv].append((int(load) - int(idle)) / max(1, int(done)))
med = {s: statistics.median(v) for s, v in per.items()}
print(f"  gslb {med['gslb']:.0f}, gdnsd {med['gdnsd']:.0f}, ratio gslb/gdnsd {med['gslb'] / med['gdnsd']:.2f}")
EOF
fi

if [[ -s $WORK/syscalls.tsv ]]; then
    echo "== system calls per answered query at $SYS_QPS q/s (strace -f -c, all threads)"
    python3 - "$WORK/syscalls.tsv" <<'EOF'
import collections, statistics, sys
per = collections.defaultdict(list)
for line in open(sys.argv[1]):
    rnd, srv, calls, done, top = line.rstrip("\n").split("\t")
    per[srv].append(int(calls) / max(1, int(done)))
    print(f"  round {rnd} {srv:<6} {int(calls) / max(1, int(done)):.2f} per query ({calls} calls, {done} answered: {top})")
med = {s: statistics.median(v) for s, v in per.items()}
print(f"  median: gslb {med['gslb']:.2f}, gdnsd {med['gdnsd']:.2f}, ratio gslb/gdnsd {med['gslb'] / med['gdnsd']:.2f}")
EOF
fi

# --------------------------------------------------------------------------- summary
GSLB_RSS=$(rss_kib "$GSLB_PID" VmRSS); GSLB_HWM=$(rss_kib "$GSLB_PID" VmHWM)
GDNSD_RSS=$(rss_kib "$GDNSD_PID" VmRSS); GDNSD_HWM=$(rss_kib "$GDNSD_PID" VmHWM)
GSLB_THREADS=$(ls "/proc/$GSLB_PID/task" | wc -l); GDNSD_THREADS=$(ls "/proc/$GDNSD_PID/task" | wc -l)
echo "== summary (median over rounds)"
python3 - "$RESULTS" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(list)
noisy = []
for line in open(sys.argv[1]):
    mode, rnd, srv, qps, done, lost, noerr, cpu, us, lat, other, _user, p99 = line.rstrip("\n").split("\t")
    if mode == "sys":
        continue  # strace slows the server: its CPU figures mean nothing
    rows[(mode, srv)].append((float(qps), float(us), float(lat), int(done), int(noerr), float(p99)))
    if float(other) > 10:
        noisy.append(f"{mode}/{rnd}/{srv} {other}%")
modes = list(dict.fromkeys(m for m, _ in rows))
print(f"  {'mode':<5} {'gslb qps':>10} {'gslb us/q':>10} {'gdnsd qps':>10} {'gdnsd us/q':>11} {'ratio gslb/gdnsd (cpu/query)':>30}")
for m in modes:
    g, d = rows[(m, "gslb")], rows[(m, "gdnsd")]
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    gq, gu, dq, du = med(g, 0), med(g, 1), med(d, 0), med(d, 1)
    print(f"  {m:<5} {gq:>10.0f} {gu:>10.3f} {dq:>10.0f} {du:>11.3f} {gu / du:>30.2f}")
    for srv, xs in (("gslb", g), ("gdnsd", d)):
        if any(x[4] != x[3] for x in xs):
            print(f"  WARNING: {m}/{srv}: some completed queries were not NOERROR")
    if m == "udpq":
        print(f"  udpq average latency (median over rounds): gslb {med(g, 2):.0f} us, gdnsd {med(d, 2):.0f} us")
        print(f"  udpq p99 latency (median over rounds): gslb {med(g, 5):.0f} us, gdnsd {med(d, 5):.0f} us, ratio {med(g, 5) / med(d, 5):.2f}")
if noisy:
    print("  NOTE: other processes took >10% of the server CPU in: " + ", ".join(noisy))
EOF
echo "  RSS: gslb $((GSLB_RSS / 1024)).$(( (GSLB_RSS % 1024) * 10 / 1024 )) MiB (peak $((GSLB_HWM / 1024)).$(( (GSLB_HWM % 1024) * 10 / 1024 )) MiB, $GSLB_THREADS threads);" \
     "gdnsd $((GDNSD_RSS / 1024)).$(( (GDNSD_RSS % 1024) * 10 / 1024 )) MiB (peak $((GDNSD_HWM / 1024)).$(( (GDNSD_HWM % 1024) * 10 / 1024 )) MiB, $GDNSD_THREADS threads)"
if [[ $SANITY_OK != 1 ]]; then
    echo "== WARNING: a sanity sample was not as expected (see above); the comparison may not be fair"
    exit 2
fi
