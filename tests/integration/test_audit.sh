#!/usr/bin/env bash
# cachesync audit: per-layer cache coverage of real BuildKit images; the warning for an image
# built without inline cache; and BuildKit issue 1981 seen from the registry: a build made
# with --cache-from straight from the registry keeps cache records only for the steps that
# ran, so audit names the first uncovered step and the fix, while the same build made after
# `cachesync pull` is fully covered.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq

cs=$CACHESYNC
start_registry reg
start_dockerd a
make_base_image a
R=$reg_REG
ctx=$WORK/ctx
mkdir -p "$ctx/src"
echo dep >"$ctx/deps.txt"
echo v1 >"$ctx/src/main.txt"
cat >"$ctx/Dockerfile" <<'DF'
FROM localbase:1
ARG FLAVOUR=plain
COPY deps.txt /deps.txt
RUN echo "$FLAVOUR" > /flavour && cat /deps.txt > /deps.out
ENV MODE=release
COPY src /src
RUN cat /src/main.txt > /app.txt
DF
build_image a "$ctx" "$R/au/app:v1"
docker_cli a push "$R/au/app:v1" >/dev/null 2>&1 || fail "push"

# --- a complete cache ---------------------------------------------------------------------
assert_exit 0 "audit of a BuildKit image" -- "$cs" audit "$R/au/app:v1"
assert_contains "$WORK/out" '^  0  .* base ' "the base image's layer is marked base"
for step in 'COPY deps.txt /deps.txt' 'RUN echo "\$FLAVOUR"' 'COPY src /src' 'RUN cat /src/main.txt'; do
    assert_contains "$WORK/out" "  yes +$step" "covered: $step"
done
assert_contains "$WORK/out" '^covered +4 of 5 layers' "totals: 4 of 5 layers covered"
assert_not_contains "$WORK/out" '^warning:' "no warning for a complete cache"
assert_exit 0 "audit --json" -- "$cs" audit --json "$R/au/app:v1"
assert_eq "$(jq -c '[.layers[].covered]' "$WORK/out")" '[false,true,true,true,true]' "JSON coverage per layer"
assert_eq "$(jq -r '.cache.records > 0' "$WORK/out")" true "JSON counts records"
assert_eq "$(jq -r '.warnings | length' "$WORK/out")" 0 "JSON has no warning"

# --- no inline cache ------------------------------------------------------------------------
DOCKER_BUILDKIT=1 docker_cli a build -q --network=none -t "$R/au/plain:v1" "$ctx" >/dev/null || fail "plain build"
docker_cli a push "$R/au/plain:v1" >/dev/null 2>&1 || fail "push plain"
assert_exit 0 "audit of an image without inline cache" -- "$cs" audit "$R/au/plain:v1"
assert_contains "$WORK/out" '^warning: no inline cache: .*BUILDKIT_INLINE_CACHE=1' "the missing inline cache is a warning"

# --- BuildKit issue 1981: --cache-from straight from the registry, no pull -----------------
start_dockerd b
docker_cli a save localbase:1 | docker_cli b load >/dev/null
echo v2 >"$ctx/src/main.txt"
build_image b "$ctx" "$R/au/app:v2" --cache-from "$R/au/app:v1"
assert_cached "$BUILD_LOG" 'COPY deps.txt /deps.txt' "B's build used the registry's cache"
docker_cli b push "$R/au/app:v2" >/dev/null 2>&1 || fail "push v2"
assert_exit 0 "audit of the build made without a pull" -- "$cs" audit --json "$R/au/app:v2"
cp "$WORK/out" "$WORK/v2.json"
assert_eq "$(jq -r '.layers[1].covered' "$WORK/v2.json")" false "the reused COPY deps layer has no cache record"
assert_eq "$(jq -r '.cache.first_uncovered' "$WORK/v2.json")" 1 "the first uncovered layer is 1"
assert_contains "$WORK/v2.json" 'have no cache record, first layer 1 \(COPY deps.txt /deps.txt' \
    "the warning names the first uncovered step"
assert_eq "$(jq -r .fix "$WORK/v2.json")" "cachesync pull $R/au/app:v2 before docker build --cache-from $R/au/app:v2" \
    "the fix is cachesync pull"

# --- the same build after cachesync pull keeps the whole cache --------------------------------
start_dockerd c
docker_cli a save localbase:1 | docker_cli c load >/dev/null
assert_exit 0 "cachesync pull on C" -- env DOCKER_HOST="$c_DOCKER_HOST" CACHESYNC_STORE="$WORK/store-c" \
    "$cs" pull "$R/au/app:v1"
build_image c "$ctx" "$R/au/app:v3" --cache-from "$R/au/app:v1"
docker_cli c push "$R/au/app:v3" >/dev/null 2>&1 || fail "push v3"
assert_exit 0 "audit of the build made after a pull" -- "$cs" audit --json "$R/au/app:v3"
assert_eq "$(jq -c '[.layers[].covered]' "$WORK/out")" '[false,true,true,true,true]' \
    "after cachesync pull every step keeps its cache record"
assert_eq "$(jq -r '.warnings | length' "$WORK/out")" 0 "and audit has nothing to warn about"

# --- --against: v3 (after a pull, sources changed) against v1 -------------------------------
assert_exit 0 "audit --against" -- "$cs" audit "$R/au/app:v1" --against "$R/au/app:v3"
assert_contains "$WORK/out" '^diverges +at layer 3: COPY src /src' "the first divergence is the changed COPY"
assert_contains "$WORK/out" 'restores 3 of its 5 layers' "3 layers reusable from v1's cache"
assert_exit 0 "audit --against --format json" -- "$cs" audit --json "$R/au/app:v1" --against "$R/au/app:v3"
assert_eq "$(jq -r '.first_divergence, .common_prefix, .reusable' "$WORK/out" | paste -sd,)" 3,3,3 \
    "JSON: divergence at 3, common prefix 3, 3 reusable"

# --- DOT renders with Graphviz ----------------------------------------------------------------
cs_need dot
assert_exit 0 "audit --format dot" -- "$cs" audit --format dot "$R/au/app:v1"
cp "$WORK/out" "$WORK/cache.dot"
dot -Tsvg "$WORK/cache.dot" -o "$WORK/cache.svg" 2>"$WORK/dot.err" || fail "dot -Tsvg: $(cat "$WORK/dot.err")"
grep -q '<svg' "$WORK/cache.svg" || fail "no SVG from dot"
pass "the DOT output renders with dot -Tsvg"
assert_contains "$WORK/cache.dot" 'COPY src /src' "the DOT graph labels layers with their steps"
assert_contains "$WORK/cache.dot" '-> l4 \[color=blue, label="result"\]' "records point at the layers they restore"

# --- the same image audited from the registry, the daemon, an OCI layout and an archive -----
export CACHESYNC_STORE=$WORK/store-audit
view='[.layers[] | {diff_id, created_by, covered}], .cache.layers_covered, .cache.records, .config.digest'
"$cs" audit --json "$R/au/app:v1" | jq -c "$view" >"$WORK/from-registry" || fail "audit from the registry"
assert_exit 0 "audit docker:IMAGE" -- env DOCKER_HOST="$a_DOCKER_HOST" "$cs" audit --json "docker:$R/au/app:v1"
jq -c "$view" "$WORK/out" >"$WORK/from-docker"
assert_eq "$(cat "$WORK/from-docker")" "$(cat "$WORK/from-registry")" "docker:IMAGE audits like the registry's image"
assert_exit 0 "pull --to oci" -- "$cs" pull --to "oci:$WORK/layout:v1" "$R/au/app:v1"
assert_exit 0 "audit oci:DIR:TAG" -- "$cs" audit --json "oci:$WORK/layout:v1"
jq -c "$view" "$WORK/out" >"$WORK/from-oci"
assert_eq "$(cat "$WORK/from-oci")" "$(cat "$WORK/from-registry")" "oci:DIR audits like the registry's image"
docker_cli a save "$R/au/app:v1" -o "$WORK/v1.tar" || fail "docker save"
assert_exit 0 "audit archive:FILE" -- "$cs" audit --json "archive:$WORK/v1.tar"
jq -c "$view" "$WORK/out" >"$WORK/from-archive"
assert_eq "$(cat "$WORK/from-archive")" "$(cat "$WORK/from-registry")" "archive:FILE audits like the registry's image"
assert_exit 3 "audit of a missing docker image exits 3" -- env DOCKER_HOST="$a_DOCKER_HOST" "$cs" audit docker:nope:nope

# --- a BuildKit registry cache export (what --cache-to type=registry writes; Docker 20.10's
# builder cannot export one, so it is put together with the registry API from real layers) ---
cs_need curl
curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$R/v2/au/app/manifests/v1" -o "$WORK/v1m.json" || fail "v1 manifest"
l0=$(jq -r '.layers[0].digest' "$WORK/v1m.json") s0=$(jq -r '.layers[0].size' "$WORK/v1m.json")
l1=$(jq -r '.layers[1].digest' "$WORK/v1m.json") s1=$(jq -r '.layers[1].size' "$WORK/v1m.json")
for d in "$l0" "$l1"; do # mount the layers into the cache repository
    curl -sf -X POST "http://$R/v2/au/cache/blobs/uploads/?mount=$d&from=au/app" -o /dev/null || fail "mount $d"
done
jq -nc --arg l0 "$l0" --arg l1 "$l1" '{layers: [{blob: $l0, parent: -1}, {blob: $l1}],
    records: [{digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111", layers: [{layer: 0}]},
              {digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222", layers: [{layer: 1}], inputs: [[{link: 0}]]}]}' \
    >"$WORK/cacheconfig.json"
cdig=sha256:$(sha256sum "$WORK/cacheconfig.json" | cut -d' ' -f1)
loc=$(curl -sf -D - -o /dev/null -X POST "http://$R/v2/au/cache/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
[[ $loc == http* ]] || loc=http://$R$loc
curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$WORK/cacheconfig.json" \
    "$loc&digest=$cdig" -o /dev/null || fail "upload of the cacheconfig"
jq -nc --arg c "$cdig" --argjson cs "$(stat -c %s "$WORK/cacheconfig.json")" --arg l0 "$l0" --argjson s0 "$s0" \
    --arg l1 "$l1" --argjson s1 "$s1" '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.buildkit.cacheconfig.v0", digest: $c, size: $cs},
    layers: [{mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: $l0, size: $s0},
             {mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: $l1, size: $s1}]}' >"$WORK/cachemanifest.json"
curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$WORK/cachemanifest.json" "http://$R/v2/au/cache/manifests/buildcache" -o /dev/null || fail "PUT cache manifest"
assert_exit 0 "audit of a registry cache export" -- "$cs" audit "$R/au/cache:buildcache"
assert_contains "$WORK/out" '^cache +BuildKit registry cache export .*2 records' "audit recognises the cache export"
assert_contains "$WORK/out" '^covered +2 of 2 layers' "both cache layers are restored by records"
assert_exit 1 "pull of a cache export is refused" -- "$cs" pull --to store "$R/au/cache:buildcache"
assert_contains "$WORK/err" 'is a BuildKit registry cache export, not an image' "and says what it is"
