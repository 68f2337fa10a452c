#!/usr/bin/env bash
# Network faults between cachesync and a real registry, injected by
# tests/integration/faultproxy.py: connection resets, truncated bodies, stalls (short, and
# longer than cachesync's 60 s stall timeout), 429 with Retry-After (small and absurdly large), bursts of 500/503 on
# blobs, manifests, HEADs and uploads, and the registry itself stopped and started again on
# the same port in the middle of a throttled transfer. Pull and push must complete within
# bounded retries and time; a large blob is resumed with Range, not fetched again from byte 0.
# A fault that never goes away (every answer truncated at the same byte) must end in a clear
# error, not a loop. (A Content-Length that disagrees with the blob is an integrity failure:
# test_integrity.sh.)
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/faults/faultlib.sh"

cs=$CACHESYNC
MiB=$((1024 * 1024))
fl_seed

start_registry reg
REPO=net/app
regtool image "$reg_REG_URL" "$REPO" v1 --seed "$FAULTS_SEED" \
    --random $((24 * MiB)) --random $((2 * MiB)) --text "/etc/net=network $FAULTS_SEED" \
    >"$WORK/image.json" || fail "regtool could not push the image"
BIG=$(jq -r '.layers | max_by(.size) | .digest' "$WORK/image.json")
BIG_SIZE=$(jq -r '.layers | max_by(.size) | .size' "$WORK/image.json")
MANIFEST=$(jq -r .manifest "$WORK/image.json")
jq -r '.manifest, .config, .layers[].digest' "$WORK/image.json" >"$WORK/want-blobs"
pass "image $REPO:v1: a $BIG_SIZE-byte layer ${BIG:0:19} and two small ones"
# the offset of the mid-blob faults, drawn from the seed: between 4 and 20 MiB
rnd $((16 * MiB))
CUT=$((4 * MiB + R))
printf '# mid-blob faults at byte %s\n' "$CUT"

# The OCI layout the push cases push from (blobs as the registry has them).
regtool layout "$WORK/layout" "$reg_REG_URL" "$REPO" v1 >/dev/null || fail "regtool layout"

# Body bytes a proxy sent for DIGEST's GETs, and their Range headers in the order the
# requests came (the log has them in the order they ended).
blob_bytes() { # LOG DIGEST
    awk -v d="/blobs/$2" '$1 == "GET" && index($2, d) { sub("bytes=", "", $5); n += $5 }
        END { print n + 0 }' "$1"
}
blob_gets() { # LOG DIGEST -> "T RANGE BYTES" per GET, by T
    awk -v d="/blobs/$2" '$1 == "GET" && index($2, d) { t = 0
        for (i = 3; i <= NF; i++) if ($i ~ /^t=/) t = substr($i, 3)
        b = $5; sub("bytes=", "", b); print t, $3, b }' "$1" | sort -n
}
blob_ranges() { # LOG DIGEST
    blob_gets "$1" "$2" | cut -d' ' -f2
}
store_complete() { # STORE
    local d
    while read -r d; do
        [[ -f $1/blobs/sha256/${d#sha256:} ]] || return 1
    done <"$WORK/want-blobs"
}

# One pull through a proxy with PROXY-ARGS into a fresh store; EXPECT is its exit status.
# Sets PLOG (the proxy's log) and SECS (how long the pull took).
N_CASE=0
pull_case() { # EXPECT MAX_SECONDS WHAT PROXY-ARGS...
    local want=$1 max=$2 what=$3 t0 name
    shift 3
    N_CASE=$((N_CASE + 1))
    name=p$N_CASE
    start_proxy "$name" "$reg_REG_URL" "$@"
    local preg=${name}_REG
    PLOG=$WORK/$name.log
    S=$WORK/store-$name
    t0=$SECONDS
    assert_clean_exit "$want" "$what: pull exits $want" -- \
        "$cs" -q --store "$S" pull --to store "${!preg}/$REPO:v1"
    SECS=$((SECONDS - t0))
    ((SECS <= max)) || fail "$what: the pull took $SECS s (bound: $max s)"
    pass "$what: done in $SECS s (bound $max s)"
    assert_store_ok "$S" "$what: the store verifies"
    if ((want == 0)); then
        store_complete "$S" || fail "$what: the store lacks a blob of the image"
        pass "$what: the store holds the whole image"
    fi
    figure "network.$(tr ' ' '-' <<<"${what%% (*}").exit$want" 1
    stop_proxy "$name"
}

# The large blob was resumed, not fetched again: every GET of it after the first asked for
# Range bytes=N- (N > 0), and those GETs together sent no more than the rest of the blob.
assert_resumed() { # WHAT
    local r first later n
    mapfile -t r < <(blob_ranges "$PLOG" "$BIG")
    ((${#r[@]} >= 2)) || fail "$1: only ${#r[@]} GET of the large blob: nothing to resume"
    [[ ${r[1]} =~ ^range=bytes=([1-9][0-9]*)-$ ]] ||
        fail "$1: the second GET of the large blob asked '${r[1]}', not a resume (bytes=N-, N > 0)"
    first=${BASH_REMATCH[1]}
    for n in "${r[@]:1}"; do
        [[ $n =~ ^range=bytes=[1-9][0-9]*-$ ]] || fail "$1: a later GET of the large blob asked '$n': restarted"
    done
    pass "$1: resumed with ${r[1]#range=} (${#r[@]} GETs)"
    # each interruption may lose what was in flight (socket buffers): up to 4 MiB each
    later=$(blob_gets "$PLOG" "$BIG" | awk 'NR > 1 { n += $3 } END { print n + 0 }')
    ((later <= BIG_SIZE - first + (${#r[@]} - 2) * 4 * MiB)) ||
        fail "$1: the GETs after the first sent $later bytes, more than the $((BIG_SIZE - first)) left"
    pass "$1: the later GETs sent $later bytes for the $((BIG_SIZE - first)) left"
}

# ---- a stall longer than the 60 s stall timeout runs alongside everything else ----------------
# Run ARGS in the background; NAME.rc gets "EXIT SECONDS" when it ends.
bg_cs() { # NAME ARGS...
    local name=$1
    shift
    (
        t0=$SECONDS rc=0
        "$cs" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
        echo "$rc $((SECONDS - t0))" >"$WORK/$name.rc"
    ) &
}
start_proxy stall "$reg_REG_URL" --stall-blob "$BIG:$CUT:70"
bg_cs stall -q --store "$WORK/store-stall" pull --to store "$stall_REG/$REPO:v1"
stall_pid=$!
# ... and a 429 whose Retry-After asks for a day
start_proxy day "$reg_REG_URL" --status-burst "429:1:$BIG" --retry-after 86400
bg_cs day -q --store "$WORK/store-day" pull --to store "$day_REG/$REPO:v1"
day_pid=$!

# ---- resets, truncations, short stalls, Content-Length lies: resumed in one run -------------
pull_case 0 30 "connection reset mid-blob" --reset-blob "$BIG:$CUT"
assert_contains "$PLOG" "/blobs/$BIG .*fault=reset@$CUT" "the proxy reset the connection at $CUT"
assert_resumed "reset"
pull_case 0 30 "truncated body" --truncate-blob "$BIG:$CUT"
assert_contains "$PLOG" "/blobs/$BIG .*fault=truncate@$CUT" "the proxy truncated the body at $CUT"
assert_resumed "truncated body"
pull_case 0 30 "stall of 5 s mid-blob" --stall-blob "$BIG:$CUT:5"
assert_contains "$PLOG" "/blobs/$BIG .*fault=stall@$CUT" "the proxy stalled 5 s at $CUT"
((SECS >= 5)) || fail "the stalled pull took $SECS s: it did not wait for the stall"
pass "the pull waited out the 5 s stall"
# ---- status bursts -----------------------------------------------------------------------------
pull_case 0 30 "429 x3 on the large blob (Retry-After: 2)" --status-burst "429:3:$BIG" --retry-after 2
assert_eq "$(grep -c "/blobs/$BIG .*status=429" "$PLOG")" 3 "429 answered three times"
# the retries honour Retry-After: 3 waits of 2 s between the first 429 and the 200
t429=$(awk -v d="/blobs/$BIG" '$1 == "GET" && index($2, d) { for (i = 3; i <= NF; i++) if ($i ~ /^t=/) print substr($i, 3) }' "$PLOG" |
    sed -n '1p;$p' | tr '\n' ' ')
gap=$(awk '{ printf "%d", ($2 - $1) * 1000 }' <<<"$t429")
((gap >= 5800)) || fail "from the first 429 to the GET that worked: $gap ms; Retry-After 2 x 3 wants >= 6000"
pass "429 Retry-After: 2 honoured ($gap ms from the first 429 to the last GET)"
pull_case 0 30 "429 x2 on the manifest (Retry-After: 1)" --status-burst 429:2 --burst-on manifest
assert_eq "$(grep -c '/manifests/.*status=429' "$PLOG")" 2 "429 on the manifest twice"
pull_case 0 30 "500 x4 on any blob" --status-burst 500:4
assert_eq "$(grep -c ' status=500 .*fault=status' "$PLOG")" 4 "500 answered four times"
pull_case 0 30 "503 x3 on the manifest (no Retry-After)" --status-burst 503:3 --burst-on manifest --retry-after none
assert_eq "$(grep -c '/manifests/.*status=503' "$PLOG")" 3 "503 on the manifest three times"
pull_case 0 40 "503 x4 on any request" --status-burst 503:4 --burst-on any
# a manifest answered 503 five times in a row exhausts its 4 retries: a clear error
pull_case 1 60 "503 x5 on the manifest (over the retry budget)" --status-burst 503:5 --burst-on manifest
assert_contains "$WORK/err" "manifest $REPO:v1 .*503" "the error names the manifest and the status"
pull_case 1 90 "503 on every blob GET" --status-burst 503:100000
assert_contains "$WORK/err" "$BIG|sha256:|503|gave up|retries" "the error names the blob or the HTTP status"
assert_eq "$(wc -l <"$WORK/err")" 1 "one line on stderr"
printf '# stderr: %s\n' "$(cat "$WORK/err")"

# ---- a fault that never goes away ends in a clear error, in bounded time ---------------------
pull_case 1 90 "truncated body on every answer" --truncate-blob "$BIG:$CUT" --truncate-always
assert_contains "$WORK/err" "${BIG:0:19}" "the error names the blob"
assert_contains "$WORK/err" "gave up" "the error says it gave up"
assert_eq "$(wc -l <"$WORK/err")" 1 "one line on stderr"
printf '# stderr: %s\n' "$(cat "$WORK/err")"
n=$(grep -c "/blobs/$BIG " "$PLOG")
((n <= 20)) || fail "$n GETs of the large blob before giving up: unbounded"
pass "gave up after $n GETs of the large blob"

# ---- the registry stopped and started again (same port, same storage) mid-transfer ------------
start_proxy slow "$reg_REG_URL" --rate $((4 * MiB))
S=$WORK/store-restart
t0=$SECONDS
"$cs" --store "$S" pull --to store "$slow_REG/$REPO:v1" >"$WORK/restart.out" 2>"$WORK/restart.err" &
pid=$!
part=$S/partial/${BIG#sha256:}
for ((i = 0; i < 400; i++)); do
    (($(stat -c %s "$part" 2>/dev/null || echo 0) >= 4 * MiB)) && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
got=$(stat -c %s "$part" 2>/dev/null || echo 0)
((got >= 4 * MiB)) || fail "the throttled pull never had 4 MiB of the large blob (has $got)"
restart_registry reg 2
pass "registry stopped for 2 s and started again on its port, $got bytes into the large blob"
rc=0
wait "$pid" || rc=$?
cp "$WORK/restart.err" "$WORK/err"
assert_eq "$rc" 0 "the pull survives the registry restart"
no_crash "$WORK/err" || fail "sanitizer report"
PLOG=$slow_LOG
assert_resumed "registry restart"
assert_store_ok "$S" "registry restart: the store verifies"
store_complete "$S" || fail "registry restart: the store lacks a blob"
pass "registry restart: the store holds the whole image ($((SECONDS - t0)) s)"
stop_proxy slow
figure network.registry-restart-pull.exit0 1

# ---- push through faults -------------------------------------------------------------------
N_PUSH=0
push_case() { # EXPECT MAX_SECONDS WHAT PROXY-ARGS...
    local want=$1 max=$2 what=$3 t0 name prepo
    shift 3
    N_PUSH=$((N_PUSH + 1))
    name=u$N_PUSH
    prepo=net/push-$N_PUSH
    start_proxy "$name" "$reg_REG_URL" "$@"
    local preg=${name}_REG
    PLOG=$WORK/$name.log
    t0=$SECONDS
    assert_clean_exit "$want" "$what: push exits $want" -- \
        "$cs" -q --store "$WORK/store-$name" push "oci:$WORK/layout:v1" "${!preg}/$prepo:v1"
    SECS=$((SECONDS - t0))
    ((SECS <= max)) || fail "$what: the push took $SECS s (bound: $max s)"
    pass "$what: done in $SECS s (bound $max s)"
    if ((want == 0)); then
        curl -sf -H "$ACCEPT_MANIFESTS" -o "$WORK/m.json" "$reg_REG_URL/v2/$prepo/manifests/v1" ||
            fail "$what: no manifest in the registry"
        assert_eq "sha256:$(sha256sum <"$WORK/m.json" | cut -d' ' -f1)" "$MANIFEST" \
            "$what: the registry holds the manifest, byte for byte"
        registry_blobs_ok "$reg_REG_URL" "$prepo" "$WORK/m.json" ||
            fail "$what: a blob is missing or wrong in the registry"
        pass "$what: every blob is in the registry and verifies"
    fi
    figure "network.push.$(tr ' ' '-' <<<"${what%% (*}").exit$want" 1
    stop_proxy "$name"
}
push_case 0 30 "503 x3 on upload requests" --status-burst 503:3 --burst-on upload
assert_eq "$(grep -c 'uploads/.*status=503' "$PLOG")" 3 "503 on uploads three times"
push_case 0 30 "500 x3 on blob HEADs" --status-burst 500:3 --burst-on head
push_case 0 30 "429 x2 on the manifest PUT" --status-burst 429:2 --burst-on manifest-put
assert_contains "$PLOG" "^PUT /v2/net/push-3/manifests/v1 .*status=429" "the manifest PUT got a 429"
push_case 0 30 "connection reset 10 MiB into an upload" --drop-upload-after $((10 * MiB))
assert_contains "$PLOG" "fault=drop@$((10 * MiB))" "the proxy dropped the upload"

# the registry restarted in the middle of a throttled upload
start_proxy slowup "$reg_REG_URL" --rate-up $((4 * MiB))
prepo=net/push-restart
"$cs" -q --store "$WORK/store-pr" push "oci:$WORK/layout:v1" "$slowup_REG/$prepo:v1" \
    >"$WORK/pr.out" 2>"$WORK/pr.err" &
pid=$!
for ((i = 0; i < 300; i++)); do
    n=$(find "$reg_DIR/data" -path '*/net/push-restart/_uploads/*' -name data -size +4M 2>/dev/null | wc -l)
    ((n > 0)) && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
((n > 0)) || fail "the registry never held 4 MiB of the throttled upload"
restart_registry reg 1
pass "registry stopped for 1 s and started again, 4 MiB into an upload"
rc=0
wait "$pid" || rc=$?
cp "$WORK/pr.err" "$WORK/err"
printf '# stderr: %s\n' "$(head -c 300 "$WORK/err")"
assert_eq "$rc" 0 "the push survives the registry restart mid-upload"
assert_contains "$slowup_LOG" "uploads/.*(note=upstream-error|status=502)" \
    "the proxy saw the registry go during the upload"
curl -sf -H "$ACCEPT_MANIFESTS" -o "$WORK/m.json" "$reg_REG_URL/v2/$prepo/manifests/v1" ||
    fail "no manifest after the push across the restart"
assert_eq "sha256:$(sha256sum <"$WORK/m.json" | cut -d' ' -f1)" "$MANIFEST" \
    "registry restart mid-upload: the manifest is the expected one"
registry_blobs_ok "$reg_REG_URL" "$prepo" "$WORK/m.json" || fail "a blob is missing after the restart"
pass "registry restart mid-upload: every blob is there and verifies"
stop_proxy slowup
figure network.registry-restart-push.exit0 1

# ---- the two long cases started first -----------------------------------------------------------
wait "$day_pid" || true
read -r rc secs <"$WORK/day.rc"
cp "$WORK/day.err" "$WORK/err"
assert_eq "$rc" 0 "429 with Retry-After: 86400 on the large blob: the pull completes"
((secs <= 75)) || fail "429 with Retry-After: 86400: the pull took $secs s; the wait must be capped"
pass "429 with Retry-After: 86400: done in $secs s (the wait is capped)"
figure network.429-retry-after-a-day.exit0 1

wait "$stall_pid" || true
read -r rc secs <"$WORK/stall.rc"
cp "$WORK/stall.err" "$WORK/err"
assert_eq "$rc" 0 "a stall of 70 s mid-blob: the pull completes"
((secs < 70)) || fail "stall of 70 s: the pull took $secs s, it waited the stall out instead of resuming"
pass "stall of 70 s: done in $secs s (the stall was detected and the blob resumed)"
PLOG=$stall_LOG
assert_contains "$PLOG" "/blobs/$BIG .*fault=stall@$CUT" "the proxy stalled the large blob at $CUT"
assert_resumed "stall of 70 s"
assert_store_ok "$WORK/store-stall" "stall: the store verifies"
figure network.stall-80s.exit0 1
fl_finish
