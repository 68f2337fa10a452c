#!/usr/bin/env bash
# cachesync pull of an image whose layers are zstd (an OCI manifest with tar+zstd layers) into
# Docker 20.10, which cannot load zstd layers itself: cachesync sends them as plain tars, and
# the daemon ends up with the image under its config digest, runnable. The zstd variant is
# made here from an image a real dockerd built and pushed (gzip layers), through the
# registry API: same config (so the same diff_ids), recompressed layers.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl zstd gzip sha256sum

cs=$CACHESYNC
start_registry reg
start_dockerd a
R=$reg_REG
U=$reg_REG_URL
REPO=team/zz
GZREF=$R/$REPO:gzip
REF=$R/$REPO:zstd

# Machine A: a small image with a file of known content and one of random content.
make_base_image a
ctx=$WORK/ctx
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<'DF'
FROM localbase:1
RUN echo "made by the build: zstd-$((6 * 7))" > /made.txt
RUN dd if=/dev/urandom of=/rand.bin bs=1024 count=512 2>/dev/null
DF
build_image a "$ctx" "$GZREF"
docker_cli a push "$GZREF" >"$WORK/push.log" 2>&1 || fail "docker push: $(tail -3 "$WORK/push.log")"
rand_a=$(docker_cli a run --rm --network=none "$GZREF" cat /rand.bin | sha256sum)

# ---- publish the zstd variant with the registry API ---------------------------------------
curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "$U/v2/$REPO/manifests/gzip" -o "$WORK/gz-manifest.json"
config=$(jq -r .config.digest "$WORK/gz-manifest.json")
curl -sf "$U/v2/$REPO/blobs/$config" -o "$WORK/config.json"
assert_eq "sha256:$(sha256sum <"$WORK/config.json" | cut -d' ' -f1)" "$config" "the config blob verifies"
nlayers=$(jq '.layers | length' "$WORK/gz-manifest.json")

push_blob() { # FILE DIGEST
    local loc sep code
    loc=$(curl -sf -X POST -D - -o /dev/null "$U/v2/$REPO/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    [[ -n $loc ]] || fail "no upload location for $2"
    [[ $loc == /* ]] && loc=$U$loc
    [[ $loc == *\?* ]] && sep='&' || sep='?'
    code=$(curl -s -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" \
        -o "$WORK/put.out" -w '%{http_code}' "$loc${sep}digest=$2")
    [[ $code == 201 ]] || fail "PUT blob $2: HTTP $code $(cat "$WORK/put.out")"
}

layers_json='[]'
mkdir -p "$WORK/layers"
for ((i = 0; i < nlayers; i++)); do
    gz=$(jq -r ".layers[$i].digest" "$WORK/gz-manifest.json")
    diff_id=$(jq -r ".rootfs.diff_ids[$i]" "$WORK/config.json")
    f=$WORK/layers/$i
    curl -sf "$U/v2/$REPO/blobs/$gz" -o "$f.gz"
    gzip -dc <"$f.gz" >"$f.tar"
    [[ sha256:$(sha256sum <"$f.tar" | cut -d' ' -f1) == "$diff_id" ]] ||
        fail "layer $i uncompresses to something else than its diff_id $diff_id"
    zstd -q -3 -c <"$f.tar" >"$f.zst"
    zd=sha256:$(sha256sum <"$f.zst" | cut -d' ' -f1)
    push_blob "$f.zst" "$zd"
    layers_json=$(jq -c --arg d "$zd" --argjson s "$(stat -c %s "$f.zst")" \
        '. + [{mediaType: "application/vnd.oci.image.layer.v1.tar+zstd", digest: $d, size: $s}]' \
        <<<"$layers_json")
    printf '%s\n' "$zd" >>"$WORK/zstd-digests"
done
jq -n --arg c "$config" --argjson cs "$(stat -c %s "$WORK/config.json")" --argjson l "$layers_json" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
      layers: $l}' >"$WORK/zstd-manifest.json"
code=$(curl -s -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$WORK/zstd-manifest.json" -o "$WORK/put.out" -w '%{http_code}' \
    "$U/v2/$REPO/manifests/zstd")
[[ $code == 201 ]] || fail "PUT manifest: HTTP $code $(cat "$WORK/put.out")"
curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$U/v2/$REPO/manifests/zstd" |
    jq -r '.layers[].mediaType' | sort -u >"$WORK/served-types"
assert_eq "$(cat "$WORK/served-types")" application/vnd.oci.image.layer.v1.tar+zstd \
    "the registry serves $REF with $nlayers zstd layers"

# ---- machine B: a fresh Docker 20.10 ----------------------------------------------------
start_dockerd b
major=$(docker_cli b version -f '{{.Server.Version}}' | cut -d. -f1)
((major < 23)) || skip "daemon B is Docker $major, which loads zstd itself: nothing to prove"

# Proof that transcoding is needed: a docker-archive holding the zstd blobs as they are fails.
raw=$WORK/raw
mkdir -p "$raw"
cp "$WORK/config.json" "$raw/${config#sha256:}.json"
lay='[]'
for ((i = 0; i < nlayers; i++)); do
    cp "$WORK/layers/$i.zst" "$raw/layer$i.tar"
    lay=$(jq -c --arg p "layer$i.tar" '. + [$p]' <<<"$lay")
done
jq -n --arg c "${config#sha256:}.json" --argjson l "$lay" \
    '[{Config: $c, RepoTags: ["zstd-raw:1"], Layers: $l}]' >"$raw/manifest.json"
tar -C "$raw" -cf "$WORK/raw.tar" .
if docker_cli b load -i "$WORK/raw.tar" >"$WORK/raw-load.log" 2>&1; then
    fail "Docker $major loaded raw zstd layers: $(cat "$WORK/raw-load.log")"
fi
pass "docker load of the raw zstd layers fails on Docker $major: $(tail -n 1 "$WORK/raw-load.log")"
assert_eq "$(docker_cli b images -aq | wc -l)" 0 "the failed load left no image on B"

# cachesync pull into B.
S=$WORK/store-b
assert_exit 0 "cachesync pull of the zstd image into Docker $major" -- \
    env DOCKER_HOST="$b_DOCKER_HOST" "$cs" --store "$S" pull --json "$REF"
cp "$WORK/out" "$WORK/pull.json"
cp "$WORK/err" "$WORK/pull.err"
assert_contains "$WORK/pull.err" "zstd.*cannot load.*plain tar" "stderr notes the transcoding"
assert_eq "$(grep -c 'is zstd' "$WORK/pull.err")" "$nlayers" "every layer is transcoded"
assert_eq "$(jq -r .config_digest "$WORK/pull.json")" "$config" "JSON: the config digest is the original"
assert_eq "$(jq -r .layers.fetched "$WORK/pull.json")" "$nlayers" "JSON: all layers fetched"
assert_eq "$(docker_cli b image inspect -f '{{.Id}}' "$REF")" "$config" \
    "B's $REF has the config digest as Id"
docker_cli b run --rm --network=none "$REF" cat /made.txt >"$WORK/made.txt" 2>&1 ||
    fail "docker run $REF: $(cat "$WORK/made.txt")"
assert_eq "$(cat "$WORK/made.txt")" "made by the build: zstd-42" "the container reads the file the build made"
assert_eq "$(docker_cli b run --rm --network=none "$REF" cat /rand.bin | sha256sum)" "$rand_a" \
    "the random file on B is A's, byte for byte"

# The store keeps the zstd blobs as served, and the plain tars under their diff_ids.
while read -r zd; do
    [[ -f $S/blobs/sha256/${zd#sha256:} ]] || fail "store lacks zstd blob $zd"
done <"$WORK/zstd-digests"
pass "the store holds the zstd blobs as the registry served them"
for d in $(jq -r '.rootfs.diff_ids[]' "$WORK/config.json"); do
    [[ $(sha256sum <"$S/blobs/sha256/${d#sha256:}" 2>/dev/null | cut -d' ' -f1) == "${d#sha256:}" ]] ||
        fail "store lacks the plain tar $d (or it does not verify)"
done
pass "the store keeps the transcoded tars under their diff_ids, verified"

# A second pull: B has the image; nothing is fetched or sent again.
assert_exit 0 "a second pull succeeds" -- \
    env DOCKER_HOST="$b_DOCKER_HOST" "$cs" --store "$S" pull --json "$REF"
assert_eq "$(jq -r .layers.bytes_fetched "$WORK/out")" 0 "the second pull fetches nothing"
