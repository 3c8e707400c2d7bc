#!/usr/bin/env bash
# RQ's own test suite (from the sdist of the installed RQ, unmodified), run in a private
# network namespace with a throwaway redis-server: with RQ's SimpleWorker, then with the
# project's lean worker in its place. Prints both counts and the tests whose outcome
# differs (each re-run RQ_SUITE_RECHECK more times in both modes, to tell a flaky test
# from a real difference); writes them to tools/rq_suite/last-run.txt. See README.md.
#
#   tools/rq_suite/run.sh                                   # modes "rq lean"
#   RQ_SUITE_MODES="rq lean lean-core" tools/rq_suite/run.sh
#   RQ_SUITE_K="test_retry or test_rate_limit" tools/rq_suite/run.sh   # a subset (-k)
#   RQ_SUITE_REF=ced8251 tools/rq_suite/run.sh   # a commit's queuing/, not the working tree's
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
MODES=${RQ_SUITE_MODES:-rq lean}
CACHE=${RQ_SUITE_CACHE:-/tmp/rq-suite-cache}
VENV=${RQ_SUITE_VENV:-/tmp/rq-suite-venv}
WORK=${RQ_SUITE_WORK:-/tmp/rq-suite-work}
RUN_TIMEOUT=${RQ_SUITE_TIMEOUT:-600}      # seconds for one whole run of the suite
PER_TEST=${RQ_SUITE_PER_TEST:-90}         # seconds for one test (pytest-timeout)
RECHECK=${RQ_SUITE_RECHECK:-2}            # re-runs of each differing test, in each mode
OUT=${RQ_SUITE_OUT:-$HERE/last-run.txt}

main() {
    for tool in redis-server redis-cli unshare ip timeout; do
        command -v "$tool" >/dev/null || { echo "rq_suite: $tool is not on PATH" >&2; exit 2; }
    done
    # A network namespace of its own (its own 127.0.0.1:6379), and a PID namespace whose
    # end ends whatever the tests left running.
    NS=(unshare --net --pid --kill-child --mount-proc)
    [ "$(id -u)" = 0 ] || NS+=(--map-root-user)
    HOST_NETNS=$(readlink /proc/self/ns/net)

    # The RQ version the project runs.
    RQ_VERSION=${RQ_SUITE_RQ_VERSION:-$("$REPO/.venv/bin/python" -c 'import rq; print(rq.__version__)' 2>/dev/null || echo 3.0.0)}
    PY=$(command -v python3.11 || command -v python3)

    # 1. RQ's sdist (its tests/), once.
    mkdir -p "$CACHE"
    SDIST="$CACHE/rq-$RQ_VERSION.tar.gz"
    if [ ! -s "$SDIST" ]; then
        "$PY" -m pip download "rq==$RQ_VERSION" --no-binary :all: --no-deps -d "$CACHE" -q
    fi
    [ -s "$SDIST" ] || { echo "rq_suite: no sdist $SDIST" >&2; exit 2; }

    # 2. A venv of its own: RQ + its test deps + the project's runtime deps (the project
    # itself comes from the working tree, on PYTHONPATH). /work/main/.venv is not touched.
    REQS=("rq==$RQ_VERSION" pytest psutil pytest-timeout "redis[hiredis]>=5.0,<9" "flask>=3.0,<4"
          "twilio>=9,<10" python-dotenv requests "honcho>=2.0" "rq-dashboard>=0.8" six
          "granian>=2.8,<3")
    if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.rq_suite_reqs" 2>/dev/null)" != "${REQS[*]}" ]; then
        rm -rf "$VENV"
        "$PY" -m venv "$VENV"
        "$VENV/bin/pip" install -q "${REQS[@]}"
        echo "${REQS[*]}" >"$VENV/.rq_suite_reqs"
    fi

    # 3. A fresh copy of the sdist without its rq/ (so RQ is the venv's installed one), a
    # folder holding only a copy of the working tree's queuing package (not /work/main
    # itself: its tests/ package would shadow RQ's), and copies of this folder's scripts
    # (editing them during a run does not change the run).
    rm -rf "$WORK"
    mkdir -p "$WORK/pkg" "$WORK/records" "$WORK/harness"
    tar xzf "$SDIST" -C "$WORK"
    SRC="$WORK/rq-$RQ_VERSION"
    rm -rf "$SRC/rq"
    # queuing/ as the working tree has it now, copied: every run of this invocation tests
    # the same code even while someone edits the tree.
    # RQ_SUITE_REF=<commit>: that commit's queuing/ instead (git archive: reads objects only).
    if [ -n "${RQ_SUITE_REF:-}" ]; then
        COMMIT=$(git -C "$REPO" rev-parse --short "$RQ_SUITE_REF^{commit}")
        DIRTY=0
        git -C "$REPO" archive "$COMMIT" queuing | tar x -C "$WORK/pkg"
    else
        COMMIT=$(git -C "$REPO" rev-parse --short HEAD)
        DIRTY=$(git -C "$REPO" status --porcelain -- queuing | wc -l)
        cp -r "$REPO/queuing" "$WORK/pkg/queuing"
    fi
    find "$WORK/pkg/queuing" -name __pycache__ -prune -exec rm -rf {} +
    SNAPSHOT=$(cd "$WORK/pkg" && find queuing -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)
    cp -r "$HERE/inside.sh" "$HERE/compare.py" "$HERE/site" "$WORK/harness/"
    export PYTHONPATH="$WORK/pkg:$WORK/harness/site"
    export PATH="$VENV/bin:$PATH"
    unset RQ_SUITE_WORKER RQ_SUITE_TESTS REDIS_URL TEST_REDIS_URL RUN_SLOW_TESTS_TOO RUN_SSL_TESTS

    ARGS=()
    for mode in $MODES; do
        suite "$mode" "$WORK/records/$mode"
        ARGS+=("$mode=$WORK/records/$mode.jsonl:$LAST_RC:$LAST_SECS")
    done
    compare() {
        "$VENV/bin/python" "$WORK/harness/compare.py" --commit "$COMMIT" --dirty "$DIRTY" \
            --snapshot "$SNAPSHOT" --rq "$RQ_VERSION" "$@" "${ARGS[@]}"
    }
    # 4. Each test whose outcome differs, again RECHECK times in every mode.
    compare --out /dev/null --differing "$WORK/records/differing.txt" >/dev/null
    if [ "$RECHECK" -gt 0 ] && [ -s "$WORK/records/differing.txt" ]; then
        for round in $(seq 1 "$RECHECK"); do
            for mode in $MODES; do
                RQ_SUITE_TESTS="$WORK/records/differing.txt" suite "$mode" "$WORK/records/$mode.re$round"
                ARGS+=("--recheck" "$mode=$WORK/records/$mode.re$round.jsonl")
            done
        done
    fi
    compare --out "$OUT"
}

# suite MODE STEM: one run of the suite (or of $RQ_SUITE_TESTS) in its own namespaces.
suite() {
    local mode=$1 record=$2.jsonl log=$2.log start
    : >"$record"; : >"$log"
    echo "rq_suite: mode '$mode'${RQ_SUITE_TESTS:+ (re-check)} (log: $log)"
    start=$(date +%s)
    set +e
    timeout -k 15 "$RUN_TIMEOUT" "${NS[@]}" bash "$WORK/harness/inside.sh" "$HOST_NETNS" \
        "$mode" "$SRC" "$record" "$log" "$PER_TEST"
    LAST_RC=$?
    set -e
    LAST_SECS=$(( $(date +%s) - start ))
    if [ "$LAST_RC" = 99 ]; then
        tail -5 "$log"; echo "rq_suite: aborted (safety check)" >&2; exit 99
    fi
    [ "$LAST_RC" = 124 ] && echo "rq_suite: mode '$mode' cut at ${RUN_TIMEOUT}s" | tee -a "$log"
    grep -E '^[0-9]+ (passed|failed)|^rq_suite: (pytest|mode)' "$log" | tail -2 || true
}

main "$@"
exit $?
