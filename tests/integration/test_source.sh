#!/usr/bin/env bash
# Push sources against a real dockerd: tests/unit/check_source's "daemon" case loads
# docker:IMAGE (a 3-layer BuildKit build with inline cache) into a fresh store, checks the config
# digest is `docker image inspect -f {{.Id}}`, every layer blob decompresses to its diff_id, and
# that a second load takes the fast path (no export, every layer reused), for gzip and zstd.
# Input: CHECK_SOURCE, the check_source binary (default $CS_SRCDIR/tests/unit/check_source).
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

check=${CHECK_SOURCE:-$CS_SRCDIR/tests/unit/check_source}
[[ -x $check ]] || fail "no check_source binary at $check (make check builds it; or set CHECK_SOURCE)"

start_dockerd a
make_base_image a
ctx=$WORK/ctx
mkdir -p "$ctx"
seq 1 20000 >"$ctx/numbers.txt"
cat >"$ctx/Dockerfile" <<'DF'
FROM localbase:1
COPY numbers.txt /numbers.txt
RUN dd if=/dev/urandom of=/random.bin bs=1M count=8 2>/dev/null && \
    dd if=/dev/zero of=/zeros.bin bs=1M count=24 2>/dev/null
DF
IMAGE=cs-test/source:1
build_image a "$ctx" "$IMAGE"
id=$(docker_cli a image inspect -f '{{.Id}}' "$IMAGE")
nlayers=$(docker_cli a image inspect -f '{{len .RootFS.Layers}}' "$IMAGE")
assert_eq "$nlayers" 3 "the test image has 3 layers (base, COPY, RUN)"

assert_exit 0 "check_source passes against dockerd at $a_DOCKER_HOST" -- \
    env CS_TEST_DOCKER_HOST="$a_DOCKER_HOST" CS_TEST_IMAGE="$IMAGE" CS_TEST_IMAGE_ID="$id" "$check"
assert_contains "$WORK/out" '^100%: Checks: [0-9]+, Failures: 0, Errors: 0' \
    "every check_source case ran and passed"
assert_contains "$WORK/err" "^# docker:$IMAGE zstd: first load .*, again " "the zstd loads ran too"
assert_contains "$WORK/err" "^# docker:$IMAGE: 3 layers; first load .* \(exported, 3 compressed\), again .* \(fast path\)" \
    "the first load exported and compressed all 3 layers, the second took the fast path"
grep '^# docker:' "$WORK/err" || true
