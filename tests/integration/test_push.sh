#!/usr/bin/env bash
# cachesync push: a BuildKit build with inline cache pushed from the daemon round-trips to a
# fresh machine with CACHED steps; re-pushes upload only what changed; a new repository of
# the same registry gets mounts; oci: and archive: sources push too.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl skopeo

cs=$CACHESYNC
start_registry reg
start_dockerd a
start_dockerd b
make_base_image a
docker_cli a save localbase:1 | docker_cli b load >/dev/null
R=$reg_REG
REF=$R/team/app:main
export CACHESYNC_STORE=$WORK/store-a

ctx=$WORK/ctx
mkdir -p "$ctx/src"
echo 'serde = "1"' >"$ctx/deps.txt"
echo 'v1' >"$ctx/src/main.rs"
cat >"$ctx/Dockerfile" <<'DF'
FROM localbase:1
COPY deps.txt /deps.txt
RUN dd if=/dev/urandom of=/deps.bin bs=1k count=512 2>/dev/null
COPY src /src
RUN cat /src/main.rs > /app.bin
DF
build_image a "$ctx" app:built
blob_puts() { grep -cE '"(PUT|PATCH) /v2/team/app/blobs/uploads/' "$reg_DIR/log" || true; }

# --- first push from the daemon ----------------------------------------------------------
assert_exit 0 "push docker:app:built" -- env DOCKER_HOST="$a_DOCKER_HOST" \
    "$cs" -vv push --json docker:app:built "$REF" --tag v1
# an empty store knows no layer: each is compressed as the export streams it, not after
assert_eq "$(grep -c 'compressed as it streamed' "$WORK/err")" "$(docker_cli a image inspect -f '{{len .RootFS.Layers}}' app:built)" \
    "every layer compressed as it streamed"
cp "$WORK/out" "$WORK/push1.json"
nblobs=$(jq -r .blobs.total "$WORK/push1.json")
assert_eq "$(jq -r .blobs.uploaded "$WORK/push1.json")" "$nblobs" "every blob uploaded to an empty registry"
assert_eq "$(jq -r '.tags | join(",")' "$WORK/push1.json")" "$REF,$R/team/app:v1" "both tags reported"
accept='Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json'
curl -sf -H "$accept" "http://$R/v2/team/app/manifests/main" -o "$WORK/m.json" || fail "manifest not in the registry"
curl -sf -H "$accept" "http://$R/v2/team/app/manifests/v1" -o "$WORK/m1.json" || fail "tag v1 not in the registry"
cmp -s "$WORK/m.json" "$WORK/m1.json" || fail "main and v1 differ"
pass "main and v1 name the same manifest"
assert_eq "sha256:$(sha256sum "$WORK/m.json" | cut -d' ' -f1)" "$(jq -r .digest "$WORK/push1.json")" \
    "the registry holds exactly the bytes reported"
cdigest=$(jq -r .config.digest "$WORK/m.json")
assert_eq "$cdigest" "$(docker_cli a image inspect -f '{{.Id}}' app:built)" \
    "the config pushed is the daemon's image config, byte for byte (same image ID)"
curl -sf "http://$R/v2/team/app/blobs/$cdigest" | grep -q '"moby.buildkit.cache.v0"' ||
    fail "the pushed config lost moby.buildkit.cache.v0"
pass "the inline cache survives the push"

# --- round trip: a fresh machine pulls it and builds with CACHED steps ---------------------
assert_exit 0 "pull on B" -- env DOCKER_HOST="$b_DOCKER_HOST" CACHESYNC_STORE="$WORK/store-b" "$cs" -vv pull "$REF"
# B holds the base layer; the other 4 are blobs of ours (pgzip, with the total in a footer),
# so they go to the daemon decompressed, which spares dockerd its own gunzip
assert_eq "$(grep -c 'goes to the daemon decompressed' "$WORK/err")" 4 \
    "the 4 layers B lacks are sent decompressed"
assert_eq "$(docker_cli b run --rm --network=none "$REF" cat /app.bin)" v1 "the image loaded that way runs on B"
assert_eq "$(docker_cli b image inspect -f '{{.RootFS.Layers}}' "$REF")" \
    "$(docker_cli a image inspect -f '{{.RootFS.Layers}}' app:built)" "B's layers have A's diff_ids"
echo 'v2' >"$ctx/src/main.rs"
build_image b "$ctx" app:next --cache-from "$REF"
assert_cached "$BUILD_LOG" 'COPY deps.txt /deps.txt' "round trip: COPY deps.txt CACHED on B"
assert_cached "$BUILD_LOG" 'RUN dd if=/dev/urandom' "round trip: the dependency RUN CACHED on B"
assert_not_cached "$BUILD_LOG" 'COPY src /src' "round trip: the changed COPY runs on B"
docker_cli b pull "$R/team/app:v1" >"$WORK/dpull.out" 2>&1 || fail "docker pull of the pushed image: $(cat "$WORK/dpull.out")"
pass "docker pull reads what cachesync pushed"

# --- unchanged re-push: nothing uploaded, nothing exported ---------------------------------
before=$(blob_puts)
reqs_before=$(grep -cE '"(GET|HEAD|PUT|POST|PATCH|DELETE) /v2/' "$reg_DIR/log")
assert_exit 0 "push the same image again" -- env DOCKER_HOST="$a_DOCKER_HOST" \
    "$cs" push --json docker:app:built "$REF"
assert_eq "$(($(grep -cE '"(GET|HEAD|PUT|POST|PATCH|DELETE) /v2/' "$reg_DIR/log") - reqs_before))" 2 \
    "an unchanged re-push makes 2 registry requests (ping, the manifest)"
assert_eq "$(jq -r .blobs.bytes_uploaded "$WORK/out")" 0 "an unchanged re-push uploads 0 bytes"
assert_eq "$(jq -r .blobs.present "$WORK/out")" "$nblobs" "every blob counted as already there"
assert_eq "$(jq -r .layers.compressed "$WORK/out")" 0 "no layer compressed again"
assert_eq "$(blob_puts)" "$before" "no upload request reached the registry"
# of the daemon it needs only the image's inspect: not the export, nor GET /version and /info
# (the daemon's slowest answers), which only an image the store does not hold calls for
assert_exit 0 "push the same image again, -vv" -- env DOCKER_HOST="$a_DOCKER_HOST" \
    "$cs" -vv push docker:app:built "$REF"
assert_eq "$(grep -cE 'debug: > [A-Z]+ http://localhost/' "$WORK/err")" 2 \
    "an unchanged re-push makes 2 daemon requests (ping, the image inspect)"

# a push killed after all its blobs were stored leaves work files that only a later run can
# remove; the re-push of that image takes the fast path (no export), which must sweep them too
# (found by the ASan fault campaign: a kill -9 left tmp/entry-PID-*, store verify failed)
mkdir -p "$CACHESYNC_STORE/tmp"
dead=999999
while kill -0 "$dead" 2>/dev/null; do dead=$((dead - 1)); done
echo partial >"$CACHESYNC_STORE/tmp/entry-$dead-AbCdEf"
: >"$CACHESYNC_STORE/tmp/.owner-$dead" # its owner lock, free: the process is gone
assert_exit 0 "an unchanged re-push over a dead push's work file" -- env DOCKER_HOST="$a_DOCKER_HOST" \
    "$cs" push --json docker:app:built "$REF"
[[ ! -e $CACHESYNC_STORE/tmp/entry-$dead-AbCdEf ]] || fail "the dead push's work file is still in tmp/"
pass "the fast path removed the dead push's work file"
assert_exit 0 "store verify after it" -- "$cs" store verify

# --- one step changed: only that layer, the config and the manifest go up -------------------
echo 'v3' >"$ctx/src/main.rs"
build_image a "$ctx" app:built
assert_exit 0 "push a rebuild" -- env DOCKER_HOST="$a_DOCKER_HOST" "$cs" -vv push --json docker:app:built "$REF"
# a layer whose size matches what a known layer of the image decompresses to waits for its
# diff_id; the known ones are never compressed again, not even as they stream
assert_eq "$(grep -c 'early compression was for nothing' "$WORK/err")" 0 \
    "no known layer compressed while it streamed"
assert_eq "$(grep -c 'already in the store' "$WORK/err")" 3 "the three known layers found in the store"
# COPY src and the RUN after it change; base, COPY deps, RUN dd do not
assert_eq "$(jq -r .blobs.uploaded "$WORK/out")" 3 "two changed layers and the config uploaded"
assert_eq "$(jq -r .layers.compressed "$WORK/out")" 2 "only the two changed layers compressed"
assert_eq "$(jq -r .layers.reused "$WORK/out")" 3 "the three unchanged layers reused"

# --- a new repository of the same registry: mounts ------------------------------------------
assert_exit 0 "push to a new repository" -- env DOCKER_HOST="$a_DOCKER_HOST" \
    "$cs" push --json docker:app:built "$R/other/app:main"
assert_eq "$(jq -r .blobs.mounted "$WORK/out")" "$(jq -r .blobs.total "$WORK/out")" \
    "every blob mounted from team/app, none uploaded"
assert_eq "$(jq -r .blobs.bytes_uploaded "$WORK/out")" 0 "no bytes uploaded for the new repository"
grep -q 'POST /v2/other/app/blobs/uploads/?mount=' "$reg_DIR/log" || fail "no mount request seen"
pass "the registry saw cross-repository mounts"

# --- oci: and archive: sources -----------------------------------------------------------
skopeo copy --src-tls-verify=false "docker://$R/team/app:main" "oci:$WORK/sk:x" >/dev/null 2>&1 || fail "skopeo copy to oci"
assert_exit 0 "push oci:DIR:TAG written by skopeo" -- "$cs" push "oci:$WORK/sk:x" "$R/fromoci/app:v1"
skopeo inspect --tls-verify=false "docker://$R/fromoci/app:v1" >/dev/null 2>&1 || fail "skopeo cannot read the oci push"
pass "skopeo reads the image pushed from its own OCI layout"
assert_exit 0 "pull --to oci:DIR" -- "$cs" pull --to "oci:$WORK/cs:y" "$R/team/app:main"
assert_exit 0 "push oci:DIR:TAG written by cachesync pull" -- "$cs" push "oci:$WORK/cs:y" "$R/fromcs/app:v1"
docker_cli a save app:built -o "$WORK/saved.tar" || fail "docker save"
assert_exit 0 "push archive:FILE from docker save" -- "$cs" push --json "archive:$WORK/saved.tar" "$R/fromtar/app:v1"
assert_contains "$WORK/out" '"digest": "sha256:[0-9a-f]{64}"' "the archive push reports its manifest digest"
assert_eq "$(curl -sf -H "$accept" "http://$R/v2/fromtar/app/manifests/v1" | jq -r .config.digest)" \
    "$(docker_cli a image inspect -f '{{.Id}}' app:built)" "the archive's config arrives byte for byte"

# --- bad input --------------------------------------------------------------------------------
assert_exit 3 "a missing image exits 3" -- env DOCKER_HOST="$a_DOCKER_HOST" "$cs" push docker:nope:nope "$REF"
assert_exit 2 "a digest REF is a usage error" -- "$cs" push docker:app:built "$R/team/app@sha256:$(printf '0%.0s' {1..64})"
assert_exit 2 "a bad --compression is a usage error" -- "$cs" push --compression lz4 docker:app:built "$REF"
assert_exit 1 "the daemon down exits 1" -- env DOCKER_HOST=unix:///nonexistent.sock "$cs" push docker:app:built "$REF"

# --- zstd: OCI media types, and a Docker 20.10 machine still gets it (transcoded on pull) ----
assert_exit 0 "push --compression zstd" -- env DOCKER_HOST="$a_DOCKER_HOST" CACHESYNC_STORE="$WORK/store-z" \
    "$cs" push --json --compression zstd docker:app:built "$R/zs/app:v1"
curl -sf -H "$accept" "http://$R/v2/zs/app/manifests/v1" -o "$WORK/mz.json" || fail "zstd manifest"
assert_eq "$(jq -r .mediaType "$WORK/mz.json")" application/vnd.oci.image.manifest.v1+json "a zstd push is an OCI manifest"
assert_eq "$(jq -r '[.layers[].mediaType] | unique | join(",")' "$WORK/mz.json")" \
    application/vnd.oci.image.layer.v1.tar+zstd "its layers are tar+zstd"
assert_eq "$(jq -r .config.digest "$WORK/mz.json")" "$(docker_cli a image inspect -f '{{.Id}}' app:built)" \
    "the zstd push keeps the config byte for byte"
assert_exit 0 "pull the zstd image into Docker 20.10" -- env DOCKER_HOST="$b_DOCKER_HOST" \
    CACHESYNC_STORE="$WORK/store-bz" "$cs" pull "$R/zs/app:v1"
assert_eq "$(docker_cli b run --rm --network=none "$R/zs/app:v1" cat /app.bin)" v3 "the zstd image runs on B"
