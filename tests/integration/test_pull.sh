#!/usr/bin/env bash
# cachesync pull pre-seeds a fresh machine so `docker build --cache-from REF` gets CACHED
# steps with the registry gone. Two real dockerd instances stand for two machines.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl

cs=$CACHESYNC
start_registry reg
start_dockerd a
start_dockerd b
R=$reg_REG
REF=$R/team/app:main
export CACHESYNC_STORE=$WORK/store-b

# Machine A: the base image, then a cargo-chef shaped build: a slow dependency step whose
# output is random (so only a cache hit reproduces it), then the sources and the build.
make_base_image a
docker_cli a save localbase:1 | docker_cli b load >/dev/null # B has the base, as docker load'ed
ctx=$WORK/ctx
mkdir -p "$ctx/src"
echo 'serde = "1"' >"$ctx/deps.txt"
echo 'fn main() { v1 }' >"$ctx/src/main.rs"
cat >"$ctx/Dockerfile" <<'DF'
FROM localbase:1
COPY deps.txt /deps.txt
RUN sleep 1 && dd if=/dev/urandom of=/deps.bin bs=1k count=256 2>/dev/null
COPY src /src
RUN cat /src/main.rs /deps.bin > /app.bin
DF
build_image a "$ctx" "$REF"
docker_cli a push "$REF" >"$WORK/push.log" 2>&1 || fail "docker push: $(tail -3 "$WORK/push.log")"
deps_a=$(docker_cli a run --rm --network=none "$REF" cat /deps.bin | sha256sum)
curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$R/v2/team/app/manifests/main" -o "$WORK/manifest.json"
base_digest=$(jq -r '.layers[0].digest' "$WORK/manifest.json")
nlayers=$(jq '.layers | length' "$WORK/manifest.json")
rest_bytes=$(jq '[.layers[1:][].size] | add' "$WORK/manifest.json")
pass "machine A built and pushed $REF ($nlayers layers)"

# Machine B: cachesync pull.
blob_gets() { grep -c "\"GET /v2/team/app/blobs/$1 " "$reg_DIR/log" || true; }
assert_exit 0 "cachesync pull on machine B" -- env DOCKER_HOST="$b_DOCKER_HOST" "$cs" pull --json "$REF"
cp "$WORK/out" "$WORK/pull1.json"
assert_eq "$(jq -r .ref "$WORK/pull1.json")" "$REF" "JSON names the ref"
assert_eq "$(jq -r .layers.total "$WORK/pull1.json")" "$nlayers" "JSON counts the layers"
assert_eq "$(jq -r .layers.in_daemon "$WORK/pull1.json")" 1 "the base layer B holds is not fetched"
assert_eq "$(jq -r .layers.fetched "$WORK/pull1.json")" $((nlayers - 1)) "the other layers are fetched"
assert_eq "$(jq -r .layers.bytes_fetched "$WORK/pull1.json")" "$rest_bytes" "bytes fetched = the non-base layers"
assert_eq "$(blob_gets "$base_digest")" 0 "the registry never served the base layer"
assert_eq "$(jq -r '.targets[0].target' "$WORK/pull1.json")" docker "delivered to docker"
assert_contains "$WORK/err" "loaded as $REF" "the daemon loaded it under REF"
assert_eq "$(docker_cli b image inspect -f '{{.Id}}' "$REF")" "$(jq -r .config_digest "$WORK/pull1.json")" \
    "B's $REF is the pulled image"

# The registry goes away; the sources change; B builds with --cache-from.
stop_env reg
echo 'fn main() { v2 }' >"$ctx/src/main.rs"
build_image b "$ctx" app:next --cache-from "$REF"
cp "$BUILD_LOG" "$WORK/build-b.log"
assert_contains "$WORK/build-b.log" "importing cache manifest from $REF" "BuildKit imports the inline cache"
assert_cached "$WORK/build-b.log" 'COPY deps.txt /deps.txt' "COPY deps.txt is CACHED on B, registry gone"
assert_cached "$WORK/build-b.log" 'RUN sleep 1 && dd' "the dependency RUN is CACHED on B, registry gone"
assert_not_cached "$WORK/build-b.log" 'COPY src /src' "the changed COPY runs"
assert_not_cached "$WORK/build-b.log" 'RUN cat /src/main.rs' "the build step after it runs"
deps_b=$(docker_cli b run --rm --network=none app:next cat /deps.bin | sha256sum)
assert_eq "$deps_b" "$deps_a" "the dependency step's random output on B is A's, byte for byte"
