#!/usr/bin/env bash
# cachesync pull --to store | oci:DIR[:TAG] | archive:FILE, read back by the peers (skopeo,
# umoci, docker load), and several pulls sharing one store at once.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl skopeo umoci

cs=$CACHESYNC
start_registry reg
start_dockerd a
make_base_image a
R=$reg_REG
ctx=$WORK/ctx
mkdir -p "$ctx"
printf 'FROM localbase:1\nRUN echo one > /one\nRUN dd if=/dev/urandom of=/r bs=1k count=300 2>/dev/null\n' >"$ctx/Dockerfile"
build_image a "$ctx" "$R/lib/img:v1"
docker_cli a push "$R/lib/img:v1" >/dev/null 2>&1 || fail "push"
printf 'FROM localbase:1\nRUN echo two > /two\n' >"$ctx/Dockerfile"
build_image a "$ctx" "$R/lib/other:v1"
docker_cli a push "$R/lib/other:v1" >/dev/null 2>&1 || fail "push"
curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$R/v2/lib/img/manifests/v1" -o "$WORK/manifest.json"
cdigest=$(jq -r .config.digest "$WORK/manifest.json")
S=$WORK/store

# --- store ---------------------------------------------------------------------------------
assert_exit 0 "pull --to store" -- "$cs" --store "$S" pull --to store --json "$R/lib/img:v1"
assert_eq "$(jq -r '.manifests[] | select(.annotations."org.opencontainers.image.ref.name" == "'"$R/lib/img:v1"'") | .digest' "$S/index.json")" \
    "sha256:$(sha256sum "$WORK/manifest.json" | cut -d' ' -f1)" "the store's index.json names the ref"
for d in $(jq -r '.layers[].digest, .config.digest' "$WORK/manifest.json"); do
    [[ $(sha256sum "$S/blobs/sha256/${d#sha256:}" | cut -d' ' -f1) == "${d#sha256:}" ]] ||
        fail "store blob $d does not verify"
done
pass "every blob in the store hashes to its name"
assert_eq "$(find "$S/partial" -type f ! -name '*.lock' | wc -l)" 0 "no partial file left"
# the store keeps the registry's bytes (a Docker schema2 manifest here), so its blobs are
# exactly what the registry served
cmp -s "$S/blobs/sha256/$(jq -r '.manifests[0].digest' "$S/index.json" | cut -d: -f2)" "$WORK/manifest.json" ||
    fail "the store's manifest differs from the registry's bytes"
pass "the store holds the registry's manifest byte for byte"

# --- oci:DIR:TAG ---------------------------------------------------------------------------
assert_exit 0 "pull --to oci:DIR:TAG" -- "$cs" --store "$S" pull --to "oci:$WORK/layout:mytag" "$R/lib/img:v1"
skopeo inspect "oci:$WORK/layout:mytag" >"$WORK/skopeo.json" 2>"$WORK/skopeo.err" ||
    fail "skopeo inspect oci:DIR:mytag: $(cat "$WORK/skopeo.err")"
assert_eq "$(jq -r '.Layers | length' "$WORK/skopeo.json")" "$(jq '.layers | length' "$WORK/manifest.json")" \
    "skopeo sees every layer in the layout"
skopeo inspect --config --raw "oci:$WORK/layout:mytag" >"$WORK/config.skopeo" || fail "skopeo --config"
assert_eq "sha256:$(sha256sum "$WORK/config.skopeo" | cut -d' ' -f1)" "$cdigest" "skopeo reads the config byte for byte"
umoci stat --image "$WORK/layout:mytag" >"$WORK/umoci.out" 2>&1 || fail "umoci stat: $(tail -3 "$WORK/umoci.out")"
assert_contains "$WORK/umoci.out" 'echo one' "umoci reads the layout's history"
assert_eq "$(jq -r '.manifests[0].mediaType' "$WORK/layout/index.json")" application/vnd.oci.image.manifest.v1+json \
    "the layout's manifest is OCI (converted from Docker schema2)"
# a second image into the same layout keeps the first
assert_exit 0 "a second image into the same layout" -- "$cs" --store "$S" pull --to "oci:$WORK/layout:other" "$R/lib/other:v1"
assert_eq "$(jq -r '[.manifests[].annotations."org.opencontainers.image.ref.name"] | sort | join(",")' "$WORK/layout/index.json")" \
    "mytag,other" "the layout names both tags"
# skopeo copies it on to a registry: the layout is complete
skopeo copy --dest-tls-verify=false "oci:$WORK/layout:mytag" "docker://$R/lib/copy:v1" >/dev/null 2>&1 ||
    fail "skopeo copy from the layout"
pass "skopeo copies the layout to a registry"

# --- archive:FILE ----------------------------------------------------------------------------
assert_exit 0 "pull --to archive:FILE" -- "$cs" --store "$S" pull --to "archive:$WORK/img.tar" "$R/lib/img:v1"
tar -tf "$WORK/img.tar" >"$WORK/tar.list" || fail "the archive is not a tar"
assert_contains "$WORK/tar.list" '^manifest\.json$' "the archive has manifest.json"
start_dockerd b
docker_cli b load -i "$WORK/img.tar" >"$WORK/load.out" 2>&1 || fail "docker load -i: $(cat "$WORK/load.out")"
assert_contains "$WORK/load.out" "Loaded image: $R/lib/img:v1" "docker load names REF"
assert_eq "$(docker_cli b image inspect -f '{{.Id}}' "$R/lib/img:v1")" "$cdigest" "the loaded image is the pulled one"
assert_exit 1 "an archive into a missing directory fails" -- "$cs" --store "$S" pull --to "archive:$WORK/nodir/x.tar" "$R/lib/img:v1"
[[ ! -e $WORK/nodir ]] || fail "a failed archive left something behind"
pass "nothing half-written for a failed archive"

# --- several targets in one pull, and bad ones ------------------------------------------------
assert_exit 0 "store + oci + archive at once" -- "$cs" --store "$WORK/s2" pull --json --to store \
    --to "oci:$WORK/l2" --to "archive:$WORK/i2.tar" "$R/lib/other:v1"
assert_eq "$(jq -r '.targets | length' "$WORK/out")" 3 "three deliveries reported"
assert_exit 2 "an unknown target is a usage error" -- "$cs" pull --to floppy "$R/lib/img:v1"
assert_exit 2 "an empty oci: target is a usage error" -- "$cs" pull --to oci: "$R/lib/img:v1"

# --- four processes, one store, overlapping images --------------------------------------------
S3=$WORK/store3
pids=()
for i in 1 2 3 4; do
    img=img
    ((i % 2)) || img=other
    "$cs" -q --store "$S3" pull --to store "$R/lib/$img:v1" >"$WORK/par$i.out" 2>&1 &
    pids+=($!)
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || fail "concurrent pull $((i + 1)) failed: $(cat "$WORK/par$((i + 1)).out")"
done
pass "four concurrent pulls into one store succeed"
for f in "$S3"/blobs/sha256/*; do
    [[ $(sha256sum "$f" | cut -d' ' -f1) == "${f##*/}" ]] || fail "corrupt blob $f after concurrent pulls"
done
pass "the shared store verifies after concurrent pulls"
assert_eq "$(jq '.manifests | length' "$S3/index.json")" 2 "index.json names both refs once"
