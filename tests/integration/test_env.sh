#!/usr/bin/env bash
# The test environment itself works: two registries (plain; TLS + htpasswd) and two Docker
# daemons side by side, a BuildKit build with inline cache, a push, and the pushed config
# carries the cache. If this fails, every other integration test will too.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(cd -- "$(dirname -- "$0")/../.." && pwd)}/tests/integration/lib.sh"

cs_need curl jq

# Time since the previous call, printed as a TAP comment.
t_last=${EPOCHREALTIME/./}
took() {
    local now=${EPOCHREALTIME/./} ms
    ms=$(((now - t_last) / 1000))
    printf '# %s: %d.%03ds\n' "$1" $((ms / 1000)) $((ms % 1000))
    t_last=$now
}

start_registry plain
took "plain registry started"
start_registry secure --tls --htpasswd tester:pa55w0rd
took "TLS+htpasswd registry started"
start_dockerd a
took "dockerd a started"
start_dockerd b
took "dockerd b started"

# ---- the two daemons are separate machines -----------------------------------------------------
id_a=$(docker_cli a info --format '{{.ID}}')
id_b=$(docker_cli b info --format '{{.ID}}')
[[ -n $id_a && $id_a != "$id_b" ]] || fail "daemons a and b have the same engine ID '$id_a'"
pass "two daemons with distinct engine IDs"
assert_eq "$(docker_cli a info --format '{{.Driver}}')" overlay2 "daemon a uses overlay2"

make_base_image a
make_base_image a # idempotent
took "base image on a"
assert_exit 0 "base image localbase:1 on a" -- docker_cli a image inspect localbase:1
assert_exit 1 "daemon b does not see a's images" -- docker_cli b image inspect localbase:1

# ---- BuildKit build with inline cache, push ------------------------------------------------------
ctx=$WORK/ctx
mkdir -p "$ctx"
echo "payload $RANDOM" >"$ctx/file.txt"
cat >"$ctx/Dockerfile" <<'EOF'
FROM localbase:1
RUN echo hi > /x
COPY file.txt /file.txt
EOF
ref=$plain_REG/envtest/app:main
build_image a "$ctx" "$ref"
took "build"
assert_contains "$BUILD_LOG" 'RUN echo hi' "build ran the RUN step"
assert_contains "$BUILD_LOG" 'exporting cache' "build exported inline cache"
assert_exit 0 "RUN step ran in runc" -- docker_cli a run --rm --network none "$ref" cat /x
assert_contains "$WORK/out" '^hi$' "image holds the RUN output"
took "docker run"

assert_exit 0 "docker push to the plain registry" -- docker_cli a push "$ref"
took "push"

# ---- what the registry holds ---------------------------------------------------------------------
accept='application/vnd.docker.distribution.manifest.v2+json'
accept+=',application/vnd.oci.image.manifest.v1+json'
code=$(curl -s --noproxy '*' -o "$WORK/manifest.json" -w '%{http_code}' -H "Accept: $accept" \
    "$plain_REG_URL/v2/envtest/app/manifests/main")
assert_eq "$code" 200 "manifest envtest/app:main is in the registry"
config_digest=$(jq -r .config.digest "$WORK/manifest.json")
[[ $config_digest == sha256:* ]] || fail "manifest has no config digest"
nlayers=$(jq '.layers | length' "$WORK/manifest.json")
assert_eq "$nlayers" 3 "manifest has three layers (base, RUN, COPY)"
code=$(curl -s --noproxy '*' -L -o "$WORK/config.json" -w '%{http_code}' \
    "$plain_REG_URL/v2/envtest/app/blobs/$config_digest")
assert_eq "$code" 200 "config blob is in the registry"
assert_eq "sha256:$(sha256sum <"$WORK/config.json" | cut -d' ' -f1)" "$config_digest" \
    "config blob matches its digest"
assert_contains "$WORK/config.json" 'moby\.buildkit\.cache\.v0' "config carries the inline cache"
# base64 of a JSON array of cache records; their "layer" fields index the manifest's layers.
jq -r '.["moby.buildkit.cache.v0"]' "$WORK/config.json" | base64 -d >"$WORK/cache.json"
assert_eq "$(jq '[.[].layers[]?.layer] | max' "$WORK/cache.json")" $((nlayers - 1)) \
    "inline cache records reach the last layer"

# ---- TLS + htpasswd registry ---------------------------------------------------------------------
assert_eq "$secure_REG_SCHEME" https "secure registry speaks TLS"
code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --cacert "$secure_REG_CA" \
    -u "$secure_REG_USER:$secure_REG_PASS" "$secure_REG_URL/v2/")
assert_eq "$code" 200 "TLS registry: 200 with CA and user:pass"
code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --cacert "$secure_REG_CA" \
    "$secure_REG_URL/v2/")
assert_eq "$code" 401 "TLS registry: 401 without credentials"
code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --cacert "$secure_REG_CA" \
    -u "$secure_REG_USER:wrong" "https://localhost:${secure_REG#*:}/v2/")
assert_eq "$code" 401 "TLS registry: 401 with a wrong password (cert valid for localhost)"
assert_exit 60 "TLS registry: certificate not trusted without the CA" -- \
    curl -s --noproxy '*' -o /dev/null "$secure_REG_URL/v2/"
code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "$plain_REG_URL/v2/")
assert_eq "$code" 200 "plain registry: 200 without credentials"

# ---- the second daemon builds too -----------------------------------------------------------------
make_base_image b
build_image b "$ctx" envtest/app:b
took "build on b"
assert_exit 0 "daemon b has its own build" -- docker_cli b image inspect envtest/app:b
