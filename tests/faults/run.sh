#!/usr/bin/env bash
# run.sh: the fault campaign (issue #7): every tests/faults/test_*.sh (or the ones named), one
# after the other, each one's summary line and duration, a total, and the figures the tests
# recorded (kills survived per operation, faults injected per kind and what came of them).
#
#   tests/faults/run.sh [-v] [TEST...]        TEST: test_kill.sh, kill, ...
#
# Environment: CACHESYNC (default: the cachesync binary in the source tree), CS_SRCDIR,
# FAULTS_SEED (one seed for every test: replays a campaign), FAULTS_KILLS, CS_KEEP, CS_NO_SKIP
# (see tests/integration/lib.sh). -v shows each test's whole output, else only its failures.
# Logs: $FAULTS_LOGDIR (default /tmp/cs-faults-logs). Exit status 1 if any test failed.
set -uo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
: "${CS_SRCDIR:=$(cd -- "$here/../.." && pwd)}"
: "${CACHESYNC:=$CS_SRCDIR/cachesync}"
export CS_SRCDIR CACHESYNC
verbose=0
if [[ ${1:-} == -v ]]; then
    verbose=1
    shift
fi
tests=()
if (($#)); then
    for t in "$@"; do
        t=${t##*/}
        [[ $t == test_* ]] || t=test_$t
        [[ $t == *.sh ]] || t=$t.sh
        [[ -f $here/$t ]] || {
            echo "run.sh: no $here/$t" >&2
            exit 2
        }
        tests+=("$t")
    done
else
    for t in "$here"/test_*.sh; do tests+=("${t##*/}"); done
fi
[[ -x $CACHESYNC ]] || {
    echo "run.sh: $CACHESYNC is not built" >&2
    exit 2
}
logdir=${FAULTS_LOGDIR:-/tmp/cs-faults-logs}
mkdir -p "$logdir"
rm -f "$logdir"/*.figures
if [[ -n ${FAULTS_SEED:-} ]]; then
    export FAULTS_SEED
    echo "# FAULTS_SEED=$FAULTS_SEED for every test"
fi

passed=0 failed=0 status=0 t_all=$SECONDS
lines=()
for t in "${tests[@]}"; do
    log=$logdir/${t%.sh}.log
    t0=$SECONDS
    rc=0
    FAULTS_FIGURES=$logdir/${t%.sh}.figures bash "$here/$t" >"$log" 2>&1 || rc=$?
    secs=$((SECONDS - t0))
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    [[ -n $summary ]] || summary="0 passed, 1 failed"
    p=${summary%% passed*} f=${summary#*passed, } f=${f%% failed*}
    if ((rc == 77)); then
        summary="skipped: $(grep -m1 '^SKIP' "$log")"
    elif ((rc != 0)); then
        status=1
        ((f == 0)) && f=1
    fi
    passed=$((passed + p)) failed=$((failed + f))
    line=$(printf '%-20s %-40s %4d s' "$t" "$summary" "$secs")
    lines+=("$line")
    echo "$line"
    grep -E '^(# seed|kills survived|SKIP)' "$log" | sed 's/^/    /'
    if ((verbose)); then
        sed 's/^/    | /' "$log"
    elif ((rc != 0 && rc != 77)); then
        grep -E '^(FAIL|#   err|# stderr)' "$log" | head -n 20 | sed 's/^/    | /'
        echo "    (whole log: $log)"
    fi
done
echo "total: $passed passed, $failed failed ($((SECONDS - t_all)) s)"

# ---- figures ----------------------------------------------------------------------------------
# Each test appended "KEY VALUE" lines; the same key from several places adds up.
figs=$(cat "$logdir"/*.figures 2>/dev/null | awk 'NF == 2 { s[$1] += $2 } END { for (k in s) print k, s[k] }' | sort)
[[ -n $figs ]] || exit $status
get() { awk -v k="$1" '$1 == k { print $2 }' <<<"$figs"; }
echo
echo "## Figures (for the README's Reliability section)"
total=$(get kill.per-op.total)
if [[ -n $total ]]; then
    echo
    echo "kill -9 at random points, then the same command again:"
    printf '| operation | kills | re-run completed, store verified, nothing partial |\n|---|---|---|\n'
    for op in pull-store:"pull --to store" pull-docker:"pull into Docker" push:"push from Docker"; do
        printf '| %s | %s | %s/%s |\n' "${op#*:}" "$total" "$(get "kill.${op%%:*}.survived")" "$total"
    done
    ph=$(awk '$1 ~ /^kill\.phase\./ { sub("kill.phase.", "", $1); printf "%s%s=%s", sep, $1, $2; sep=", " }' <<<"$figs")
    [[ -n $ph ]] && echo "where the kills landed: $ph"
fi
echo
echo "faults injected (by tests/integration/faultproxy.py, per kind):"
awk '$1 ~ /^injected\./ { sub("injected.", "", $1); printf "  %-22s %s\n", $1, $2 }' <<<"$figs"
echo
echo "cases per test and outcome (exitN: cachesync's exit status):"
printf '| case | outcome | count |\n|---|---|---|\n'
awk '$1 !~ /^(kill|injected)\./ {
        k = $1; o = k; sub(/.*\./, "", o); sub(/\.[^.]*$/, "", k)
        printf "| %s | %s | %s |\n", k, o, $2 }' <<<"$figs"
exit $status
