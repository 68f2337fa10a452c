# shellcheck shell=bash
# lib.sh: sourced by every integration test, first thing:
#     . "$CS_SRCDIR/tests/integration/lib.sh"
#
# Input (`make check` sets the first two; the defaults let a test run by hand):
#   CS_SRCDIR    the source tree (default: two levels above this file)
#   CACHESYNC    the binary under test (default: $CS_SRCDIR/cachesync)
#   CS_KEEP=1    keep $WORK and the environments' files (logs, data) after the test
#   CS_NO_SKIP=1 make a missing prerequisite (tool, root) a failure instead of a skip (CI)
#
# Set here:
#   WORK           per-test scratch dir, short (/tmp/cs-XXXXXX); removed at exit unless CS_KEEP=1
#   DOCKER_CONFIG  $WORK/docker-config, exported: `docker login` and cachesync share it and
#                  ~/.docker is never read. DOCKER_HOST, DOCKER_CONTEXT, DOCKER_TLS_VERIFY and
#                  DOCKER_CERT_PATH are unset: every daemon is named explicitly.
#   CS_DOCKER      Debian's 20.10 client /usr/bin/docker (BuildKit built in), never
#                  /usr/local/bin/docker (a newer client without buildx that refuses BuildKit).
#
# Environments. NAME is a shell identifier, unique within the test; its files are in $WORK/NAME.
# Each start_* sets NAME_ + every variable `scripts/testenv` prints, plus NAME_PID and NAME_DIR:
#   start_registry NAME [--htpasswd USER:PASS] [--tls]
#                       [--token [--anonymous-pull REGEX] [--token-expires-in N]
#                                [--identity-tokens]]
#       NAME_REG         127.0.0.1:PORT (what goes into image references)
#       NAME_REG_URL     http://127.0.0.1:PORT or https://...
#       NAME_REG_SCHEME  http | https
#       NAME_REG_PID, NAME_PID, NAME_REG_DIR, NAME_DIR
#       NAME_REG_CA      CA certificate (--tls; server cert for IP:127.0.0.1 and DNS:localhost)
#       NAME_REG_USER, NAME_REG_PASS  (--htpasswd; with --token, the token server's user)
#       NAME_REG_TOKEN_URL  (--token) the realm: http(s)://127.0.0.1:PORT/token of
#                        tests/integration/tokenserver.py (service "cachesync-test"; https with
#                        the registry's certificate under --tls); anonymous tokens grant pull on
#                        the repositories matching --anonymous-pull only; with --identity-tokens
#                        `docker login` stores an identitytoken instead of the password
#       NAME_REG_TOKEN_LOG  (--token) its log, one line per request and never a secret, e.g.
#                        "TIME GET /token status=200 authorization=basic user=alice
#                        service=cachesync-test scope=repository:a/b:pull
#                        granted=repository:a/b:pull token=sha256:<12 hex>"
#   start_dockerd NAME
#       NAME_DOCKER_HOST unix://.../docker.sock
#       NAME_DOCKERD_PID, NAME_PID, NAME_DOCKERD_DIR, NAME_DIR
#   stop_env NAME        stop one environment now (e.g. the registry, to prove a build no
#                        longer needs it); all still running are stopped at exit
# Docker:
#   docker_cli NAME ARGS...          /usr/bin/docker against daemon NAME, DOCKER_BUILDKIT=1
#   make_base_image NAME [TAG]       busybox image from /bin/busybox (default localbase:1)
#   build_image NAME CONTEXT TAG [ARGS...]
#                                    BuildKit build, --network=none, inline cache; log in
#                                    $WORK/build-N.log, path in BUILD_LOG; shown on failure
# Results:
#   pass MSG | fail MSG | skip MSG (exit 77)
#   assert_eq ACTUAL EXPECTED MSG
#   assert_exit CODE MSG -- CMD ARGS...   stdout in $WORK/out, stderr in $WORK/err
#   assert_contains FILE REGEX MSG  |  assert_not_contains FILE REGEX MSG   (grep -E)
#   assert_cached BUILD_LOG STEP MSG | assert_not_cached BUILD_LOG STEP MSG  (BuildKit plain
#                                    progress: STEP is the Dockerfile line as BuildKit prints it)
# At exit the script prints "N passed, N failed".
# A test sets the NAME_* variables through eval; put this under its shebang for shellcheck:
#     # shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd

set -euo pipefail
export LC_ALL=C

: "${CS_SRCDIR:=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${CACHESYNC:=$CS_SRCDIR/cachesync}"
export CS_SRCDIR CACHESYNC
CS_DOCKER=${CS_DOCKER_CLI:-/usr/bin/docker}
CS_TESTENV=$CS_SRCDIR/scripts/testenv

unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH

cs_base=${TMPDIR:-/tmp}
# dockerd's unix sockets live under $WORK; keep the path short.
((${#cs_base} <= 30)) || cs_base=/tmp
WORK=$(mktemp -d "$cs_base/cs-XXXXXX")
unset cs_base
export WORK
export DOCKER_CONFIG=$WORK/docker-config
mkdir -p "$DOCKER_CONFIG"

CS_PASSED=0
CS_FAILED=0
CS_BUILDS=0
CS_ENVS=()      # names of the environments started, in order
CS_ERR_LINE=""  # where the last unhandled command failed
CS_ERR_CMD=""
CS_TEST_NAME=${0##*/}

# ---- results ----------------------------------------------------------------------------------

pass() {
    CS_PASSED=$((CS_PASSED + 1))
    printf 'ok - %s\n' "$*"
}

fail() {
    CS_FAILED=$((CS_FAILED + 1))
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

skip() {
    if [[ ${CS_NO_SKIP:-0} == 1 ]]; then
        fail "prerequisite missing (CS_NO_SKIP=1): $*"
    fi
    printf 'SKIP: %s\n' "$*" >&2
    exit 77
}

assert_eq() { # ACTUAL EXPECTED MSG
    if [[ $1 == "$2" ]]; then
        pass "$3"
    else
        fail "$3: got '$1', expected '$2'"
    fi
}

assert_exit() { # CODE MSG -- CMD ARGS...
    local want=$1 msg=$2 rc=0
    shift 2
    [[ ${1:-} == -- ]] && shift
    (($#)) || fail "assert_exit: no command given"
    "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    if [[ $rc == "$want" ]]; then
        pass "$msg"
    else
        {
            printf '# command: %s\n' "$*"
            printf '# stdout (last 20 lines):\n'
            tail -n 20 "$WORK/out" | sed 's/^/#   /'
            printf '# stderr (last 20 lines):\n'
            tail -n 20 "$WORK/err" | sed 's/^/#   /'
        } >&2
        fail "$msg: exit status $rc, expected $want"
    fi
}

assert_contains() { # FILE REGEX MSG
    if grep -Eq -- "$2" "$1" 2>/dev/null; then
        pass "$3"
    else
        printf '# %s (last 20 lines) does not match /%s/:\n' "$1" "$2" >&2
        tail -n 20 "$1" 2>/dev/null | sed 's/^/#   /' >&2 || true
        fail "$3"
    fi
}

assert_not_contains() { # FILE REGEX MSG
    if ! grep -Eq -- "$2" "$1" 2>/dev/null; then
        pass "$3"
    else
        printf '# %s matches /%s/:\n' "$1" "$2" >&2
        grep -En -- "$2" "$1" | head -n 10 | sed 's/^/#   /' >&2
        fail "$3"
    fi
}

# BuildKit plain progress: "#7 [2/5] COPY deps.txt /deps.txt" ... "#7 CACHED".
cs_step_cached() { # LOG STEP -> 0 if STEP's vertex says CACHED
    local n
    n=$(grep -F "] $2" "$1" | head -n 1 | sed -n 's/^#\([0-9]*\) .*/\1/p')
    [[ -n $n ]] || return 2
    grep -qx "#$n CACHED" "$1"
}

assert_cached() { # LOG STEP MSG
    local rc=0
    cs_step_cached "$1" "$2" || rc=$?
    ((rc == 0)) && { pass "$3"; return 0; }
    sed 's/^/#   /' "$1" >&2
    ((rc == 2)) && fail "$3: step '$2' is not in the build log"
    fail "$3: step '$2' was not CACHED"
}

assert_not_cached() { # LOG STEP MSG
    local rc=0
    cs_step_cached "$1" "$2" || rc=$?
    ((rc == 1)) && { pass "$3"; return 0; }
    sed 's/^/#   /' "$1" >&2
    ((rc == 2)) && fail "$3: step '$2' is not in the build log"
    fail "$3: step '$2' was CACHED"
}

# ---- environments -----------------------------------------------------------------------------

cs_check_name() {
    [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || fail "environment name '$1' is not a shell identifier"
    [[ ! -e $WORK/$1 ]] || fail "environment name '$1' used twice"
}

cs_need() { # COMMAND...
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || skip "$c not installed (run scripts/setup)"
    done
}

# Run testenv and set NAME_KEY for each KEY=VALUE it prints (values come %q-quoted).
cs_start() { # NAME PIDVAR DIRVAR testenv-args...
    local name=$1 pidvar=$2 dirvar=$3 out line rc=0
    shift 3
    CS_ENVS+=("$name")
    out=$(bash "$CS_TESTENV" "$@") || rc=$?
    ((rc == 0)) || fail "testenv $1 $name failed (exit $rc)"
    while IFS= read -r line; do
        [[ $line =~ ^[A-Z_]+= ]] || fail "testenv printed an unexpected line: $line"
        eval "${name}_$line"
    done <<<"$out"
    eval "${name}_PID=\${${name}_${pidvar}}"
    eval "${name}_DIR=\${${name}_${dirvar}}"
}

start_registry() { # NAME [--htpasswd USER:PASS] [--tls] [--token ...]
    local name=$1 a
    shift
    cs_check_name "$name"
    cs_need docker-registry curl
    for a in "$@"; do
        case $a in
        --tls) cs_need openssl ;;
        --htpasswd*) cs_need htpasswd ;;
        --token) cs_need openssl python3 ;;
        esac
    done
    cs_start "$name" REG_PID REG_DIR registry "$WORK/$name" "$@"
}

start_dockerd() { # NAME
    local name=$1
    cs_check_name "$name"
    [[ $(id -u) == 0 ]] || skip "dockerd needs root"
    cs_need dockerd
    [[ -x $CS_DOCKER ]] || skip "$CS_DOCKER missing (docker.io)"
    cs_start "$name" DOCKERD_PID DOCKERD_DIR dockerd "$WORK/$name"
}

stop_env() { # NAME
    local name=$1 i keep=()
    [[ ${CS_KEEP:-0} == 1 ]] && keep=(--keep)
    bash "$CS_TESTENV" stop "${keep[@]}" "$WORK/$name" || true
    for i in "${!CS_ENVS[@]}"; do
        [[ ${CS_ENVS[$i]} == "$name" ]] && unset 'CS_ENVS[i]'
    done
    return 0
}

cs_docker_host() { # NAME -> cs_host=NAME_DOCKER_HOST
    local v=${1}_DOCKER_HOST
    [[ -n ${!v:-} ]] || fail "no dockerd named '$1' (start_dockerd $1 first)"
    cs_host=${!v}
}

docker_cli() { # NAME ARGS...
    local cs_host
    cs_docker_host "$1"
    shift
    DOCKER_BUILDKIT=1 "$CS_DOCKER" -H "$cs_host" "$@"
}

make_base_image() { # NAME [TAG]
    local cs_host
    cs_docker_host "$1"
    bash "$CS_TESTENV" base-image "$cs_host" "${2:-localbase:1}" ||
        fail "could not make base image ${2:-localbase:1} on $1"
}

build_image() { # NAME CONTEXT_DIR TAG [docker build args...]
    local name=$1 ctx=$2 tag=$3 cs_host rc=0
    shift 3
    cs_docker_host "$name"
    CS_BUILDS=$((CS_BUILDS + 1))
    BUILD_LOG=$WORK/build-$CS_BUILDS.log
    DOCKER_BUILDKIT=1 "$CS_DOCKER" -H "$cs_host" build --progress=plain --network=none \
        --build-arg BUILDKIT_INLINE_CACHE=1 -t "$tag" "$@" "$ctx" >"$BUILD_LOG" 2>&1 || rc=$?
    if ((rc != 0)); then
        sed 's/^/#   /' "$BUILD_LOG" >&2
        fail "docker build of $tag on $name failed (exit $rc, log $BUILD_LOG)"
    fi
}

# ---- exit -------------------------------------------------------------------------------------

cs_on_exit() {
    local rc=$? name dir pids=() keep=()
    trap - EXIT INT TERM HUP
    set +e
    if ((rc == 129 || rc == 130 || rc == 143)); then
        CS_FAILED=$((CS_FAILED + 1))
        printf 'FAIL: %s: interrupted by signal %s\n' "$CS_TEST_NAME" $((rc - 128)) >&2
    elif ((rc != 0 && rc != 77 && CS_FAILED == 0)); then
        # set -e stopped the script outside an assertion.
        CS_FAILED=$((CS_FAILED + 1))
        printf 'FAIL: %s: exit status %s%s\n' "$CS_TEST_NAME" "$rc" \
            "${CS_ERR_LINE:+ after line $CS_ERR_LINE: $CS_ERR_CMD}" >&2
    fi
    if ((rc != 0 && rc != 77)); then
        for name in "${CS_ENVS[@]}"; do
            dir=$WORK/$name
            [[ -f $dir/log ]] || continue
            printf '# last lines of %s:\n' "$dir/log" >&2
            tail -n 12 "$dir/log" | cut -c1-240 | sed 's/^/#   /' >&2
        done
    fi
    [[ ${CS_KEEP:-0} == 1 ]] && keep=(--keep)
    for name in "${CS_ENVS[@]}"; do
        bash "$CS_TESTENV" stop "${keep[@]}" "$WORK/$name" &
        pids+=($!)
    done
    ((${#pids[@]})) && wait "${pids[@]}"
    if [[ ${CS_KEEP:-0} == 1 ]]; then
        printf '# CS_KEEP=1: kept %s\n' "$WORK" >&2
    else
        rm -rf --one-file-system -- "$WORK"
    fi
    printf '%s passed, %s failed\n' "$CS_PASSED" "$CS_FAILED"
    exit "$rc"
}

trap 'CS_ERR_LINE=$LINENO; CS_ERR_CMD=$BASH_COMMAND' ERR
trap cs_on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
