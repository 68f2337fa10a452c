#!/usr/bin/env bash
# cachesync pull under network faults: a kill -9 in the middle of a large layer resumes from
# the partial file; a reset or truncated connection is resumed within one run; a corrupted
# layer is refused (exit 5) with nothing kept or loaded; a 503 burst is retried; a registry
# that is down fails with one line. tests/integration/faultproxy.py stands between cachesync
# and a real registry, to which a real dockerd pushed an image with one large random layer.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl sha256sum

cs=$CACHESYNC
. "$CS_SRCDIR/tests/integration/faultproxy.sh"

# Sum of the body bytes a proxy sent for DIGEST's GETs, and the Range headers it saw.
blob_bytes() { # LOG DIGEST
    awk -v d="/blobs/$2" '$1 == "GET" && index($2, d) { sub("bytes=", "", $5); n += $5 }
        END { print n + 0 }' "$1"
}
blob_ranges() { # LOG DIGEST
    awk -v d="/blobs/$2" '$1 == "GET" && index($2, d) { print $3 }' "$1"
}
file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# ---- the image: machine A builds and pushes one large layer of random (incompressible) data --
start_registry reg
start_dockerd a
make_base_image a
ctx=$WORK/ctx
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<'DF'
FROM localbase:1
RUN dd if=/dev/urandom of=/big.bin bs=1048576 count=48 2>/dev/null
RUN echo faults-v1 > /hello.txt
DF
REPO=team/big
build_image a "$ctx" "$reg_REG/$REPO:v1"
docker_cli a push "$reg_REG/$REPO:v1" >"$WORK/push.log" 2>&1 ||
    fail "docker push: $(tail -3 "$WORK/push.log")"
curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "$reg_REG_URL/v2/$REPO/manifests/v1" -o "$WORK/manifest.json"
big=$(jq -r '.layers | max_by(.size) | .digest' "$WORK/manifest.json")
big_size=$(jq -r '.layers | max_by(.size) | .size' "$WORK/manifest.json")
big_hex=${big#sha256:}
small=$(jq -r '.layers[-1].digest' "$WORK/manifest.json")
((big_size > 48 * 1024 * 1024)) || fail "the large layer is only $big_size bytes (compressed?)"
pass "machine A pushed $REPO:v1 with a $big_size-byte layer ${big:0:19}"

# ---- 1. kill -9 in the middle of the large layer, then resume ----------------------------------
S=$WORK/store-kill
start_proxy slow "$reg_REG_URL" --rate $((8 * 1024 * 1024))
"$cs" --store "$S" pull --to store "$slow_REG/$REPO:v1" >"$WORK/kill.out" 2>"$WORK/kill.err" &
cs_pid=$!
part=$S/partial/$big_hex
for ((i = 0; i < 400; i++)); do
    (($(file_size "$part") >= 6 * 1024 * 1024)) && break
    kill -0 "$cs_pid" 2>/dev/null || break
    sleep 0.05
done
kill -9 "$cs_pid" 2>/dev/null || true
wait "$cs_pid" 2>/dev/null || true
stop_proxy slow
part_size=$(file_size "$part")
((part_size >= 6 * 1024 * 1024 && part_size < big_size)) ||
    fail "partial after kill -9 is $part_size bytes (want 6 MiB..$big_size); stderr: $(tail -3 "$WORK/kill.err")"
pass "kill -9 left a $part_size-byte partial of the large layer"
[[ ! -e $S/blobs/sha256/$big_hex ]] || fail "the killed download is in blobs/ already"
pass "the killed download is not in blobs/sha256"

start_proxy fast "$reg_REG_URL"
assert_exit 0 "the pull after kill -9 completes" -- \
    "$cs" --store "$S" --json pull --to store "$fast_REG/$REPO:v1"
cp "$WORK/out" "$WORK/resume.json"
assert_eq "$(sha256sum <"$S/blobs/sha256/$big_hex" | cut -d' ' -f1)" "$big_hex" \
    "the resumed large layer is in blobs/ and verifies"
[[ ! -e $part ]] || fail "partial/$big_hex is left over after the resumed pull"
pass "no partial is left for it"
range=$(blob_ranges "$fast_LOG" "$big" | head -n 1)
[[ $range =~ ^range=bytes=([1-9][0-9]*)-$ ]] ||
    fail "the resumed GET asked for '$range', expected range=bytes=N- with N > 0"
from=${BASH_REMATCH[1]}
pass "the resumed GET asked for ${range#range=}"
sent=$(blob_bytes "$fast_LOG" "$big")
((sent == big_size - from)) ||
    fail "the registry sent $sent bytes of the large layer, expected $((big_size - from))"
pass "the resumed run fetched $sent of $big_size bytes from the registry"
fetched=$(jq -r .layers.bytes_fetched "$WORK/resume.json")
((fetched < big_size)) || fail "--json bytes_fetched is $fetched, not below the layer's $big_size"
pass "--json .layers.bytes_fetched ($fetched) is below the layer size"
stop_proxy fast

# ---- 2. a connection reset and a truncated body are resumed within one run ---------------------
cut=$((16 * 1024 * 1024))
for fault in reset truncate; do
    S=$WORK/store-$fault
    start_proxy "p$fault" "$reg_REG_URL" "--$fault-blob" "$big:$cut"
    preg=p${fault}_REG log=p${fault}_LOG
    assert_exit 0 "a $fault mid-blob: the pull completes in one run" -- \
        "$cs" --store "$S" pull --to store "${!preg}/$REPO:v1"
    assert_contains "${!log}" "/blobs/$big .*fault=$fault@$cut" "the proxy did $fault the large layer at $cut"
    range=$(blob_ranges "${!log}" "$big" | sed -n 2p)
    [[ $range =~ ^range=bytes=([1-9][0-9]*)-$ ]] ||
        fail "after the $fault the GET asked for '$range', expected a resume (bytes=N-, N > 0)"
    pass "after the $fault it resumed with ${range#range=}"
    assert_eq "$(sha256sum <"$S/blobs/sha256/$big_hex" | cut -d' ' -f1)" "$big_hex" \
        "after a $fault the large layer verifies"
    stop_proxy "p$fault"
done

# ---- 3. a corrupted layer: exit 5, nothing kept, nothing loaded ----------------------------------
start_dockerd b
S=$WORK/store-corrupt
start_proxy bad "$reg_REG_URL" --corrupt-blob "$big"
BADREF=$bad_REG/$REPO:v1
assert_exit 5 "a corrupted layer fails with exit 5 (integrity)" -- \
    env DOCKER_HOST="$b_DOCKER_HOST" "$cs" -v -v --store "$S" pull --to docker "$BADREF"
cp "$WORK/err" "$WORK/corrupt.err"
# the load streams while the layers download: it had started when the corruption showed
assert_contains "$WORK/corrupt.err" "> POST .*/images/load" "the daemon load had started during the download"
assert_contains "$bad_LOG" "/blobs/$big .*fault=corrupt@" "the proxy corrupted the large layer"
assert_contains "$WORK/corrupt.err" "$big" "stderr names the corrupted digest"
if docker_cli b image inspect "$BADREF" >/dev/null 2>&1; then
    fail "daemon B has $BADREF after a failed pull"
fi
pass "daemon B has no $BADREF"
assert_eq "$(docker_cli b images -aq | wc -l)" 0 "daemon B loaded nothing at all"
[[ ! -e $S/blobs/sha256/$big_hex ]] || fail "the corrupted layer is in blobs/sha256"
pass "the corrupted layer is not in blobs/sha256"
[[ ! -e $S/partial/$big_hex ]] || fail "a partial of the corrupted layer is kept ($(file_size "$S/partial/$big_hex") bytes)"
pass "no partial is kept for the corrupted layer"
stop_proxy bad

# ---- 4. a burst of 503s is retried ------------------------------------------------------------
# First on whatever blob comes first (the config, read while resolving), then on the large
# layer only (the parallel layer fetch).
for burst in 503:3 "503:3:$big"; do
    S=$WORK/store-503-${#burst}
    what="503:3 on the first blob GETs"
    [[ $burst == *:sha256:* ]] && what="503:3 on the large layer"
    start_proxy busy "$reg_REG_URL" --status-burst "$burst"
    assert_exit 0 "$what: the pull completes after retries" -- \
        "$cs" --store "$S" pull --to store "$busy_REG/$REPO:v1"
    assert_eq "$(grep -c ' status=503 .*fault=status' "$busy_LOG")" 3 "the proxy answered 503 three times"
    if [[ $burst == *:sha256:* ]]; then
        assert_eq "$(grep -c "/blobs/$big .*status=503" "$busy_LOG")" 3 "the 503s hit the large layer"
    fi
    assert_eq "$(sha256sum <"$S/blobs/sha256/$big_hex" | cut -d' ' -f1)" "$big_hex" \
        "after the 503s the large layer verifies"
    [[ -f $S/blobs/sha256/${small#sha256:} ]] || fail "the small layer is missing after the 503s"
    pass "after the 503s the small layer is there too"
    stop_proxy busy
    mv "$busy_LOG" "$WORK/busy-${#burst}.log"
done

# ---- 5. the registry is down: exit 1, one line naming it ------------------------------------
stop_env reg
assert_exit 1 "registry down: exit 1" -- \
    "$cs" -q --store "$WORK/store-down" pull --to store "$reg_REG/$REPO:v1"
assert_eq "$(wc -l <"$WORK/err")" 1 "registry down: one line on stderr"
assert_contains "$WORK/err" "$reg_REG" "registry down: the error names $reg_REG"
