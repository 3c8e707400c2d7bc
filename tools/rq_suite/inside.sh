#!/usr/bin/env bash
# Runs INSIDE private network and PID namespaces (run.sh starts it with unshare, as the
# PID namespace's PID 1: when it exits, every process the tests left behind ends too):
# starts a throwaway redis-server on this namespace's 127.0.0.1:6379, proves that the
# 6379 it reaches is that server, then runs RQ's test suite against it.
#   inside.sh HOST_NETNS MODE SRC_DIR RECORD_FILE LOG_FILE PER_TEST_TIMEOUT
# HOST_NETNS: `readlink /proc/self/ns/net` as run.sh saw it, outside.
# Never run this outside a namespace: it refuses to (RQ's tests flush 6379's databases).
set -uo pipefail

die() { echo "rq_suite: ABORT: $*" | tee -a "${LOG:-/dev/null}" >&2; exit 99; }

main() {
    HOST_NETNS=$1 MODE=$2 SRC=$3 RECORD=$4 LOG=$5 PER_TEST=$6

    # 1. A network namespace of our own, not the caller's.
    [ -n "$HOST_NETNS" ] && [ "$(readlink /proc/self/ns/net)" != "$HOST_NETNS" ] \
        || die "not in a private network namespace (the same as the caller's, $HOST_NETNS)"
    ip link set lo up || die "cannot bring lo up"
    # 2. The harmless isolation test: nothing answers on 6379 here before our server.
    local out
    if out=$(redis-cli -h 127.0.0.1 -p 6379 INFO server 2>&1) && [[ $out == *redis_version* ]]; then
        die "something already answers on 127.0.0.1:6379 inside the namespace"
    fi
    # RQ's tests name a unix socket /tmp/redis.sock (a network namespace does not isolate
    # those); they only build a client for it, but refuse if anything is there.
    [ -e /tmp/redis.sock ] && die "/tmp/redis.sock exists; not ours"

    # 3. Our own server, in a folder of our own.
    RUNDIR=$(mktemp -d /tmp/rq-suite-redis.XXXXXX)
    redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --dir "$RUNDIR" \
        --daemonize no --logfile "$RUNDIR/redis.log" &
    REDIS_PID=$!
    trap 'kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; rm -rf "$RUNDIR"' EXIT
    for _ in $(seq 1 50); do
        [ "$(redis-cli -h 127.0.0.1 -p 6379 PING 2>/dev/null)" = PONG ] && break
        sleep 0.1
    done
    # 4. Proof that the 6379 we reach is that server: its pid, its dir, a token only it has.
    local info pid dir token got
    info=$(redis-cli -h 127.0.0.1 -p 6379 INFO server | tr -d '\r')
    pid=$(sed -n 's/^process_id://p' <<<"$info")
    dir=$(redis-cli -h 127.0.0.1 -p 6379 CONFIG GET dir | tr -d '\r' | sed -n 2p)
    token=$(cat /proc/sys/kernel/random/uuid)
    redis-cli -h 127.0.0.1 -p 6379 -n 15 SET rq_suite:token "$token" >/dev/null
    got=$(redis-cli -h 127.0.0.1 -p 6379 -n 15 GET rq_suite:token | tr -d '\r')
    [ "$pid" = "$REDIS_PID" ] || die "6379 answers as pid '$pid', not our redis-server $REDIS_PID"
    [ "$dir" = "$RUNDIR" ] || die "6379's dir is '$dir', not ours ($RUNDIR)"
    [ "$got" = "$token" ] || die "6379 does not hold the token we wrote"
    redis-cli -h 127.0.0.1 -p 6379 -n 15 DEL rq_suite:token >/dev/null
    echo "rq_suite: own redis-server pid $REDIS_PID, run_id $(sed -n 's/^run_id://p' <<<"$info"), dir $RUNDIR: verified" | tee -a "$LOG"

    # 5. RQ's suite: all of it, a -k subset, or the test ids in $RQ_SUITE_TESTS.
    cd "$SRC" || die "no $SRC"
    local select=(tests)
    [ -n "${RQ_SUITE_K:-}" ] && select+=(-k "$RQ_SUITE_K")
    [ -n "${RQ_SUITE_TESTS:-}" ] && mapfile -t select <"$RQ_SUITE_TESTS"
    RQ_SUITE_WORKER=$MODE RQ_SUITE_RECORD=$RECORD \
        python -m pytest -p rq_suite_record --timeout "$PER_TEST" -p no:cacheprovider \
        -q -rfE --no-header "${select[@]}" >>"$LOG" 2>&1
    local rc=$?
    echo "rq_suite: pytest exit $rc" >>"$LOG"
    return $rc
}

main "$@"
exit $?
