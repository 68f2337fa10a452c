#!/usr/bin/env bash
# The Engine API client (src/lib/daemon.c) against a real dockerd: tests/unit/check_daemon runs
# its live cases (info, inspect, load, tag, layer chains, load failures) against a throwaway
# daemon, docker itself sees what it loaded and tagged, and once the daemon is stopped the
# client says it cannot connect (CS_ENET) for that very socket.
# Input: CHECK_DAEMON, the check_daemon binary (default $CS_SRCDIR/tests/unit/check_daemon).
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

check=${CHECK_DAEMON:-$CS_SRCDIR/tests/unit/check_daemon}
[[ -x $check ]] || fail "no check_daemon binary at $check (make check builds it; or set CHECK_DAEMON)"

start_dockerd a
host=$a_DOCKER_HOST

# Everything against the live daemon; Check's summary line proves every case ran.
assert_exit 0 "check_daemon passes against dockerd at $host" -- \
    env CS_TEST_DOCKER_HOST="$host" "$check"
assert_contains "$WORK/out" '^100%: Checks: [0-9]+, Failures: 0, Errors: 0' \
    "every check_daemon case ran and passed"
assert_contains "$WORK/err" "^# daemon $host: Docker [0-9]+\.[0-9]+" "the daemon's version was read"

# What the client loaded and tagged is what docker sees.
id_v1=$(docker_cli a image inspect -f '{{.Id}}' cs-test/probe:v1) || fail "docker does not see cs-test/probe:v1"
id_v2=$(docker_cli a image inspect -f '{{.Id}}' cs-test/probe:v2) || fail "docker does not see cs-test/probe:v2"
assert_eq "$id_v2" "$id_v1" "the tag made through the Engine API points at the loaded image"
assert_eq "$(docker_cli a image inspect -f '{{len .RootFS.Layers}}' cs-test/skip:1)" 2 \
    "the image whose held layer was left out of the tar loaded with both layers"
# A missing layer file is not left behind as an image.
assert_exit 1 "a failed load leaves no image" -- docker_cli a image inspect cs-test/missing:1

# The daemon stopped: the same socket now fails to connect, with the hint.
stop_env a
assert_exit 0 "check_daemon's down cases pass with the daemon stopped" -- \
    env CS_TEST_DOCKER_HOST="$host" CS_TEST_DOCKER_EXPECT_DOWN=1 CK_RUN_CASE=down "$check"
assert_contains "$WORK/out" '^100%: Checks: 3, Failures: 0, Errors: 0' "all three down cases ran"
assert_contains "$WORK/err" "^# down: cannot connect to the Docker daemon at $host: is dockerd running\? \(connect: " \
    "the stopped daemon's own socket gives the connect hint"
