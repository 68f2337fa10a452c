#!/usr/bin/env bash
# kill -9 of cachesync at seeded random moments of a pull into the store, a pull into the
# Docker daemon and a push from it, FAULTS_KILLS times each (default 30): after every kill
# the store holds only verified blobs (and temp files only under partial/), the daemon holds
# the whole image under REF or nothing, the registry either the expected manifest or none;
# then the same command again completes (exit 0) and leaves exactly the expected image.
# Throttled tests/integration/faultproxy.py instances stand in front of the real registry so
# that kills land in the middle of transfers; the re-runs go through them at full speed.
# Pulls are killed when the store holds a seeded number of the image's bytes (or a seeded
# time after the last one), pushes at a seeded fraction of how long an uninterrupted throttled
# push takes here; FAULTS_SEED=N replays them (the machine's timing still varies). The push kills run
# alongside the pull kills (another image, another proxy, other stores).
# FAULTS_KILL_OPS="store docker push" picks the loops; FAULTS_EVIDENCE=DIR keeps the store
# and logs of a failed re-run.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/faults/faultlib.sh"

cs=$CACHESYNC
KILLS=${FAULTS_KILLS:-30}
OPS=" ${FAULTS_KILL_OPS:-store docker push} "
MiB=$((1024 * 1024))
RATE=$((6 * MiB)) # bytes/s per blob body (down) or upload body (up) while a kill is coming
fl_seed

start_registry reg
start_dockerd d
start_proxy kp "$reg_REG_URL" --rate "$RATE"
start_proxy kpu "$reg_REG_URL" --rate-up "$RATE"

# ---- the images: busybox, three random layers (3, 2 and 1.5 MiB), a small text layer --------
# kill/app is pulled; kill/src (the same shape, other bytes) is pushed from the daemon
for img in app src; do
    regtool image "$reg_REG_URL" "kill/$img" v1 --seed "$FAULTS_SEED$([[ $img == src ]] && echo 1)" \
        --busybox --random $((3 * MiB)) --random $((2 * MiB)) --random $((3 * MiB / 2)) \
        --text "/etc/kill-marker=kill-test $img $FAULTS_SEED" >"$WORK/$img.json" ||
        fail "regtool could not push kill/$img"
done
REPO=kill/app
CONFIG=$(jq -r .config "$WORK/app.json")
jq -r '.layers[].diff_id' "$WORK/app.json" >"$WORK/diff_ids"
jq -r '.manifest, .config, .layers[].digest' "$WORK/app.json" | sort >"$WORK/want-blobs"
IMAGE_SIZE=$(jq -r .size "$WORK/app.json")
pass "images kill/app:v1 and kill/src:v1 pushed ($IMAGE_SIZE bytes each)"
REF=$kp_REG/$REPO:v1

# ---- the moment between a blob's last byte and its commit, made on purpose -------------------
# A kill there leaves the whole blob in partial/: the next run must verify and commit it, not
# ask the registry for bytes SIZE- (which answers 416, and docker-registry 2.8 with a broken
# body). Then the same with a partial of full size whose bytes are wrong: fetched whole again.
BIGL=$(jq -r '.layers | max_by(.size) | .digest' "$WORK/app.json")
S0=$WORK/s-held
proxy_set kp rate=0
assert_exit 0 "a pull into a fresh store" -- "$cs" -q --store "$S0" pull --to store "$kp_REG/kill/app:v1"
mv "$S0/blobs/sha256/${BIGL#sha256:}" "$S0/partial/${BIGL#sha256:}"
mark=$(wc -l <"$kp_LOG")
assert_exit 0 "the whole blob held in partial/ (killed before its commit): the pull completes" -- \
    "$cs" -q --store "$S0" pull --to store "$kp_REG/kill/app:v1"
assert_eq "$(tail -n "+$((mark + 1))" "$kp_LOG" | grep -c "/blobs/$BIGL ")" 0 \
    "the held blob was committed without asking the registry for it"
assert_eq "$(sha256sum <"$S0/blobs/sha256/${BIGL#sha256:}" | cut -d' ' -f1)" "${BIGL#sha256:}" \
    "and it verifies"
cp "$S0/blobs/sha256/${BIGL#sha256:}" "$S0/partial/${BIGL#sha256:}"
rm "$S0/blobs/sha256/${BIGL#sha256:}"
printf '\xff' | dd of="$S0/partial/${BIGL#sha256:}" bs=1 seek=1000 conv=notrunc status=none
mark=$(wc -l <"$kp_LOG")
assert_exit 0 "a held blob of full size with a wrong byte: the pull completes" -- \
    "$cs" -q --store "$S0" pull --to store "$kp_REG/kill/app:v1"
assert_contains <(tail -n "+$((mark + 1))" "$kp_LOG") "^GET /v2/kill/app/blobs/$BIGL range=- status=200" \
    "the wrong bytes were dropped and the blob fetched whole"
assert_store_ok "$S0" "the store verifies"
rm -rf "$S0"

# store_has_image DIR: every blob of kill/app is in the store and index.json names REF
store_has_image() {
    local d
    while read -r d; do
        [[ -f $1/blobs/sha256/${d#sha256:} ]] || {
            echo "missing $d"
            return 1
        }
    done <"$WORK/want-blobs"
    jq -e --arg r "$REF" '[.manifests[].annotations["org.opencontainers.image.ref.name"]] |
        index($r) != null' "$1/index.json" >/dev/null || {
        echo "index.json does not name $REF"
        return 1
    }
}

# Start CMD, kill -9 it DELAY ms later. KILLED=1 if the kill hit a running process.
run_and_kill() { # DELAY_MS PREFIX CMD...
    local delay=$1 pfx=$2 pid
    shift 2
    "$@" >"$pfx.out" 2>"$pfx.err" &
    pid=$!
    sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))"
    kill -9 "$pid" 2>/dev/null || true
    KRC=0
    wait "$pid" 2>/dev/null || KRC=$?
    KILLED=0
    ((KRC == 137)) && KILLED=1
    return 0
}

# What was in flight when the kill came: "mid-transfer" (bytes in partial/), "early" (no
# blob of the image yet), "some-blobs", "all-blobs".
kill_phase() { # STORE
    local n d have=0 want=0
    n=$( { find "$1/partial" -type f ! -name '*.lock' -size +0 2>/dev/null || true; } | wc -l)
    while read -r d; do
        want=$((want + 1))
        [[ -f $1/blobs/sha256/${d#sha256:} ]] && have=$((have + 1))
    done <"$WORK/want-blobs"
    if ((n > 0)); then
        echo mid-transfer
    elif ((have == want)); then
        echo all-blobs
    elif ((have > 0)); then
        echo some-blobs
    else
        echo early
    fi
}

# Pulls are killed at a point of their progress: once the store holds K bytes of the image,
# K drawn from the seed over [0, 1.3 x its size); past the size, (K - size) / size x EXTRA_MS
# after the last byte arrived (the load into the daemon, the index update). The point does
# not depend on the machine's speed, so a replay kills at the same place.
store_bytes() { # STORE
    { find "$1/blobs" "$1/partial" -type f -printf '%s\n' 2>/dev/null || true; } |
        awk '{ n += $1 } END { print n + 0 }'
}
kill_point() { # -> K (bytes) for the next pull kill
    rnd $((IMAGE_SIZE * 13 / 10))
    K=$R
}
run_and_kill_at() { # K EXTRA_MS STORE PREFIX CMD...
    local k=$1 extra=$2 store=$3 pfx=$4 pid got i wait_ms
    shift 4
    "$@" >"$pfx.out" 2>"$pfx.err" &
    pid=$!
    for ((i = 0; i < 3000; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        got=$(store_bytes "$store")
        ((got >= k || got >= IMAGE_SIZE)) && break
        sleep 0.02
    done
    if ((k > IMAGE_SIZE)); then
        wait_ms=$(((k - IMAGE_SIZE) * extra / IMAGE_SIZE))
        sleep "$((wait_ms / 1000)).$(printf '%03d' $((wait_ms % 1000)))"
    fi
    kill -9 "$pid" 2>/dev/null || true
    KRC=0
    wait "$pid" 2>/dev/null || KRC=$?
    KILLED=0
    ((KRC == 137)) && KILLED=1
    return 0
}

# Pushes are killed at a moment: how long a throttled, uninterrupted run takes, in ms (T_MS),
# times a seeded fraction of 1.15.
time_run() { # CMD...
    local t0 t1
    t0=$(date +%s%N)
    "$@" >"$WORK/calib.out" 2>"$WORK/calib.err" || fail "calibration run failed: $(tail -3 "$WORK/calib.err")"
    t1=$(date +%s%N)
    T_MS=$(((t1 - t0) / 1000000))
}
kill_delay() { # T_MS -> delay (ms) for the next kill
    rnd 1000
    delay=$((20 + R * $1 * 115 / 100000))
}

# After a failed re-run: the proxy's last requests and the store's partial files.
show_evidence() { # STORE PROXY_LOG PREFIX
    {
        echo "# proxy log, last 16 requests:"
        tail -n 16 "$2" | sed 's/^/#   /'
        echo "# partial/:"
        ls -l "$1/partial" 2>/dev/null | sed 's/^/#   /'
    } >&2
    if [[ -n ${FAULTS_EVIDENCE:-} ]]; then
        mkdir -p "$FAULTS_EVIDENCE"
        cp -r "$1" "$FAULTS_EVIDENCE/store-${1##*/}" 2>/dev/null || true
        cp "$2" "$3".* "$FAULTS_EVIDENCE/" 2>/dev/null || true
    fi
}

declare -A PHASES=()
note_phase() { PHASES[$1:$2]=$((${PHASES[$1:$2]:-0} + 1)); }
print_phases() { # OP TITLE
    local k
    printf '# %s:' "$2"
    for k in "${!PHASES[@]}"; do
        [[ $k == "$1":* ]] && printf ' %s=%s' "${k#"$1":}" "${PHASES[$k]}"
    done
    echo
}

# ---- push from the daemon, in the background ---------------------------------------------------
# Results in $WORK/push.res: "OK FAILED" then "phase COUNT" lines.
push_loop() {
    local i S PREPO PREF delay phase good code got
    CS_FAILED=0
    RANDOM=$((FAULTS_SEED + 7))
    FL_VERIFY_OUT=$WORK/verify-push.out
    export DOCKER_HOST=$d_DOCKER_HOST
    ok_push=0
    for ((i = 1; i <= KILLS; i++)); do
        S=$WORK/s-push-$i
        PREPO=kill/push-$i
        PREF=$kpu_REG/$PREPO:v1
        kill_delay "$T_PUSH"
        proxy_set kpu rate_up=$RATE
        run_and_kill "$delay" "$WORK/pk" "$cs" -q --store "$S" push docker:kill-src:1 "$PREF"
        phase=killed
        ((KILLED == 0)) && phase=finished:$KRC
        good=1
        code=$(curl -s -o "$WORK/pm.json" -w '%{http_code}' -H "$ACCEPT_MANIFESTS" \
            "$reg_REG_URL/v2/$PREPO/manifests/v1")
        if [[ $code == 200 ]]; then
            note_phase push manifest-there
            got=sha256:$(sha256sum <"$WORK/pm.json" | cut -d' ' -f1)
            [[ $got == "$WANT" ]] || {
                soft_fail "push kill $i: after the kill the registry holds manifest $got, not $WANT"
                good=0
            }
        else
            note_phase push no-manifest
        fi
        if ! verify_store "$S" after-kill; then
            soft_fail "push kill $i (after $delay ms, $phase): store does not verify: $(head -3 "$FL_VERIFY_OUT" | tr '\n' ' ')"
            good=0
        fi
        proxy_set kpu rate_up=0
        run_cs "$WORK/pr.out" "$WORK/pr.err" -q --store "$S" push docker:kill-src:1 "$PREF"
        no_crash "$WORK/pr.err" || soft_fail "push kill $i: sanitizer report: $(grep -m1 -E 'Sanitizer|runtime error' "$WORK/pr.err")"
        if ((RC != 0)); then
            soft_fail "push kill $i (after $delay ms, $phase): re-run exit $RC: $(head -3 "$WORK/pr.err")"
            show_evidence "$S" "$kpu_LOG" "$WORK/pr"
            good=0
        else
            curl -sf -o "$WORK/pm.json" -H "$ACCEPT_MANIFESTS" "$reg_REG_URL/v2/$PREPO/manifests/v1" ||
                : >"$WORK/pm.json"
            got=sha256:$(sha256sum <"$WORK/pm.json" | cut -d' ' -f1)
            if [[ $got != "$WANT" ]]; then
                soft_fail "push kill $i: after the re-run the registry holds manifest $got, not $WANT"
                good=0
            elif ! registry_blobs_ok "$reg_REG_URL" "$PREPO" "$WORK/pm.json"; then
                soft_fail "push kill $i: a blob of the manifest is missing or wrong in the registry"
                good=0
            elif ! verify_store "$S"; then
                soft_fail "push kill $i: after the re-run the store does not verify: $(head -3 "$FL_VERIFY_OUT" | tr '\n' ' ')"
                good=0
            fi
        fi
        ((good)) && ok_push=$((ok_push + 1))
        rm -rf "$S"
    done
    {
        echo "$ok_push $CS_FAILED"
        for k in "${!PHASES[@]}"; do echo "$k ${PHASES[$k]}"; done
    } >"$WORK/push.res"
}

ok_push=0
push_pid=""
if [[ $OPS == *" push "* ]]; then
    docker_cli d pull "$reg_REG/kill/src:v1" >/dev/null 2>&1 || fail "docker pull of the source image"
    docker_cli d tag "$reg_REG/kill/src:v1" kill-src:1
    docker_cli d image rm "$reg_REG/kill/src:v1" >/dev/null
    DOCKER_HOST=$d_DOCKER_HOST run_cs "$WORK/ref.out" "$WORK/ref.err" --json --store "$WORK/s-push-ref" \
        push docker:kill-src:1 "$reg_REG/kill/push-ref:v1"
    ((RC == 0)) || fail "reference push failed ($RC): $(cat "$WORK/ref.err")"
    WANT=$(jq -r .digest "$WORK/ref.out")
    pass "reference push of docker:kill-src:1: manifest ${WANT:0:19}"
    rm -rf "$WORK/s-push-ref"
    DOCKER_HOST=$d_DOCKER_HOST time_run "$cs" -q --store "$WORK/s-calib" push docker:kill-src:1 \
        "$kpu_REG/kill/push-calib:v1"
    rm -rf "$WORK/s-calib"
    T_PUSH=$T_MS
    printf '# a throttled push takes %s ms\n' "$T_PUSH"
    push_loop >"$WORK/push-loop.log" 2>&1 &
    push_pid=$!
fi

# ---- 1. pull into the store ------------------------------------------------------------------
ok_store=0
for ((i = 1; i <= KILLS; i++)); do
    [[ $OPS == *" store "* ]] || break
    S=$WORK/s-pull-$i
    kill_point
    delay="$K bytes"
    proxy_set kp rate=$RATE
    run_and_kill_at "$K" 150 "$S" "$WORK/k" "$cs" -q --store "$S" pull --to store "$REF"
    if ((KILLED == 0)); then
        phase=finished:$KRC
    else
        phase=$(kill_phase "$S")
    fi
    note_phase store "$phase"
    good=1
    if ! verify_store "$S" after-kill; then
        soft_fail "pull-store kill $i (at $delay, $phase): store does not verify: $(head -3 "$WORK/verify.out" | tr '\n' ' ')"
        good=0
    fi
    proxy_set kp rate=0
    run_cs "$WORK/r.out" "$WORK/r.err" -q --store "$S" pull --to store "$REF"
    no_crash "$WORK/r.err" || soft_fail "pull-store kill $i: sanitizer report: $(grep -m1 -E 'Sanitizer|runtime error' "$WORK/r.err")"
    if ((RC != 0)); then
        soft_fail "pull-store kill $i (at $delay, $phase): re-run exit $RC: $(head -3 "$WORK/r.err")"
        show_evidence "$S" "$kp_LOG" "$WORK/r"
        good=0
    elif ! why=$(store_has_image "$S"); then
        soft_fail "pull-store kill $i: after the re-run the store lacks the image: $why"
        good=0
    elif ! verify_store "$S"; then
        soft_fail "pull-store kill $i: after the re-run the store does not verify: $(head -3 "$WORK/verify.out" | tr '\n' ' ')"
        good=0
    fi
    ((good)) && ok_store=$((ok_store + 1))
    rm -rf "$S"
done
if [[ $OPS == *" store "* ]]; then
    assert_eq "$ok_store" "$KILLS" "pull --to store: $KILLS kills -9, every re-run completes and the store verifies"
    print_phases store "pull --to store, what the kills interrupted"
    took "pull into the store"
fi

# ---- 2. pull into the daemon -----------------------------------------------------------------
ok_docker=0
states=""
for ((i = 1; i <= KILLS; i++)); do
    [[ $OPS == *" docker "* ]] || break
    S=$WORK/s-docker-$i
    kill_point
    delay="$K bytes"
    proxy_set kp rate=$RATE
    run_and_kill_at "$K" 600 "$S" "$WORK/k" env DOCKER_HOST="$d_DOCKER_HOST" "$cs" -q --store "$S" pull "$REF"
    phase=$(kill_phase "$S")
    ((KILLED == 0)) && phase=finished:$KRC
    note_phase docker "$phase"
    good=1
    state=$(daemon_ref_state d "$REF" "$CONFIG" "$WORK/diff_ids")
    states+=" $state"
    if [[ $state != absent && $state != complete ]]; then
        soft_fail "pull-docker kill $i (at $delay, $phase): the daemon holds $state under $REF"
        good=0
    fi
    if ! verify_store "$S" after-kill; then
        soft_fail "pull-docker kill $i (at $delay, $phase): store does not verify: $(head -3 "$WORK/verify.out" | tr '\n' ' ')"
        good=0
    fi
    proxy_set kp rate=0
    DOCKER_HOST=$d_DOCKER_HOST run_cs "$WORK/r.out" "$WORK/r.err" -q --store "$S" pull "$REF"
    no_crash "$WORK/r.err" || soft_fail "pull-docker kill $i: sanitizer report: $(grep -m1 -E 'Sanitizer|runtime error' "$WORK/r.err")"
    state=$(daemon_ref_state d "$REF" "$CONFIG" "$WORK/diff_ids")
    if ((RC != 0)); then
        soft_fail "pull-docker kill $i (at $delay, $phase): re-run exit $RC: $(head -3 "$WORK/r.err")"
        show_evidence "$S" "$kp_LOG" "$WORK/r"
        good=0
    elif [[ $state != complete ]]; then
        soft_fail "pull-docker kill $i: after the re-run the daemon holds $state under $REF"
        good=0
    elif ! verify_store "$S"; then
        soft_fail "pull-docker kill $i: after the re-run the store does not verify: $(head -3 "$WORK/verify.out" | tr '\n' ' ')"
        good=0
    fi
    if ((i == KILLS)); then
        out=$(docker_cli d run --rm --network=none "$REF" cat /etc/kill-marker 2>&1) || true
        assert_eq "$out" "kill-test app $FAULTS_SEED" "the last re-run's image runs and has its files"
    fi
    ((good)) && ok_docker=$((ok_docker + 1))
    docker_cli d image rm -f "$REF" >/dev/null 2>&1 || true
    rm -rf "$S"
done
if [[ $OPS == *" docker "* ]]; then
    printf '# the daemon after each kill:%s\n' "$states"
    assert_eq "$ok_docker" "$KILLS" "pull into the daemon: $KILLS kills -9, the daemon never holds a partial image, every re-run completes"
    print_phases docker "pull into the daemon, what the kills interrupted"
    figure "kill.daemon_after_kill.absent" "$(grep -o absent <<<"$states" | wc -l)"
    figure "kill.daemon_after_kill.complete" "$(grep -o complete <<<"$states" | wc -l)"
    took "pull into the daemon"
fi

# ---- 3. the push loop's results ----------------------------------------------------------------
if [[ -n $push_pid ]]; then
    wait "$push_pid" || true
    grep -E '^(FAIL|#)' "$WORK/push-loop.log" >&2 || true
    [[ -f $WORK/push.res ]] || fail "the push loop left no results: $(tail -5 "$WORK/push-loop.log")"
    {
        read -r ok_push push_failed
        while read -r k v; do PHASES[$k]=$v; done
    } <"$WORK/push.res"
    CS_FAILED=$((CS_FAILED + push_failed))
    assert_eq "$ok_push" "$KILLS" "push: $KILLS kills -9, every re-run completes with the expected manifest and blobs"
    print_phases push "push, the registry after each kill"
    took "push (alongside the pulls)"
fi

echo "kills survived: pull $((ok_store + ok_docker))/$((2 * KILLS)) (store $ok_store/$KILLS, daemon $ok_docker/$KILLS), push $ok_push/$KILLS"
figure kill.pull-store.survived "$ok_store"
figure kill.pull-docker.survived "$ok_docker"
figure kill.push.survived "$ok_push"
figure kill.per-op.total "$KILLS"
for k in "${!PHASES[@]}"; do figure "kill.phase.$k" "${PHASES[$k]}"; done
fl_finish
