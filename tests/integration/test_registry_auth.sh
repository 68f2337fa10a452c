#!/usr/bin/env bash
# A registry with htpasswd Basic auth over TLS (a CA generated for the test): cachesync reads
# the credentials `docker login` wrote, trusts the CA given by --ca-cert, and fails clearly
# (exit 4 for a wrong password or none, exit 1 for an untrusted certificate).
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl

cs=$CACHESYNC
start_registry sec --htpasswd alice:s3cret-pw --tls
start_dockerd a
make_base_image a
R=$sec_REG
CA=$sec_REG_CA

ctx=$WORK/ctx
mkdir -p "$ctx"
printf 'FROM localbase:1\nRUN echo secure > /x\n' >"$ctx/Dockerfile"
build_image a "$ctx" "$R/team/app:v1"
# dockerd treats loopback registries as insecure (TLS without verification), so it pushes to
# the test CA's registry; the login lands in $DOCKER_CONFIG, which cachesync reads too.
printf '%s' "$sec_REG_PASS" | docker_cli a login -u "$sec_REG_USER" --password-stdin "$R" >/dev/null 2>&1 ||
    fail "docker login to $R"
docker_cli a push "$R/team/app:v1" >"$WORK/push.log" 2>&1 || fail "docker push: $(tail -3 "$WORK/push.log")"
pass "pushed to the htpasswd+TLS registry after docker login"
jq -e --arg r "$R" '.auths[$r].auth' "$DOCKER_CONFIG/config.json" >/dev/null ||
    fail "docker login did not write auths[$R] (credsStore in use?)"

accept='Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
curl -sf --cacert "$CA" -u "$sec_REG_USER:$sec_REG_PASS" -H "$accept" \
    "https://$R/v2/team/app/manifests/v1" -o "$WORK/manifest.curl" || fail "curl manifest"
cdigest=$(jq -r .config.digest "$WORK/manifest.curl")
curl -sf --cacert "$CA" -u "$sec_REG_USER:$sec_REG_PASS" -L \
    "https://$R/v2/team/app/blobs/$cdigest" -o "$WORK/config.curl" || fail "curl config"

assert_exit 0 "raw manifest over TLS with Basic auth" -- "$cs" --ca-cert "$CA" audit --raw manifest "$R/team/app:v1"
cmp -s "$WORK/out" "$WORK/manifest.curl" || fail "manifest differs from curl's"
pass "raw manifest is byte-equal to curl's"
assert_exit 0 "raw config over TLS with Basic auth" -- "$cs" audit --raw config "$R/team/app:v1" --ca-cert "$CA"
cmp -s "$WORK/out" "$WORK/config.curl" || fail "config differs from curl's"
pass "raw config is byte-equal to curl's"
assert_exit 0 "--docker-config names the same directory" -- \
    env -u DOCKER_CONFIG HOME=/nonexistent "$cs" --docker-config "$DOCKER_CONFIG" --ca-cert "$CA" audit "$R/team/app:v1"

# The password never shows, even with -v -v.
assert_exit 0 "verbose run" -- "$cs" -v -v --ca-cert "$CA" audit "$R/team/app:v1"
assert_not_contains "$WORK/err" "$sec_REG_PASS" "the password is not in verbose output"
assert_not_contains "$WORK/err" "$(printf '%s:%s' "$sec_REG_USER" "$sec_REG_PASS" | base64)" \
    "the Basic credentials are not in verbose output"
assert_contains "$WORK/err" "> GET https://$R/v2/" "verbose output shows the requests"

# Untrusted certificate: exit 1 with the two fixes.
assert_exit 1 "an untrusted certificate exits 1" -- "$cs" audit "$R/team/app:v1"
assert_eq "$(wc -l <"$WORK/err")" 1 "one line of error"
assert_contains "$WORK/err" "$R: TLS certificate not trusted.*--ca-cert FILE.*/etc/docker/certs.d/$R/ca.crt" \
    "the certificate error names the host and the fixes"
# --insecure-registry skips verification, as dockerd does.
assert_exit 0 "--insecure-registry accepts the unverified certificate" -- \
    "$cs" --insecure-registry "$R" audit --raw manifest "$R/team/app:v1"

# Wrong password: exit 4 naming the registry.
mkdir -p "$WORK/bad"
printf '{"auths":{"%s":{"auth":"%s"}}}' "$R" "$(printf 'alice:wrong' | base64)" >"$WORK/bad/config.json"
assert_exit 4 "a wrong password exits 4" -- "$cs" --docker-config "$WORK/bad" --ca-cert "$CA" audit "$R/team/app:v1"
assert_contains "$WORK/err" "$R: wrong username or password for alice" "the wrong password is explained"
assert_not_contains "$WORK/err" 'wrong$' "the wrong password itself is not printed"

# No credentials at all: exit 4 and the docker login hint.
mkdir -p "$WORK/none"
assert_exit 4 "no credentials exits 4" -- "$cs" --docker-config "$WORK/none" --ca-cert "$CA" audit "$R/team/app:v1"
assert_contains "$WORK/err" "$R requires authentication; run: docker login $R" "the login hint is given"

# A malformed config.json is an error that names the file, not a silent anonymous try.
mkdir -p "$WORK/broken"
echo '{"auths": [' >"$WORK/broken/config.json"
assert_exit 1 "a malformed config.json exits 1" -- "$cs" --docker-config "$WORK/broken" --ca-cert "$CA" audit "$R/team/app:v1"
assert_contains "$WORK/err" 'config\.json' "the malformed config is named"
