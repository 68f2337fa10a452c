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
ARG STAMP=1
RUN echo "$STAMP" > /stamp
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
assert_exit 0 "cachesync pull on machine B" -- env DOCKER_HOST="$b_DOCKER_HOST" "$cs" -vv pull --json "$REF"
assert_eq "$(grep -c 'goes to the daemon decompressed' "$WORK/err")" 0 \
    "layers docker push compressed stream to the daemon as they are"
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

# A second pull of the same REF transfers no blob and does not reload the daemon.
gets_before=$(grep -c '"GET /v2/team/app/blobs/' "$reg_DIR/log" || true)
assert_exit 0 "a second pull" -- env DOCKER_HOST="$b_DOCKER_HOST" "$cs" pull --json "$REF"
assert_eq "$(jq -r .layers.bytes_fetched "$WORK/out")" 0 "the second pull fetches no bytes"
assert_eq "$(grep -c '"GET /v2/team/app/blobs/' "$reg_DIR/log" || true)" "$gets_before" \
    "the second pull asks the registry for no blob (config included)"
assert_contains "$WORK/out" '"outcome": "already present' "the second pull does not reload the daemon"

# The same image under another tag: the daemon has it, so it is only tagged.
docker_cli a tag "$REF" "$R/team/app:alias" && docker_cli a push "$R/team/app:alias" >/dev/null 2>&1 ||
    fail "push of the alias tag"
assert_exit 0 "pull of an alias of a loaded image" -- env DOCKER_HOST="$b_DOCKER_HOST" "$cs" pull --json "$R/team/app:alias"
assert_contains "$WORK/out" '"outcome": "image present, tagged"' "an image the daemon has is tagged, not loaded"
assert_eq "$(docker_cli b image inspect -f '{{.Id}}' "$R/team/app:alias")" "$(jq -r .config_digest "$WORK/out")" \
    "the alias names the image on B"

# A's next build changes only the last layer: B's next pull downloads only that layer.
build_image a "$ctx" "$REF" --build-arg STAMP=2
docker_cli a push "$REF" >"$WORK/push2.log" 2>&1 || fail "docker push of the rebuild"
curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$R/v2/team/app/manifests/main" -o "$WORK/manifest2.json"
last_digest=$(jq -r '.layers[-1].digest' "$WORK/manifest2.json")
last_size=$(jq -r '.layers[-1].size' "$WORK/manifest2.json")
assert_eq "$(jq -r '.layers[:-1] | map(.digest) | join(",")' "$WORK/manifest2.json")" \
    "$(jq -r '.layers[:-1] | map(.digest) | join(",")' "$WORK/manifest.json")" \
    "the rebuild shares all but the last layer"
assert_exit 0 "pull of the rebuild" -- env DOCKER_HOST="$b_DOCKER_HOST" "$cs" pull --json "$REF"
assert_eq "$(jq -r .layers.fetched "$WORK/out")" 1 "only one layer fetched"
assert_eq "$(jq -r .layers.bytes_fetched "$WORK/out")" "$last_size" "only the last layer's bytes fetched"
assert_eq "$(blob_gets "$last_digest")" 1 "the registry served the new layer once"

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

# Chained builds keep the cache: B's build (made with --cache-from, after a pull) is pushed;
# machine C, seeded from it through a fallback (the branch tag does not exist), still gets
# CACHED dependency steps.
start_registry reg2
R2=$reg2_REG
docker_cli b tag app:next "$R2/team/app:main" && docker_cli b push "$R2/team/app:main" >"$WORK/push3.log" 2>&1 ||
    fail "push of B's build"
start_dockerd c
docker_cli a save localbase:1 | docker_cli c load >/dev/null
export CACHESYNC_STORE=$WORK/store-c
assert_exit 0 "pull on C with a fallback" -- env DOCKER_HOST="$c_DOCKER_HOST" \
    "$cs" pull --json "$R2/team/app:feature-x" --fallback "$R2/team/app:main"
assert_eq "$(jq -r .served_by "$WORK/out")" "$R2/team/app:main" "the fallback served"
assert_eq "$(jq -r .ref "$WORK/out")" "$R2/team/app:feature-x" "the result names REF"
assert_contains "$WORK/err" "not found, trying $R2/team/app:main" "the missing branch tag is reported"
assert_eq "$(docker_cli c image inspect -f '{{.Id}}' "$R2/team/app:feature-x")" \
    "$(jq -r .config_digest "$WORK/out")" "C's daemon has the image under REF (the branch tag)"
assert_exit 3 "no REF and no fallback exists: exit 3" -- env DOCKER_HOST="$c_DOCKER_HOST" \
    "$cs" pull "$R2/team/app:nope" --fallback "$R2/team/app:nope2"
assert_contains "$WORK/err" 'nor any of its 1 fallbacks' "exit 3 names the fallbacks"
stop_env reg2
echo 'fn main() { v3 }' >"$ctx/src/main.rs"
build_image c "$ctx" app:c --cache-from "$R2/team/app:feature-x"
cp "$BUILD_LOG" "$WORK/build-c.log"
assert_cached "$WORK/build-c.log" 'COPY deps.txt /deps.txt' "chained: COPY deps.txt CACHED on C"
assert_cached "$WORK/build-c.log" 'RUN sleep 1 && dd' "chained: the dependency RUN CACHED on C"
assert_not_cached "$WORK/build-c.log" 'COPY src /src' "chained: the changed COPY runs on C"
deps_c=$(docker_cli c run --rm --network=none app:c cat /deps.bin | sha256sum)
assert_eq "$deps_c" "$deps_a" "C's dependency output is still A's, byte for byte"
