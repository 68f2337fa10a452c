# shellcheck shell=bash
# faultproxy.sh: sourced after lib.sh by tests that put tests/integration/faultproxy.py (a
# fault-injecting reverse proxy for tests only) in front of a registry.
#   start_proxy NAME UPSTREAM_URL PROXY-ARGS...  -> NAME_PORT NAME_REG NAME_LOG NAME_PID
#   stop_proxy NAME
# Proxies are stopped by pid, at exit too (before lib.sh's own cleanup).

FP_SCRIPT=$CS_SRCDIR/tests/integration/faultproxy.py
FP_PY=/usr/bin/python3 # not a pyenv shim: those take 0.3 s to start
[[ -x $FP_PY ]] || FP_PY=$(command -v python3) || skip "python3 not installed"
[[ -f $FP_SCRIPT ]] || fail "$FP_SCRIPT missing"

FP_PIDS=()
start_proxy() { # NAME UPSTREAM_URL PROXY-ARGS...
    local name=$1 upstream=$2 pid port="" i
    shift 2
    : >"$WORK/$name.out" # before the child's redirection does it, for the sed below
    "$FP_PY" "$FP_SCRIPT" --listen-port 0 --upstream "$upstream" --log "$WORK/$name.log" \
        "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    pid=$!
    FP_PIDS+=("$pid")
    for ((i = 0; i < 200; i++)); do
        port=$(sed -n 's/^PORT=//p' "$WORK/$name.out")
        [[ -n $port ]] && break
        kill -0 "$pid" 2>/dev/null || fail "faultproxy $name died: $(cat "$WORK/$name.err")"
        sleep 0.05
    done
    [[ -n $port ]] || fail "faultproxy $name printed no port"
    eval "${name}_PORT=$port ${name}_REG=127.0.0.1:$port ${name}_PID=$pid"
    eval "${name}_LOG=\$WORK/$name.log"
}

stop_proxy() { # NAME
    local v=${1}_PID
    kill "${!v}" 2>/dev/null || true
    wait "${!v}" 2>/dev/null || true
}

fp_on_exit() {
    local rc=$? pid
    set +e
    for pid in "${FP_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    (exit "$rc")
    cs_on_exit
}
trap fp_on_exit EXIT
