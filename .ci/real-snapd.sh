#!/usr/bin/env bash
# Runs e2e/tests/real_snapd.rs (package microsample-e2e) against Debian's real snapd and
# `snap` CLI (not our fakes): installs the `snapd` package with apt, starts
# /usr/lib/snapd/snapd by hand (no systemd needed) on /run/snapd.socket with a fresh state,
# waits until it is seeded, runs
# `cargo test -p microsample-e2e --test real_snapd -- --ignored --test-threads=1`, and
# always stops the daemon it started, by PID. Facts behind each step: docs/snapd-api.md#versions and the comments below.
#
# Needs root (snapd only accepts installs/removals from root) and apt-get. When snapd cannot
# be installed, started or reached, this fails loudly; it never skips. Environment:
# MICROSAMPLE_DISPATCH (passed to the tests: the dispatch under test), SNAPD_READY_TIMEOUT
# (seconds to wait for readiness, default 60).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"
export CARGO_TERM_COLOR=never

SOCKET=/run/snapd.socket
DAEMON=/usr/lib/snapd/snapd
READY_TIMEOUT=${SNAPD_READY_TIMEOUT:-60}
SNAPD_PID=

t0=$SECONDS
log() { printf '[real-snapd t+%ds] %s\n' "$((SECONDS - t0))" "$*"; }
die() {
    printf '\n*** REAL SNAPD TESTS FAILED: %s ***\n\n' "$*" >&2
    exit 1
}

logs=$(mktemp -d "${TMPDIR:-/tmp}/real-snapd.XXXXXX")

show_daemon_logs() {
    for f in snapd.log snapd.stdout; do
        if [ -s "$logs/$f" ]; then
            printf -- '--- %s ---\n' "$f" >&2
            tail -n 50 "$logs/$f" >&2
        fi
    done
}

# Stops the daemon this script started (only that PID) and reports how it ended.
stop_daemon() {
    local rc=$?
    if [ -n "$SNAPD_PID" ]; then
        if kill -0 "$SNAPD_PID" 2>/dev/null; then
            kill -TERM "$SNAPD_PID" 2>/dev/null || true
            local i
            for i in $(seq 1 100); do
                kill -0 "$SNAPD_PID" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$SNAPD_PID" 2>/dev/null; then
                log "snapd (pid $SNAPD_PID) ignored SIGTERM for 10 s; sending SIGKILL"
                kill -KILL "$SNAPD_PID" 2>/dev/null || true
            fi
        fi
        local snapd_rc=0
        wait "$SNAPD_PID" 2>/dev/null || snapd_rc=$?
        log "stopped snapd (pid $SNAPD_PID), exit status $snapd_rc"
        SNAPD_PID=
    fi
    if [ "$rc" -ne 0 ]; then
        show_daemon_logs
        log "logs kept in $logs"
    else
        rm -rf "$logs"
    fi
    log "done in $((SECONDS - t0))s"
}
trap stop_daemon EXIT

answers() {
    curl -sf --max-time 5 --unix-socket "$SOCKET" "http://localhost$1" 2>/dev/null
}

[ "$(id -u)" = 0 ] ||
    die "must run as root (uid $(id -u)): snapd refuses installs and removals from other users (401 login-required), and apt needs root"
command -v apt-get >/dev/null || die "apt-get not found: this needs Debian's snapd package"

log "apt-get update; apt-get install -y snapd curl"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >"$logs/apt.log" 2>&1 || { cat "$logs/apt.log" >&2; die "apt-get update failed"; }
apt-get install -y -qq snapd curl >>"$logs/apt.log" 2>&1 ||
    { tail -n 30 "$logs/apt.log" >&2; die "apt-get install snapd failed"; }
[ -x "$DAEMON" ] || die "$DAEMON missing after installing snapd"
[ -x /usr/bin/snap ] || die "/usr/bin/snap missing after installing snapd"
log "installed: $(head -n1 /usr/lib/snapd/info 2>/dev/null || echo 'snapd (no /usr/lib/snapd/info)')"

log "cargo test -p microsample-e2e --test real_snapd --no-run"
cargo test -p microsample-e2e --test real_snapd --no-run

# A snapd we did not start (systemd, a previous run) would make a second one wait 60 s on
# the state lock and then fail, and its state is not fresh: refuse rather than guess.
if answers /v2/system-info >/dev/null; then
    die "a snapd not started by this script already answers on $SOCKET; stop it first"
fi

# A fresh state each run (re-seeds in < 0.3 s). SNAPD_STANDBY_WAIT is mandatory: without
# it snapd exits (status 42) about 5 s after start when it is seeded, has no snaps and no
# client is connected.
rm -f /var/lib/snapd/state.json /var/lib/snapd/maintenance.json
log "starting $DAEMON (SNAPD_STANDBY_WAIT=24h)"
SNAPD_STANDBY_WAIT=24h "$DAEMON" >"$logs/snapd.stdout" 2>"$logs/snapd.log" &
SNAPD_PID=$!

# Ready = the API answers and seeding finished (normally < 0.3 s). The socket file exists
# a few ms before the server answers, so poll an endpoint, not the file.
start=$SECONDS
until answers '/v2/snaps/system/conf?keys=seed.loaded' | grep -q '"seed.loaded":true'; do
    kill -0 "$SNAPD_PID" 2>/dev/null || {
        snapd_rc=0
        wait "$SNAPD_PID" || snapd_rc=$?
        SNAPD_PID=
        die "snapd exited during startup with status $snapd_rc (logs below)"
    }
    [ $((SECONDS - start)) -lt "$READY_TIMEOUT" ] ||
        die "snapd (pid $SNAPD_PID) not answering and seeded on $SOCKET after ${READY_TIMEOUT}s"
    sleep 0.1
done
log "snapd (pid $SNAPD_PID) ready on $SOCKET: $(answers /v2/system-info | grep -o '"version":"[^"]*"')"

log "cargo test -p microsample-e2e --test real_snapd -- --ignored --test-threads=1"
test_rc=0
cargo test -p microsample-e2e --test real_snapd -- --ignored --test-threads=1 || test_rc=$?

# The daemon must have served the whole run: a test that passed against a dying daemon
# proves nothing.
kill -0 "$SNAPD_PID" 2>/dev/null || die "snapd (pid $SNAPD_PID) exited during the tests"
answers /v2/system-info >/dev/null || die "snapd (pid $SNAPD_PID) stopped answering on $SOCKET during the tests"
[ "$test_rc" -eq 0 ] || die "cargo test -p microsample-e2e --test real_snapd failed (exit $test_rc)"
log "all real-snapd tests passed"
