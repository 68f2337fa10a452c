#!/usr/bin/env bash
# Several cachesync processes on one store at once, on images that share layers: 2 and then
# 4 pulls (two of them of the same image), pulls and pushes mixed, and two pulls of the same
# image into one daemon. Transfers go through a throttled tests/integration/faultproxy.py so
# that the processes meet on the same blobs (the store's per-blob locks, index.json's lock).
# All must succeed; then the store verifies, its index.json names every reference pulled,
# the registry holds every pushed manifest with its blobs, and the daemon the whole image.
# FAULTS_CONCURRENT_ROUNDS (default 3) repeats each mix on a fresh store.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/faults/faultlib.sh"

cs=$CACHESYNC
MiB=$((1024 * 1024))
ROUNDS=${FAULTS_CONCURRENT_ROUNDS:-3}
fl_seed

start_registry reg
start_dockerd d
# A, B and C share busybox and their first random layer; B and C their second one too
for spec in "a --random $((4 * MiB))" \
    "b --random $((4 * MiB)) --random $((2 * MiB))" \
    "c --random $((4 * MiB)) --random $((2 * MiB)) --random $((3 * MiB))"; do
    read -r name args <<<"$spec"
    # shellcheck disable=SC2086 # args split on purpose
    regtool image "$reg_REG_URL" conc/app "$name" --seed "$FAULTS_SEED" --busybox $args \
        --text "/etc/conc=$name" >"$WORK/$name.json" || fail "regtool $name"
done
shared=$(jq -r '.layers[].digest' "$WORK/a.json" "$WORK/b.json" "$WORK/c.json" | sort | uniq -d | wc -l)
((shared >= 2)) || fail "the images share only $shared layers"
pass "images conc/app:a, :b, :c share $shared layers"
start_proxy slow "$reg_REG_URL" --rate $((4 * MiB)) --rate-up $((8 * MiB))
R=$slow_REG/conc/app

# the sources of the pushes: a and c in the daemon
for t in a c; do
    docker_cli d pull "$reg_REG/conc/app:$t" >/dev/null 2>&1 || fail "docker pull conc/app:$t"
    docker_cli d tag "$reg_REG/conc/app:$t" "src-$t:1"
done
export DOCKER_HOST=$d_DOCKER_HOST

# Run each "NAME ARGS..." line as one cachesync process, all at once; every one must exit 0.
run_together() { # WHAT STORE LINES...
    local what=$1 store=$2 line name pids=() names=() i rc bad=0
    shift 2
    for line in "$@"; do
        read -r name args <<<"$line"
        # shellcheck disable=SC2086 # args split on purpose
        "$cs" -q --store "$store" $args >"$WORK/$name.out" 2>"$WORK/$name.err" &
        pids+=($!)
        names+=("$name")
    done
    for i in "${!pids[@]}"; do
        rc=0
        wait "${pids[$i]}" || rc=$?
        if ((rc != 0)); then
            soft_fail "$what: ${names[$i]} exited $rc: $(head -3 "$WORK/${names[$i]}.err")"
            bad=1
        elif ! no_crash "$WORK/${names[$i]}.err"; then
            soft_fail "$what: ${names[$i]}: sanitizer report"
            bad=1
        fi
    done
    ((bad == 0)) && pass "$what: all ${#pids[@]} processes exit 0"
    return 0
}

# every blob of image NAME is in STORE, and index.json names REF
store_has() { # STORE NAME REF
    local d
    for d in $(jq -r '.manifest, .config, .layers[].digest' "$WORK/$2.json"); do
        [[ -f $1/blobs/sha256/${d#sha256:} ]] || {
            echo "missing $d of $2"
            return 1
        }
    done
    jq -e --arg r "$3" '[.manifests[].annotations["org.opencontainers.image.ref.name"]] |
        index($r) != null' "$1/index.json" >/dev/null || {
        echo "index.json does not name $3"
        return 1
    }
}

check_store() { # WHAT STORE NAME:REF...
    local what=$1 store=$2 x why
    shift 2
    if ! verify_store "$store"; then
        soft_fail "$what: the store does not verify: $(head -3 "$WORK/verify.out" | tr '\n' ' ')"
        return 0
    fi
    for x in "$@"; do
        why=$(store_has "$store" "${x%%=*}" "${x#*=}") || {
            soft_fail "$what: $why"
            return 0
        }
    done
    pass "$what: the store verifies and holds every image pulled, named in index.json"
}

pushed_ok() { # WHAT REPO
    curl -sf -H "$ACCEPT_MANIFESTS" -o "$WORK/m.json" "$reg_REG_URL/v2/$2/manifests/v1" || {
        soft_fail "$1: no manifest in $2"
        return 0
    }
    if registry_blobs_ok "$reg_REG_URL" "$2" "$WORK/m.json"; then
        pass "$1: $2:v1 and all its blobs are in the registry"
    else
        soft_fail "$1: a blob of $2:v1 is missing or wrong"
    fi
}

for ((round = 1; round <= ROUNDS; round++)); do
    S=$WORK/store-2-$round
    run_together "round $round, 2 pulls (a, b)" "$S" \
        "p1 pull --to store $R:a" "p2 pull --to store $R:b"
    check_store "round $round, 2 pulls" "$S" "a=$R:a" "b=$R:b"
    figure concurrent.2-pulls.rounds 1

    S=$WORK/store-4-$round
    run_together "round $round, 4 pulls (a, b, c, c)" "$S" \
        "p1 pull --to store $R:a" "p2 pull --to store $R:b" \
        "p3 pull --to store $R:c" "p4 pull --to store $R:c"
    check_store "round $round, 4 pulls" "$S" "a=$R:a" "b=$R:b" "c=$R:c"
    figure concurrent.4-pulls.rounds 1

    S=$WORK/store-mix-$round
    run_together "round $round, 2 pulls and 2 pushes" "$S" \
        "p1 pull --to store $R:b" "p2 pull --to store $R:c" \
        "u1 push docker:src-a:1 $slow_REG/conc/push-a$round:v1" \
        "u2 push docker:src-c:1 $slow_REG/conc/push-c$round:v1"
    check_store "round $round, pulls and pushes" "$S" "b=$R:b" "c=$R:c"
    pushed_ok "round $round" "conc/push-a$round"
    pushed_ok "round $round" "conc/push-c$round"
    figure concurrent.pulls-and-pushes.rounds 1

    # one image pushed twice at once to one new reference, on the store the others filled
    run_together "round $round, the same push twice at once" "$S" \
        "u1 push docker:src-c:1 $slow_REG/conc/push-twice$round:v1" \
        "u2 push docker:src-c:1 $slow_REG/conc/push-twice$round:v1"
    pushed_ok "round $round" "conc/push-twice$round"

    S=$WORK/store-docker-$round
    run_together "round $round, 2 pulls of :b into one daemon" "$S" \
        "d1 pull $R:b" "d2 pull $R:b"
    state=$(daemon_ref_state d "$R:b" "$(jq -r .config "$WORK/b.json")")
    if [[ $state == complete ]]; then
        pass "round $round: the daemon holds the whole image"
    else
        soft_fail "round $round: the daemon holds $state under $R:b"
    fi
    verify_store "$S" || soft_fail "round $round, daemon pulls: the store does not verify"
    docker_cli d image rm -f "$R:b" >/dev/null 2>&1 || true
    figure concurrent.daemon-pulls.rounds 1
    rm -rf "$WORK"/store-*-"$round"
done
fl_finish
