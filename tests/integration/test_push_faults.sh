#!/usr/bin/env bash
# cachesync push under faults, with an image that a real dockerd built with one large random
# layer (over 64 MiB compressed: two PATCH chunks): the layer goes up as it is compressed, and
# when the registry holds it already that upload is cancelled; a registry connection that dies in the
# middle of the upload is retried with a new upload session within the same run; a registry
# that is stopped during the upload fails with exit 1 and one line, and the next push to a
# working registry succeeds; on a token registry whose tokens expire every 2 s a slow upload
# renews its token (401, new token, the same chunk again) and completes.
# tests/integration/faultproxy.py stands between cachesync and the registries. docker-registry
# accepts a token until 60 s after its exp (distribution's token.Leeway), so for the 2-second
# tokens to bite the proxy refuses expired ones itself (--expire-tokens), with the registry's
# challenge and before reading the body, as a registry does.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl sha256sum

cs=$CACHESYNC
. "$CS_SRCDIR/tests/integration/faultproxy.sh"
MiB=$((1024 * 1024))

t_start=$SECONDS
took() { printf '# %s: %s s\n' "$1" $((SECONDS - t_start)); }

# The upload requests a proxy logged for REPO, in order: METHOD crange=... status=... up=...
uploads() { # LOG REPO
    awk -v p="/v2/$2/blobs/uploads/" 'index($2, p) == 1 && $2 !~ /[?&]mount=/ {
        c = "-"; s = ""; u = ""; f = ""
        for (i = 3; i <= NF; i++) {
            if ($i ~ /^crange=/) c = substr($i, 8)
            else if ($i ~ /^status=/) s = substr($i, 8)
            else if ($i ~ /^up=/) u = substr($i, 4)
            else if ($i ~ /^fault=/) f = " " $i
        }
        print $1, c, s, u f }' "$1"
}
# Sum of the sizes of the upload sessions a registry holds on disk.
upload_bytes() { # REGISTRY_DIR
    find "$1/data" -path '*/_uploads/*' -name data -type f -printf '%s\n' 2>/dev/null |
        awk '{ n += $1 } END { print n + 0 }'
}
accept='Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json'

# ---- the image: one layer of 80 MiB of random (incompressible) data ----------------------------
start_registry reg
start_dockerd a
make_base_image a
ctx=$WORK/ctx
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<'DF'
FROM localbase:1
RUN dd if=/dev/urandom of=/big.bin bs=1048576 count=80 2>/dev/null
RUN echo push-faults > /hello.txt
DF
build_image a "$ctx" bigapp:1
REPO=team/big
took "image built"

# ---- 0. a large new layer goes up while it is compressed --------------------------------------
# An empty store knows no layer, so the large one is compressed as the export streams it, and
# once its blob passes one upload chunk (64 MiB) an uploader follows the file with PATCHes;
# its digest, known at the end, closes the upload.
SREF=$reg_REG/team/stream:v1
assert_exit 0 "push from an empty store" -- env DOCKER_HOST="$a_DOCKER_HOST" \
    CACHESYNC_STORE="$WORK/store0" "$cs" push --json docker:bigapp:1 "$SREF"
cp "$WORK/out" "$WORK/stream.json"
curl -sf -H "$accept" "$reg_REG_URL/v2/team/stream/manifests/v1" -o "$WORK/stream-m.json" ||
    fail "the manifest is not in the registry"
sbig=$(jq -r '.layers | max_by(.size) | .digest' "$WORK/stream-m.json")
assert_contains "$WORK/err" "^${sbig:0:19} uploaded as it was compressed \(" \
    "the large layer ${sbig:0:19} went up as it was compressed"
assert_eq "sha256:$(curl -sf "$reg_REG_URL/v2/team/stream/blobs/$sbig" | sha256sum | cut -d' ' -f1)" \
    "$sbig" "the large layer the registry serves has its digest"
assert_eq "$(jq -r '.blobs.uploaded == .blobs.total' "$WORK/stream.json")" true "--json: every blob uploaded"
nput=$(grep -cE '"PUT /v2/team/stream/blobs/uploads/[^ ]*digest=' "$reg_DIR/log" || true)
# The same push from another empty store: the layer is compressed (and followed) again, and
# its digest, once known, is one the registry holds: that session is cancelled, not committed.
assert_exit 0 "the same push again from another empty store" -- env DOCKER_HOST="$a_DOCKER_HOST" \
    CACHESYNC_STORE="$WORK/store0b" "$cs" push --json docker:bigapp:1 "$SREF"
assert_contains "$WORK/err" "^${sbig:0:19} exists \(found once compressed, after [0-9.]+ MB of it were sent\)" \
    "the large layer found present once its digest was known"
assert_eq "$(jq -r .blobs.uploaded "$WORK/out") $(jq -r '.blobs.present == .blobs.total' "$WORK/out")" "0 true" \
    "--json: nothing uploaded, every blob present"
assert_eq "$(grep -cE '"PUT /v2/team/stream/blobs/uploads/[^ ]*digest=' "$reg_DIR/log" || true)" "$nput" \
    "no blob committed a second time"
took "streamed upload"

export CACHESYNC_STORE=$WORK/store # shared: the large layer is compressed once

# ---- 1. the registry connection dies 20 MiB into the large layer --------------------------------
start_proxy drop "$reg_REG_URL" --drop-upload-after $((20 * MiB))
REF=$drop_REG/$REPO:v1
# cachesync restarts an upload whose connection broke with a new session (registry_push.c
# cs_registry_upload_blob, up to 3 tries), so the push completes in this same run.
assert_exit 0 "connection dropped mid-upload: the push completes in the same run" -- \
    env DOCKER_HOST="$a_DOCKER_HOST" "$cs" push --json docker:bigapp:1 "$REF"
cp "$WORK/out" "$WORK/drop.json"
cp "$WORK/err" "$WORK/drop.err"
curl -sf -H "$accept" "$reg_REG_URL/v2/$REPO/manifests/v1" -o "$WORK/manifest.json" ||
    fail "the manifest is not in the registry after the push"
pass "the manifest is in the registry"
assert_eq "sha256:$(sha256sum <"$WORK/manifest.json" | cut -d' ' -f1)" \
    "$(jq -r .digest "$WORK/drop.json")" "the registry holds the manifest --json reported"
big=$(jq -r '.layers | max_by(.size) | .digest' "$WORK/manifest.json")
big_size=$(jq -r '.layers | max_by(.size) | .size' "$WORK/manifest.json")
((big_size > 64 * MiB)) || fail "the large layer is only $big_size bytes: not two chunks"
pass "the large layer ${big:0:19} is $big_size bytes (two PATCH chunks)"
uploads "$drop_LOG" "$REPO" >"$WORK/drop.uploads"
sed 's/^/#   /' "$WORK/drop.uploads"
assert_contains "$WORK/drop.uploads" "^PATCH 0-$((64 * MiB - 1)) 0 $((20 * MiB)) fault=drop@$((20 * MiB))$" \
    "the proxy dropped the first PATCH chunk after 20 MiB"
# The dropped PATCH was the upload that follows the layer as it is compressed (the store is
# empty: the layer is new); its failure leaves the blob to the usual upload once complete.
# After the drop: a new session (POST), both chunks again, and the closing PUT (the small
# blobs' POST + PUT may come in between).
sed -n '/fault=drop/,$p' "$WORK/drop.uploads" | tail -n +2 >"$WORK/after-drop"
tail_chunk="$((64 * MiB))-$((big_size - 1))"
assert_eq "$(grep -E '^PATCH ' "$WORK/after-drop" | head -2 | cut -d' ' -f1-3 | tr '\n' ' ')" \
    "PATCH 0-$((64 * MiB - 1)) 202 PATCH $tail_chunk 202 " \
    "after the drop cachesync sent both chunks again from the start"
assert_eq "$(awk '/^POST - 202/ { post = 1 } /^PATCH/ { print post + 0; exit }' "$WORK/after-drop")" 1 \
    "in a new session (a POST after the drop)"
assert_contains "$WORK/after-drop" "^PUT - 201 0$" "the closing PUT (no body) completed the upload"
assert_eq "$(jq -r '.blobs.uploaded == .blobs.total' "$WORK/drop.json")" true \
    "--json: every blob uploaded"
printf '# --json blobs: %s\n' "$(jq -c .blobs "$WORK/drop.json")"
took "push through a dropped connection"

# A second push through the same proxy (its one drop is used up): nothing left to do.
assert_exit 0 "a second push through the proxy" -- \
    env DOCKER_HOST="$a_DOCKER_HOST" "$cs" push --json docker:bigapp:1 "$REF"
assert_eq "$(jq -r .blobs.bytes_uploaded "$WORK/out")" 0 "the second push uploads nothing"
assert_eq "$(jq -r .blobs.present "$WORK/out")" "$(jq -r .blobs.total "$WORK/out")" \
    "the second push finds every blob present"
curl -sf -H "$accept" "http://$drop_REG/v2/$REPO/manifests/v1" -o "$WORK/m2.json" ||
    fail "curl of the manifest through the proxy"
cmp -s "$WORK/m2.json" "$WORK/manifest.json" || fail "the manifest changed"
pass "curl reads the manifest"
code=$(curl -s -I -o "$WORK/head.hdr" -w '%{http_code}' "$reg_REG_URL/v2/$REPO/blobs/$big")
assert_eq "$code $(tr -d '\r' <"$WORK/head.hdr" | sed -n 's/^content-length: *//Ip')" "200 $big_size" \
    "the large layer HEADs 200 with its size"
assert_eq "sha256:$(curl -sf "$reg_REG_URL/v2/$REPO/blobs/$big" | sha256sum | cut -d' ' -f1)" "$big" \
    "the large layer the registry serves has its digest"
stop_proxy drop
took "second push"

# ---- 2. the registry is stopped in the middle of a (throttled) upload ---------------------------
start_registry dead
start_proxy slow "$dead_REG_URL" --rate-up $((16 * MiB))
env DOCKER_HOST="$a_DOCKER_HOST" "$cs" -q push docker:bigapp:1 "$slow_REG/$REPO:v1" \
    >"$WORK/dead.out" 2>"$WORK/dead.err" &
cs_pid=$!
for ((i = 0; i < 300; i++)); do
    (($(upload_bytes "$dead_DIR") >= 8 * MiB)) && break
    kill -0 "$cs_pid" 2>/dev/null || break
    sleep 0.05
done
got=$(upload_bytes "$dead_DIR")
((got >= 8 * MiB)) || fail "the registry never held 8 MiB of the upload (has $got): $(cat "$WORK/dead.err")"
# The registry goes, and with it its address: the proxy in front of it too.
stop_env dead
stop_proxy slow
rc=0
wait "$cs_pid" || rc=$?
cp "$WORK/dead.err" "$WORK/err"
assert_eq "$rc" 1 "registry stopped mid-upload ($got bytes in): exit 1"
assert_eq "$(wc -l <"$WORK/err")" 1 "registry stopped mid-upload: one line on stderr"
printf '# stderr: %s\n' "$(cat "$WORK/err")"
assert_contains "$WORK/err" "$slow_REG" "the error names the registry $slow_REG"
assert_contains "$WORK/slow.log" "^PATCH .* note=upstream-error" \
    "the proxy saw the registry go during the PATCH"
took "registry stopped"

start_registry fresh
assert_exit 0 "then a push to a working registry succeeds" -- \
    env DOCKER_HOST="$a_DOCKER_HOST" "$cs" push --json docker:bigapp:1 "$fresh_REG/$REPO:v1"
assert_eq "$(jq -r .blobs.uploaded "$WORK/out")" "$(jq -r .blobs.total "$WORK/out")" \
    "every blob uploaded to the working registry"
code=$(curl -s -I -o "$WORK/head.hdr" -w '%{http_code}' "$fresh_REG_URL/v2/$REPO/blobs/$big")
assert_eq "$code $(tr -d '\r' <"$WORK/head.hdr" | sed -n 's/^content-length: *//Ip')" "200 $big_size" \
    "the working registry has the large layer with its size"
stop_env fresh
took "push to a working registry"

# ---- 3. tokens that expire every 2 s, an upload that takes several times that -----------------
start_registry tok --token --htpasswd alice:pw --token-expires-in 2
TLOG=$tok_REG_TOKEN_LOG
start_proxy tokp "$tok_REG_URL" --rate-up $((20 * MiB)) --expire-tokens
printf '%s' "$tok_REG_PASS" | docker_cli a login -u "$tok_REG_USER" --password-stdin "$tokp_REG" \
    >"$WORK/login.log" 2>&1 || fail "docker login to $tokp_REG: $(cat "$WORK/login.log")"
jq -e --arg r "$tokp_REG" '.auths[$r].auth' "$DOCKER_CONFIG/config.json" >/dev/null ||
    fail "docker login did not write auths[$tokp_REG].auth"
pass "docker login to the token registry (through the proxy)"
tmark=$(wc -l <"$TLOG")
t0=$SECONDS
assert_exit 0 "push with 2-second tokens and a 4-second upload" -- \
    env DOCKER_HOST="$a_DOCKER_HOST" "$cs" push --json docker:bigapp:1 "$tokp_REG/$REPO:v1"
cp "$WORK/out" "$WORK/tok.json"
printf '# push took %s s (--json seconds: %s)\n' $((SECONDS - t0)) "$(jq -r .seconds "$WORK/tok.json")"
tail -n "+$((tmark + 1))" "$TLOG" >"$WORK/tlog"
ntok=$(grep -c ' status=200 authorization=basic user=alice .*scope=repository:team/big:' "$WORK/tlog" || true)
((ntok >= 2)) || fail "the token server issued $ntok tokens to alice during the push, expected several"
pass "the token server issued $ntok tokens to alice during the push (renewed)"
uploads "$tokp_LOG" "$REPO" >"$WORK/tok.uploads"
sed 's/^/#   /' "$WORK/tok.uploads"
assert_contains "$WORK/tok.uploads" "^PATCH [0-9-]+ 401 .*fault=expired-token" \
    "a PATCH chunk was refused with 401 (its token expired during the previous chunk)"
chunk=$(awk '$1 == "PATCH" && $3 == 401 { print $2; exit }' "$WORK/tok.uploads")
assert_eq "$(awk -v c="$chunk" '$1 == "PATCH" && $2 == c { s = $3 } END { print s }' "$WORK/tok.uploads")" 202 \
    "the refused chunk $chunk was sent again with a new token and accepted"
assert_eq "$(awk '$1 == "PATCH" && $3 == 202 { print $2 }' "$WORK/tok.uploads" | sort -u | wc -l)" 2 \
    "both chunks accepted"
tok=$(curl -sf -u "$tok_REG_USER:$tok_REG_PASS" -G --data-urlencode service=cachesync-test \
    --data-urlencode "scope=repository:$REPO:pull" "$tok_REG_TOKEN_URL" | jq -r '.token // .access_token')
curl -sf -H "$accept" -H "Authorization: Bearer $tok" "$tok_REG_URL/v2/$REPO/manifests/v1" \
    -o "$WORK/tok-manifest.json" || fail "the manifest is not in the token registry"
assert_eq "sha256:$(sha256sum <"$WORK/tok-manifest.json" | cut -d' ' -f1)" \
    "$(jq -r .digest "$WORK/tok.json")" "the token registry holds the manifest --json reported"
code=$(curl -s -I -o "$WORK/head.hdr" -w '%{http_code}' -H "Authorization: Bearer $tok" \
    "$tok_REG_URL/v2/$REPO/blobs/$big")
assert_eq "$code $(tr -d '\r' <"$WORK/head.hdr" | sed -n 's/^content-length: *//Ip')" "200 $big_size" \
    "the token registry has the large layer with its size"
took "token renewal"
