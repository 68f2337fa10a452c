#!/usr/bin/env bash
# cachesync doctor: ready after cachesync pull (also with the registry gone, on the classic
# image store), not ready with the fix after docker rmi, and an image built without inline
# cache is named as the reason.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq

cs=$CACHESYNC
start_registry reg
start_dockerd a
start_dockerd b
make_base_image a
docker_cli a save localbase:1 | docker_cli b load >/dev/null
R=$reg_REG
ctx=$WORK/ctx
mkdir -p "$ctx"
printf 'FROM localbase:1\nRUN echo cached > /c\n' >"$ctx/Dockerfile"
build_image a "$ctx" "$R/d/app:main"
docker_cli a push "$R/d/app:main" >/dev/null 2>&1 || fail "push"
# the same without BUILDKIT_INLINE_CACHE
printf 'FROM localbase:1\nRUN echo plain > /p\n' >"$ctx/Dockerfile"
DOCKER_BUILDKIT=1 docker_cli a build -q --network=none -t "$R/d/plain:main" "$ctx" >/dev/null || fail "plain build"
docker_cli a push "$R/d/plain:main" >/dev/null 2>&1 || fail "push plain"
export DOCKER_HOST=$b_DOCKER_HOST CACHESYNC_STORE=$WORK/store

assert_exit 1 "doctor before any pull: not ready" -- "$cs" doctor "$R/d/app:main"
assert_contains "$WORK/out" "^FAIL  image +no image tagged $R/d/app:main" "the missing image is the finding"
assert_contains "$WORK/out" "^fix: cachesync pull $R/d/app:main$" "the fix is cachesync pull"

assert_exit 0 "pull" -- "$cs" pull "$R/d/app:main"
assert_exit 0 "doctor after the pull: ready" -- "$cs" doctor "$R/d/app:main"
assert_contains "$WORK/out" '^ok    daemon +Docker ' "the daemon is checked"
assert_contains "$WORK/out" '^ok    image store +classic store' "the classic store is recognised"
assert_contains "$WORK/out" '^ok    inline cache +moby.buildkit.cache.v0 present' "the inline cache is found"
assert_contains "$WORK/out" '^ready: ' "the verdict is ready"

stop_env reg
assert_exit 0 "doctor with the registry gone: still ready" -- "$cs" doctor --json "$R/d/app:main"
assert_eq "$(jq -r .ready "$WORK/out")" true "JSON ready is true"
assert_eq "$(jq -r '.checks[] | select(.name == "registry") | .status' "$WORK/out")" ok \
    "an unreachable registry does not matter on the classic store"
assert_contains "$WORK/out" 'not needed once the image is local' "and doctor says why"

docker_cli b rmi "$R/d/app:main" >/dev/null || fail "docker rmi"
assert_exit 1 "doctor after docker rmi: not ready" -- "$cs" doctor --json "$R/d/app:main"
assert_eq "$(jq -r .ready "$WORK/out")" false "JSON ready is false"
assert_eq "$(jq -r .fix "$WORK/out")" "cachesync pull $R/d/app:main" "JSON names the fix"

# an image without inline cache, loaded locally; with the registry gone, doctor reads its
# config from the store, seeded here with the exact bytes docker save gives
docker_cli a save "$R/d/plain:main" -o "$WORK/plain.tar" || fail "docker save"
docker_cli b load -i "$WORK/plain.tar" >/dev/null || fail "docker load"
id=$(docker_cli a image inspect -f '{{.Id}}' "$R/d/plain:main")
mkdir -p "$WORK/s2/blobs/sha256"
tar -xOf "$WORK/plain.tar" "${id#sha256:}.json" >"$WORK/s2/blobs/sha256/${id#sha256:}" || fail "config from the save"
assert_exit 1 "doctor of an image without inline cache: not ready" -- env CACHESYNC_STORE="$WORK/s2" "$cs" doctor "$R/d/plain:main"
assert_contains "$WORK/out" '^FAIL  inline cache +the config has no moby.buildkit.cache.v0' "the missing inline cache is the finding"
assert_contains "$WORK/out" 'BUILDKIT_INLINE_CACHE=1' "the fix names the build argument"
