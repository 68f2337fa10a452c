# shellcheck shell=bash
# faultlib.sh: sourced by every tests/faults/test_*.sh, first thing:
#     . "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/faults/faultlib.sh"
# It sources tests/integration/lib.sh (WORK, environments, assertions, the final
# "N passed, N failed" line) and tests/integration/faultproxy.sh (start_proxy), then adds:
#
#   fl_seed                    seed bash's RANDOM from FAULTS_SEED (or a fresh one) and print it
#   rnd MAX                    R = a seeded random number in [0, MAX)
#   soft_fail MSG              count a failure and go on (lib.sh's fail stops the test);
#                              fl_finish exits 1 if there was any
#   figure KEY VALUE           one line "KEY VALUE" for the campaign's figures (tests/faults/run.sh
#                              sums them); written to $FAULTS_FIGURES when set
#   verify_store DIR [after-kill]
#                              0 if every blob under DIR/blobs/sha256 hashes to its name (through
#                              `cachesync store verify` when that command exists, else sha256sum)
#                              and no temp file is left outside DIR/partial/ (DIR/tmp/ included:
#                              call it when no cachesync runs on DIR; "after-kill" allows the
#                              work files a killed push leaves there); the problems, one
#                              per line, in $FL_VERIFY_OUT (default $WORK/verify.out)
#   assert_store_ok DIR MSG    verify_store as an assertion
#   run_cs OUT ERR ARGS...     run cachesync, RC = its exit status; never aborts the test
#   assert_clean_exit CODE MSG [-- CMD...]
#                              like assert_exit, and the command must not have died of a signal
#                              (exit >= 128) nor printed sanitizer reports
#   no_crash FILE              0 if FILE holds no AddressSanitizer/UBSan/LeakSanitizer report
#   restart_registry NAME [SECONDS_DOWN]
#                              stop registry NAME and start it again on the same port with the
#                              same storage (its config.yml), after SECONDS_DOWN (default 0)
#   regtool ARGS...            tests/faults/regtool.py (images and hostile inputs)
#   proxy_set NAME rate=N ...  change a running faultproxy's rates (rate, rate_up; 0: none)
#   daemon_ref_state DOCKERD REF IMAGE_ID
#                              prints absent | complete | partial:<why>: what the daemon holds
#                              under REF
#   took MSG                   "# MSG: N s since the test started"
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
# shellcheck disable=SC2034 # R, RC, ACCEPT_MANIFESTS: set here for the tests that source this

. "${CS_SRCDIR:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)}/tests/integration/lib.sh"
. "$CS_SRCDIR/tests/integration/faultproxy.sh"
cs_need jq curl sha256sum

FL_T0=$SECONDS
FL_REGTOOL=$CS_SRCDIR/tests/faults/regtool.py
FL_PY=/usr/bin/python3 # not a pyenv shim: those take 0.3 s to start
[[ -x $FL_PY ]] || FL_PY=$(command -v python3)

took() { printf '# %s: %s s\n' "$1" $((SECONDS - FL_T0)); }

fl_seed() {
    if [[ -z ${FAULTS_SEED:-} ]]; then
        FAULTS_SEED=$(($(od -An -N4 -tu4 /dev/urandom) % 1000000))
    fi
    [[ $FAULTS_SEED =~ ^[0-9]+$ ]] || fail "FAULTS_SEED must be a number, got '$FAULTS_SEED'"
    RANDOM=$FAULTS_SEED
    printf '# seed %s (replay: FAULTS_SEED=%s bash %s)\n' "$FAULTS_SEED" "$FAULTS_SEED" "$0"
}

rnd() { # MAX
    R=$((((RANDOM << 15) | RANDOM) % $1))
}

soft_fail() {
    CS_FAILED=$((CS_FAILED + 1))
    printf 'FAIL: %s\n' "$*" >&2
}

fl_finish() {
    took "done"
    ((CS_FAILED == 0)) || exit 1
}

figure() { # KEY VALUE: KEY is GROUP.CASE.OUTCOME (or GROUP.NAME); each part is made one
    #              lower-case word-with-dashes (the CASE may be a sentence)
    local key=$1 first last mid=""
    first=${key%%.*} last=${key##*.}
    if [[ $key == *.*.* ]]; then
        mid=${key#*.}
        mid=${mid%.*}
    fi
    key=$(for part in "$first" "$mid" "$last"; do
        [[ -n $part ]] || continue
        printf '%s\n' "$part" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9+\n' '-' | tr -s '-' |
            sed 's/^-//; s/-$//'
    done | paste -sd.)
    printf '%s %s\n' "$key" "$2" >>"${FAULTS_FIGURES:-$WORK/figures}"
}
# slug WORDS: the part of a case's description before " (" or ":", for figure keys
slug() { local s=${1%%:*}; printf '%s' "${s%% (*}"; }

regtool() {
    "$FL_PY" "$FL_REGTOOL" "$@"
}

FL_HAVE_VERIFY=""
verify_store() { # DIR [after-kill] (problems in ${FL_VERIFY_OUT:-$WORK/verify.out})
    local dir=$1 f name sum bad=0 vout=${FL_VERIFY_OUT:-$WORK/verify.out} work
    work=(-path "$dir/tmp/*" ! -name '.owner-*') # .owner-PID: a push's lock, like partial/*.lock
    # right after a kill -9 the work files of the killed push may be in tmp/ (the next push
    # removes them): only then are they allowed
    [[ ${2:-} == after-kill ]] && work=(-false)
    : >"$vout"
    if [[ -z $FL_HAVE_VERIFY ]]; then
        FL_HAVE_VERIFY=no
        "$CACHESYNC" store verify --help >/dev/null 2>&1 && FL_HAVE_VERIFY=yes
    fi
    if [[ $FL_HAVE_VERIFY == yes ]]; then
        if ! "$CACHESYNC" -q --store "$dir" store verify >"$vout.cmd" 2>&1; then
            sed 's/^/store verify: /' "$vout.cmd" >>"$vout"
            bad=1
        fi
    fi
    if [[ -d $dir/blobs/sha256 ]]; then
        for f in "$dir"/blobs/sha256/*; do
            [[ -e $f ]] || continue
            name=${f##*/}
            if [[ ! $name =~ ^[0-9a-f]{64}$ ]]; then
                echo "blobs/sha256/$name: not a digest (a temp file left over?)" >>"$vout"
                bad=1
                continue
            fi
            [[ $FL_HAVE_VERIFY == yes ]] && continue
            sum=$(sha256sum <"$f" | cut -d' ' -f1)
            if [[ $sum != "$name" ]]; then
                echo "blobs/sha256/$name: content has sha256 $sum" >>"$vout"
                bad=1
            fi
        done
    fi
    # temp files outside partial/: NAME.tmp-XXXXXX beside a target (csi_fs_write_atomic and
    # the like) and anything in tmp/ (push's work files), once no cachesync runs on DIR
    while IFS= read -r f; do
        echo "${f#"$dir"/}: temp file left outside partial/" >>"$vout"
        bad=1
    done < <(find "$dir" -path "$dir/partial" -prune -o \( -name '*.tmp*' -o -name '*.part' \
        -o -name '.tmp*' -o "${work[@]}" \) -type f -print 2>/dev/null)
    if [[ -f $dir/index.json ]] && ! jq -e .manifests "$dir/index.json" >/dev/null 2>&1; then
        echo "index.json is not a valid index" >>"$vout"
        bad=1
    fi
    return $bad
}

assert_store_ok() { # DIR MSG
    if verify_store "$1"; then
        pass "$2"
    else
        sed 's/^/#   /' "$WORK/verify.out" >&2
        fail "$2"
    fi
}

no_crash() { # FILE
    ! grep -Eq 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|Segmentation fault|core dumped' "$1" 2>/dev/null
}

run_cs() { # OUT ERR ARGS...
    local out=$1 err=$2
    shift 2
    RC=0
    "$CACHESYNC" "$@" >"$out" 2>"$err" || RC=$?
}

assert_clean_exit() { # CODE MSG -- CMD ARGS...
    local want=$1 msg=$2 rc=0
    shift 2
    [[ ${1:-} == -- ]] && shift
    "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    if ((rc >= 128)); then
        tail -n 30 "$WORK/err" | sed 's/^/#   /' >&2
        fail "$msg: died of signal $((rc - 128))"
    fi
    if ! no_crash "$WORK/err"; then
        grep -E -m 5 'Sanitizer|runtime error' "$WORK/err" | sed 's/^/#   /' >&2
        fail "$msg: sanitizer report on stderr"
    fi
    if [[ $rc != "$want" ]]; then
        {
            printf '# command: %s\n' "$*"
            tail -n 20 "$WORK/out" | sed 's/^/#   out: /'
            tail -n 20 "$WORK/err" | sed 's/^/#   err: /'
        } >&2
        fail "$msg: exit status $rc, expected $want"
    fi
    pass "$msg"
}

proxy_set() { # NAME KEY=VALUE...
    local v=${1}_REG q
    shift
    q=$(
        IFS='&'
        echo "$*"
    )
    curl -sf --max-time 5 "http://${!v}/__faultproxy/set?$q" >/dev/null ||
        fail "could not set $* on the proxy"
}

proxy_stats() { # NAME -> JSON
    local v=${1}_REG
    curl -sf --max-time 5 "http://${!v}/__faultproxy/stats"
}

fl_proc_start() { # PID -> start time (field 22 of /proc/PID/stat)
    local stat rest
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 0
    rest=${stat##*) }
    # shellcheck disable=SC2086 # split the fields on purpose
    set -- $rest
    printf '%s' "${20}"
}

restart_registry() { # NAME [SECONDS_DOWN]
    local name=$1 down=${2:-0} dir pidv urlv pid i code v unset_args=()
    dir=$WORK/$name
    pidv=${name}_REG_PID urlv=${name}_REG_URL
    pid=${!pidv}
    [[ -f $dir/config.yml ]] || fail "restart_registry: no $dir/config.yml"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    sleep "$down"
    for v in $(compgen -e); do
        [[ $v == REGISTRY_* ]] && unset_args+=(-u "$v")
    done
    env "${unset_args[@]}" "${CS_REGISTRY_BIN:-docker-registry}" serve "$dir/config.yml" \
        </dev/null >>"$dir/log" 2>&1 &
    pid=$!
    printf '%s %s registry\n' "$pid" "$(fl_proc_start "$pid")" >>"$dir/pids"
    for ((i = 0; i < 200; i++)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${!urlv}/v2/" || true)
        [[ $code == 200 || $code == 401 ]] && break
        kill -0 "$pid" 2>/dev/null || fail "the restarted registry $name exited: $(tail -3 "$dir/log")"
        sleep 0.05
    done
    [[ $code == 200 || $code == 401 ]] || fail "the restarted registry $name does not answer"
    eval "${name}_REG_PID=$pid ${name}_PID=$pid"
}

# What daemon NAME holds under REF: absent, complete (the image ID is ID and its layers are
# the config's diff_ids, given as DIFF_IDS, one per line, when not empty) or partial:<why>.
daemon_ref_state() { # DOCKERD REF ID [DIFF_IDS_FILE]
    local id layers
    if ! id=$(docker_cli "$1" image inspect -f '{{.Id}}' "$2" 2>/dev/null); then
        echo absent
        return 0
    fi
    if [[ $id != "$3" ]]; then
        echo "partial:id=$id"
        return 0
    fi
    if [[ -n ${4:-} ]]; then
        layers=$(docker_cli "$1" image inspect -f '{{range .RootFS.Layers}}{{println .}}{{end}}' "$2" |
            sed '/^$/d')
        if [[ $layers != "$(cat "$4")" ]]; then
            echo "partial:layers"
            return 0
        fi
    fi
    echo complete
}

# Blob digests and sizes of a manifest file, "DIGEST SIZE" per line (config first).
manifest_blobs() { # MANIFEST_FILE
    jq -r '.config, .layers[] | "\(.digest) \(.size)"' "$1"
}

# Every blob of MANIFEST_FILE is in the registry at URL/REPO and hashes to its digest.
registry_blobs_ok() { # URL REPO MANIFEST_FILE
    local d s got
    while read -r d s; do
        got=$(curl -sf "$1/v2/$2/blobs/$d" | sha256sum | cut -d' ' -f1) || return 1
        [[ sha256:$got == "$d" ]] || {
            echo "blob $d in $2 has sha256:$got" >&2
            return 1
        }
    done < <(manifest_blobs "$3")
}

ACCEPT_MANIFESTS='Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json'

# ---- mounts and daemons that a test stops and starts itself ---------------------------------
FL_MOUNTS=()
# mount a tmpfs of SIZE at DIR (unmounted at exit); 1 if this machine does not let us
fl_mount_tmpfs() { # DIR SIZE
    mkdir -p "$1"
    mount -t tmpfs -o "size=$2" tmpfs "$1" 2>"$WORK/mount.err" || return 1
    FL_MOUNTS+=("$1")
}
fl_on_exit() {
    local rc=$? m
    set +e
    for m in "${FL_MOUNTS[@]}"; do
        umount -l "$m" 2>/dev/null || true
    done
    (exit "$rc")
    fp_on_exit
}
trap fl_on_exit EXIT

# kill -9 dockerd NAME (as a crash would), leaving its data root
kill_dockerd() { # NAME
    local pidv=${1}_DOCKERD_PID
    kill -KILL "${!pidv}" 2>/dev/null || true
    while kill -0 "${!pidv}" 2>/dev/null; do sleep 0.05; done
}

# start dockerd NAME again on its data root (after kill_dockerd), setting NAME_* anew
restart_dockerd() { # NAME
    local name=$1 out line
    bash "$CS_TESTENV" stop --keep "$WORK/$name" >/dev/null 2>&1 || true
    out=$(bash "$CS_TESTENV" dockerd "$WORK/$name") || fail "dockerd $name did not start again"
    while IFS= read -r line; do
        [[ $line =~ ^[A-Z_]+= ]] || continue
        eval "${name}_$line"
    done <<<"$out"
    eval "${name}_PID=\${${name}_DOCKERD_PID}"
}

# Faults each proxy injected go into the figures ("injected.KIND N") when it is stopped.
proxy_figures() { # NAME
    local st
    st=$(proxy_stats "$1" 2>/dev/null) || return 0
    jq -r '.faults | to_entries[] | "injected.\(.key) \(.value)"' <<<"$st" 2>/dev/null |
        while read -r k v; do figure "$k" "$v"; done
    return 0
}
eval "fp_stop_proxy() $(declare -f stop_proxy | tail -n +2)"
stop_proxy() { # NAME
    proxy_figures "$1"
    fp_stop_proxy "$1"
}
