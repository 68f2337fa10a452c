#!/usr/bin/env bash
# The command line itself: help, version, usage errors and their exit codes, offline failures.
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

cs=$CACHESYNC

assert_exit 0 "version exits 0" -- "$cs" version
assert_contains "$WORK/out" '^cachesync [0-9]+\.[0-9]+\.[0-9]+$' "version prints the version"
assert_exit 0 "version --json exits 0" -- "$cs" version --json
assert_eq "$(jq -r .version "$WORK/out")" "$(sed -n 's/^cachesync //p' <("$cs" version) | head -1)" \
    "version --json has the same version"

assert_exit 2 "no command is a usage error" -- "$cs"
assert_contains "$WORK/err" '^usage: cachesync' "no command prints usage on stderr"
assert_exit 2 "unknown command" -- "$cs" frobnicate
assert_contains "$WORK/err" 'unknown command "frobnicate"' "unknown command is named"
assert_exit 2 "unknown global option" -- "$cs" --frob version
assert_exit 2 "unknown command option" -- "$cs" audit --frob x
assert_contains "$WORK/err" 'unknown option "--frob"' "unknown option is named"
assert_exit 2 "option without its value" -- "$cs" audit x --raw
assert_exit 2 "bad --raw value" -- "$cs" audit --raw bogus app
assert_exit 2 "bad --jobs value" -- "$cs" --jobs 0 version
assert_exit 2 "audit without REF" -- "$cs" audit
assert_exit 2 "audit with two REFs" -- "$cs" audit a b

assert_exit 0 "help" -- "$cs" help
assert_contains "$WORK/out" '^  audit ' "help lists audit"
assert_exit 0 "help audit" -- "$cs" help audit
assert_contains "$WORK/out" '^usage: cachesync audit' "help audit shows its usage"
assert_exit 0 "audit --help" -- "$cs" audit --help
assert_contains "$WORK/out" '^usage: cachesync audit' "audit --help shows the same usage"
for c in pull push doctor audit store login logout version; do
    assert_exit 0 "$c -h" -- "$cs" "$c" -h
    assert_contains "$WORK/out" "^usage: cachesync $c" "$c -h prints its usage"
done
assert_exit 2 "help of an unknown command" -- "$cs" help frob

# Malformed references: exit 2, one line naming the reference.
for bad in 'Foo/Bar' 'app:' 'app@sha256:abc' ':tag' 'a//b' 'app:-x' \
    "$(printf 'a%.0s' {1..256})"; do
    assert_exit 2 "malformed reference '${bad:0:40}' exits 2" -- "$cs" audit "$bad"
    assert_eq "$(wc -l <"$WORK/err")" 1 "one line of error for '${bad:0:40}'"
    assert_contains "$WORK/err" 'invalid reference' "the error says the reference is invalid"
done

# --json errors: one JSON object on stdout with the same exit code.
assert_exit 2 "--json usage error" -- "$cs" --json audit 'Foo/Bar'
assert_eq "$(jq -r .error.code "$WORK/out")" 2 "--json error carries exit code 2"
assert_eq "$(jq -r .error.kind "$WORK/out")" usage "--json error kind is usage"

# A registry that is down: exit 1, one line naming it. Port 1 on loopback refuses.
assert_exit 1 "registry down exits 1" -- "$cs" audit 127.0.0.1:1/app:main
assert_eq "$(wc -l <"$WORK/err")" 1 "registry down: one line"
assert_contains "$WORK/err" 'cannot reach registry 127\.0\.0\.1:1' "registry down names the registry"
