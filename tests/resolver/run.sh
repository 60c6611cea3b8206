#!/usr/bin/env bash
# Locality "through a real resolver": a stub client asks Unbound, Unbound follows the
# delegation from a parent zone (NSD) to gslb and sends the client's subnet as EDNS
# Client Subnet (RFC 7871); gslb places the client in a region by that subnet. The
# test asserts region-specific answers as the resolver's clients see them, regional
# failover when a gateway's health target starts answering 503, and recovery.
#
# Everything runs inside a private network namespace, so the servers can use port 53
# (a resolver following a delegation always asks port 53: glue carries no port)
# without touching the host. Inside it, on its own loopback:
#
#   127.0.0.2:53     nsd     parent zone example.test, delegates gslb.example.test
#                            to ns1.gslb.example.test (glue 127.0.0.3)
#   127.0.0.3:53     gslb    zone gslb.example.test, service app.gslb.example.test
#   127.0.0.4:53     unbound stub-zone example.test -> 127.0.0.2, subnet module on,
#                            send-client-subnet 127.0.0.3
#   127.0.0.11:8080  health target of gateway g1 (region one, answers 198.51.100.1)
#   127.0.0.12:8080  health target of gateway g2 (region two, answers 198.51.100.2)
#   127.0.1.5        a client in region one (127.0.1.0/24)
#   127.0.2.5        a client in region two (127.0.2.0/24)
#
# The resolver's own address, 127.0.0.4, is in no region: without ECS gslb answers it
# with every endpoint (answers = 2), so region-specific answers through Unbound can
# only come from the client subnet Unbound forwarded.
#
# Needs root, `ip netns`, nsd, unbound, dig and python3, and a release build of gslb
# (GSLB_BIN, default target/release/gslb). Without them it fails when CI is set and
# skips otherwise. Usage: tests/resolver/run.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
GSLB_BIN="${GSLB_BIN:-$repo/target/release/gslb}"

say() { printf '[resolver-test %s] %s\n' "$(date +%T.%N | cut -c1-12)" "$*"; }
fail() {
    printf '[resolver-test] FAIL: %s\n' "$*" >&2
    exit 1
}
# A missing prerequisite: fatal in CI, a skip on a developer's machine.
unavailable() {
    if [[ -n "${CI:-}" ]]; then
        printf '[resolver-test] FAIL (CI is set): %s\n' "$*" >&2
        exit 1
    fi
    printf '[resolver-test] SKIP: %s\n' "$*"
    exit 0
}

# ---- prerequisites ---------------------------------------------------------------
[[ "$(id -u)" == 0 ]] || unavailable "needs root (network namespace, port 53)"
for tool in ip nsd nsd-checkconf unbound unbound-checkconf dig python3; do
    command -v "$tool" >/dev/null 2>&1 ||
        unavailable "$tool not found (apt-get install -y iproute2 nsd unbound bind9-dnsutils python3)"
done
[[ -x "$GSLB_BIN" ]] || fail "$GSLB_BIN missing: run 'cargo build --release' first (or set GSLB_BIN)"

NS="gslb-resolver-$$"
TMP="$(mktemp -d /tmp/gslb-resolver.XXXXXX)"
PIDS=()
NS_MADE=0
# Unbound's files. Debian confines /usr/sbin/unbound with an AppArmor profile that lets
# it read only /etc/unbound and /var/lib/unbound: where AppArmor is on, keep them there.
UDIR="$TMP/unbound"
if [[ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" == Y && -d /var/lib/unbound ]]; then
    UDIR="$(mktemp -d /var/lib/unbound/gslb-resolver.XXXXXX)"
fi
ULOG="$UDIR/unbound.log"

# Whether PID is still running (an exited child that is not yet reaped is not).
running() {
    local state
    state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

cleanup() {
    local rc=$?
    set +e
    # nsd's main process (its pidfile) is a child of the one we started: stop it first,
    # so that it stops its servers and xfrd in order.
    [[ -s "$TMP/nsd/nsd.pid" ]] && kill "$(cat "$TMP/nsd/nsd.pid")" 2>/dev/null
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        # Give each a moment, then insist.
        for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
            running "$pid" || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    # Anything of ours still inside the namespace (nsd's workers, say) ends now.
    if ((NS_MADE)); then
        for pid in $(ip netns pids "$NS" 2>/dev/null); do
            kill -9 "$pid" 2>/dev/null
        done
    fi
    if [[ $rc != 0 ]]; then
        for log in "$TMP"/*.log "$ULOG"; do
            [[ -s "$log" ]] || continue
            if [[ "$log" == */unbound.log ]]; then
                printf '\n----- unbound.log (ECS lines, last 40) -----\n' >&2
                grep -E 'edns subnet|subnetcache: answered' "$log" | tail -n 40 >&2
            else
                printf '\n----- %s (last 40 lines) -----\n' "$(basename "$log")" >&2
                sed 's/\x1b\[[0-9;]*m//g' "$log" | tail -n 40 >&2
            fi
        done
    fi
    ((NS_MADE)) && ip netns del "$NS" 2>/dev/null
    rm -rf "$TMP" "$UDIR"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! ip netns add "$NS" 2>"$TMP/netns.err"; then
    unavailable "ip netns add failed: $(cat "$TMP/netns.err")"
fi
NS_MADE=1
nx() { ip netns exec "$NS" "$@"; }

# Runs a command in the namespace in the background, logging to $TMP/NAME.log. Not
# through nx: a backgrounded function would be a subshell, and $! its pid rather than
# the server's (ip netns exec execs the command, so $! is the server itself).
start() {
    local name=$1
    shift
    ip netns exec "$NS" "$@" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    say "started $name: pid $!: $*"
}

# Waits until COMMAND succeeds, at most SECONDS.
wait_for() {
    local what=$1 secs=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what did not come up within ${secs}s"
        sleep 0.1
    done
    say "$what is up"
}

# ---- configuration -----------------------------------------------------------------
INTERVAL_MS=500 TIMEOUT_MS=200 RISE=1 FALL=1 TTL_S=1

mkdir -p "$TMP/nsd" "$UDIR"
cat >"$TMP/nsd/example.test.zone" <<'EOF'
$ORIGIN example.test.
$TTL 60
@          IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 604800 60
@          IN NS  ns1
ns1        IN A   127.0.0.2
; the delegation to gslb, with glue (no port: the resolver will ask port 53)
gslb       IN NS  ns1.gslb
ns1.gslb   IN A   127.0.0.3
EOF
cat >"$TMP/nsd/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.2
    port: 53
    do-ip6: no
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "$TMP/nsd"
    database: ""
    zonelistfile: "$TMP/nsd/zone.list"
    xfrdfile: "$TMP/nsd/xfrd.state"
    xfrdir: "$TMP/nsd"
    pidfile: "$TMP/nsd/nsd.pid"
    logfile: "$TMP/nsd.log"
    verbosity: 1
remote-control:
    control-enable: no
zone:
    name: "example.test"
    zonefile: "example.test.zone"
EOF

cat >"$TMP/gslb.toml" <<EOF
[server]
listen = ["127.0.0.3:53"]
udp_sockets = 1

[[zone]]
origin = "gslb.example.test"
ttl = "1m"
ns = [{ name = "ns1", addresses = ["127.0.0.3"] }]
soa.minimum = "1s"

[[region]]
name = "one"
networks = ["127.0.1.0/24"]
fallback = ["two"]

[[region]]
name = "two"
networks = ["127.0.2.0/24"]
fallback = ["one"]

[[gateway]]
name = "g1"
addresses = ["198.51.100.1"]
region = "one"
probe = "127.0.0.11:8080"

[[gateway]]
name = "g2"
addresses = ["198.51.100.2"]
region = "two"
probe = "127.0.0.12:8080"

[[check]]
name = "hc"
kind = "http"
path = "/hc"
expect_status = [200]
interval = "${INTERVAL_MS}ms"
timeout = "${TIMEOUT_MS}ms"
rise = $RISE
fall = $FALL

# answers = 2: a client in no region gets both gateways; a client in a region gets the
# one gateway of its region (locality is on because regions exist).
[[service]]
name = "app.gslb.example.test"
ttl = "${TTL_S}s"
check = "hc"
answers = 2
endpoints = [{ gateway = "g1" }, { gateway = "g2" }]
EOF

cat >"$UDIR/unbound.conf" <<EOF
server:
    interface: 127.0.0.4
    port: 53
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    do-daemonize: no
    use-syslog: no
    logfile: "$ULOG"
    log-time-ascii: yes
    # 4 logs each ECS option received from an authority ("answer has edns subnet
    # ADDRESS/SOURCE scope /SCOPE"): the evidence that ECS went to gslb and came back.
    verbosity: 4
    username: ""
    chroot: ""
    directory: "$UDIR"
    pidfile: "$UDIR/unbound.pid"
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    # The authoritatives live on loopback addresses: let the iterator ask them.
    do-not-query-localhost: no
    # test. is a locally served default zone (RFC 6761): let queries through.
    local-zone: "test." nodefault
    # A private zone with no trust anchor: nothing to validate.
    domain-insecure: "example.test"
    # EDNS Client Subnet: the subnet module derives ECS from the client's source
    # address (max-client-subnet-ipv4 bits of it) and sends it to the listed
    # authority, gslb.
    module-config: "subnetcache validator iterator"
    send-client-subnet: 127.0.0.3
    max-client-subnet-ipv4: 24
    # Low TTLs, so failover shows at once.
    cache-max-ttl: $TTL_S
    cache-max-negative-ttl: 1
    prefetch: no
    serve-expired: no
stub-zone:
    name: "example.test"
    stub-addr: 127.0.0.2
remote-control:
    control-enable: no
EOF

nsd-checkconf "$TMP/nsd/nsd.conf" || fail "nsd.conf does not check"
unbound-checkconf "$UDIR/unbound.conf" >/dev/null || fail "unbound.conf does not check"
"$GSLB_BIN" check -c "$TMP/gslb.toml" >/dev/null || fail "gslb.toml does not check"

# ---- start ---------------------------------------------------------------------------
say "network namespace $NS; work dir $TMP"
nx ip link set lo up
for a in 127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.11 127.0.0.12 127.0.1.5 127.0.2.5; do
    nx ip addr add "$a/32" dev lo 2>/dev/null || true
done
say "loopback inside the namespace: $(nx ip -4 -o addr show dev lo | awk '{print $4}' | tr '\n' ' ')"

start target-g1 python3 "$here/health_target.py" 127.0.0.11 8080 "$TMP/g1.down"
start target-g2 python3 "$here/health_target.py" 127.0.0.12 8080 "$TMP/g2.down"
wait_for "health target g1 (127.0.0.11:8080)" 10 grep -q listening "$TMP/target-g1.log"
wait_for "health target g2 (127.0.0.12:8080)" 10 grep -q listening "$TMP/target-g2.log"

start nsd-stdout nsd -d -c "$TMP/nsd/nsd.conf"
wait_for "nsd (parent example.test on 127.0.0.2:53)" 20 \
    nx dig +time=1 +tries=1 +norec @127.0.0.2 example.test SOA +short

start gslb env RUST_LOG=info "$GSLB_BIN" serve -c "$TMP/gslb.toml"
wait_for "gslb (gslb.example.test on 127.0.0.3:53)" 20 \
    grep -q 'gslb: listening on 127.0.0.3:53' "$TMP/gslb.log"

start unbound-stdout unbound -d -c "$UDIR/unbound.conf"
wait_for "unbound (resolver on 127.0.0.4:53)" 20 \
    nx dig +time=1 +tries=1 @127.0.0.4 example.test SOA +short

# ---- queries -----------------------------------------------------------------------
NAME=app.gslb.example.test
join() { sort | tr '\n' ' ' | sed 's/ $//'; }
resolve() { # SOURCE: the A records of $NAME through unbound, sorted, on one line
    nx dig +time=2 +tries=2 -b "$1" @127.0.0.4 "$NAME" A +short | join
}
expect_resolve() { # SOURCE EXPECTED TIMES WHAT
    local src=$1 want=$2 times=$3 what=$4 got i
    for ((i = 1; i <= times; i++)); do
        got="$(resolve "$src")"
        say "  dig -b $src @127.0.0.4 $NAME A +short -> ${got:-<nothing>}"
        [[ "$got" == "$want" ]] || fail "$what: client $src got '${got}', want '$want'"
        sleep 0.3
    done
}
# The ECS option and the A records of a full dig answer ("ANSWERS [CLIENT-SUBNET: ...]").
ecs_of() { grep 'CLIENT-SUBNET' | sed 's/^; *//'; }
answers_of() { grep -E "^$NAME\.[[:space:]]" | awk '{print $5}' | join; }
gslb_log() { sed 's/\x1b\[[0-9;]*m//g' "$TMP/gslb.log" | grep -E "$1" | tail -n 1 | sed 's/^/    gslb log: /'; }
# Seconds to wait for a health change to reach a resolver's client: the README's bound
# (interval x N + timeout), plus the TTL, plus 2 s because Unbound keeps time in whole
# seconds (a 1 s TTL can be served for up to 2 s).
bound() { awk -v i=$INTERVAL_MS -v n="$1" -v t=$TIMEOUT_MS -v l=$TTL_S \
    'BEGIN { printf "%.1f", (i * n + t) / 1000 + l + 2 }'; }

say "STEP 1: the parent (nsd, 127.0.0.2) delegates gslb.example.test to gslb, with glue"
deleg="$(nx dig +norec @127.0.0.2 "$NAME" A | grep -E '^(gslb|ns1\.gslb)\.example\.test\.' || true)"
printf '%s\n' "$deleg" | sed 's/^/    /'
grep -qE 'gslb\.example\.test\.\s+[0-9]+\s+IN\s+NS\s+ns1\.gslb\.example\.test\.' <<<"$deleg" ||
    fail "parent gives no NS referral for gslb.example.test"
grep -qE 'ns1\.gslb\.example\.test\.\s+[0-9]+\s+IN\s+A\s+127\.0\.0\.3' <<<"$deleg" ||
    fail "parent gives no glue 127.0.0.3"

say "STEP 2: gslb asked directly from the resolver's own address (127.0.0.4, in no region), without ECS"
got="$(nx dig -b 127.0.0.4 @127.0.0.3 "$NAME" A +short | join)"
say "  dig -b 127.0.0.4 @127.0.0.3 $NAME A +short -> $got"
[[ "$got" == "198.51.100.1 198.51.100.2" ]] ||
    fail "without ECS, from 127.0.0.4, gslb should answer both gateways; got '$got'"
say "  both gateways: a resolver that did not forward its clients' subnet would get this for everyone"

say "STEP 3: gslb asked directly with ECS (as Unbound will send it): the region's gateway, scope = the region's prefix"
for q in "127.0.1.0/24 198.51.100.1" "127.0.2.0/24 198.51.100.2"; do
    subnet=${q% *} want=${q#* }
    out="$(nx dig -b 127.0.0.4 +subnet="$subnet" @127.0.0.3 "$NAME" A)"
    ecs="$(ecs_of <<<"$out")" ans="$(answers_of <<<"$out")"
    say "  dig -b 127.0.0.4 +subnet=$subnet @127.0.0.3 $NAME A -> $ans   [$ecs]"
    [[ "$ans" == "$want" ]] || fail "with ECS $subnet gslb should answer $want; got '$ans'"
    [[ "$ecs" == "CLIENT-SUBNET: $subnet/24" ]] ||
        fail "with ECS $subnet gslb should echo it with scope /24; got '$ecs'"
done

say "STEP 4: through the resolver: a client in region one (127.0.1.5), then one in region two (127.0.2.5)"
expect_resolve 127.0.1.5 198.51.100.1 4 "region one through unbound"
expect_resolve 127.0.2.5 198.51.100.2 4 "region two through unbound"
say "  unbound's log: ECS it sent to gslb (derived from each client's source address), as gslb echoed it back"
ecs_log="$(grep -oE 'answer has edns subnet [0-9./]+ scope /[0-9]+' "$ULOG" | sort | uniq -c)"
awk '{ n = $1; $1 = ""; printf "    %s   (%d time%s)\n", substr($0, 2), n, (n == 1 ? "" : "s") }' <<<"$ecs_log"
grep -q 'answer has edns subnet 127.0.1.0/24 scope /24' <<<"$ecs_log" ||
    fail "unbound's log shows no ECS 127.0.1.0/24 answered with scope /24"
grep -q 'answer has edns subnet 127.0.2.0/24 scope /24' <<<"$ecs_log" ||
    fail "unbound's log shows no ECS 127.0.2.0/24 answered with scope /24"

say "STEP 5: a client that sends its own ECS through the resolver: unbound forwards it and returns gslb's scope"
out="$(nx dig -b 127.0.1.5 +subnet=127.0.2.0/24 @127.0.0.4 "$NAME" A)"
ecs="$(ecs_of <<<"$out")" ans="$(answers_of <<<"$out")"
say "  dig -b 127.0.1.5 +subnet=127.0.2.0/24 @127.0.0.4 $NAME A -> $ans   [$ecs]"
[[ "$ans" == "198.51.100.2" ]] ||
    fail "ECS 127.0.2.0/24 through unbound should give region two's 198.51.100.2; got '$ans'"
[[ "$ecs" == "CLIENT-SUBNET: 127.0.2.0/24/24" ]] ||
    fail "unbound should return ECS 127.0.2.0/24 with scope /24; got '$ecs'"

wait_s="$(bound $FALL)"
say "STEP 6: g1's health target fails; wait ${wait_s}s (interval x fall + timeout + TTL + 2s)"
touch "$TMP/g1.down"
say "  GET http://127.0.0.11:8080/hc -> $(nx python3 -c '
import urllib.request, urllib.error
try:
    r = urllib.request.urlopen("http://127.0.0.11:8080/hc", timeout=2)
    print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())')"
sleep "$wait_s"
gslb_log 'target g1 .*DOWN' || true
say "  region one fails over to its fallback, region two; region two is unchanged"
expect_resolve 127.0.1.5 198.51.100.2 4 "failover of region one through unbound"
expect_resolve 127.0.2.5 198.51.100.2 2 "region two while g1 is down"

wait_s="$(bound $RISE)"
say "STEP 7: g1's health target recovers; wait ${wait_s}s (interval x rise + timeout + TTL + 2s)"
rm -f "$TMP/g1.down"
sleep "$wait_s"
gslb_log 'target g1 .*UP' || true
expect_resolve 127.0.1.5 198.51.100.1 4 "recovery of region one through unbound"
expect_resolve 127.0.2.5 198.51.100.2 2 "region two after g1's recovery"

# A client in no region: its ECS places it nowhere, so gslb answers every endpoint. The
# answer must not be cached for clients that are in a region (RFC 7871 §7.3.1: a
# resolver reuses an answer for every client inside ADDRESS/SCOPE; SCOPE 0 means "for
# everyone").
wait_s="$(bound 0)"
say "STEP 8: a client in no region (127.0.0.9) through the resolver, then region clients within the TTL (caches drained ${wait_s}s first)"
sleep "$wait_s"
got="$(resolve 127.0.0.9)"
say "  dig -b 127.0.0.9 @127.0.0.4 $NAME A +short -> $got"
[[ "$got" == "198.51.100.1 198.51.100.2" ]] ||
    fail "a client in no region should get both gateways through unbound; got '$got'"
got1="$(resolve 127.0.1.5)"
say "  dig -b 127.0.1.5 @127.0.0.4 $NAME A +short -> $got1"
got2="$(resolve 127.0.2.5)"
say "  dig -b 127.0.2.5 @127.0.0.4 $NAME A +short -> $got2"
scope0="$(grep -oE 'answer has edns subnet 127\.0\.0\.0/24 scope /[0-9]+' "$ULOG" | tail -n 1)"
say "  unbound's log for the no-region client's query: ${scope0:-<none>}"
[[ "$got1" == 198.51.100.1 && "$got2" == 198.51.100.2 ]] ||
    fail "the no-region answer (${scope0:-?}) was reused for region clients: got '$got1' and '$got2'"
say "  region clients kept their own answers: gslb scoped the no-region answer short of every region network"

say "PASS: locality and regional failover work through a real resolver (unbound + ECS, delegated by nsd)"
