#!/usr/bin/env bash
# A registry with Bearer token auth (`auth: token:`, tokens from tests/integration/tokenserver.py,
# the way Docker Hub and most private registries work): cachesync does the token dance
# anonymously for a public repository and with the `docker login` credentials for a private
# one, gets byte-equal results to curl doing the dance itself, asks only for pull, fails
# clearly (exit 4) without or with wrong credentials, never prints the password or a token,
# and does the same over TLS with the token server on https. A push of an image already pushed
# to another repository mounts every blob (POST ?mount=&from=, 0 bytes uploaded) with one token
# for repository:B:pull,push plus repository:A:pull.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl

cs=$CACHESYNC
start_registry tok --token --htpasswd alice:t0k3n-pw --anonymous-pull '^public/'
start_dockerd a
make_base_image a
R=$tok_REG
TLOG=$tok_REG_TOKEN_LOG

accept='Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'

# curl_dance OUT URL [curl args...]: GET URL as a registry client does, independently of
# cachesync: without credentials first; on 401, a token from the realm and service of the
# Bearer challenge for the scope it names (with Basic credentials CURL_USER=user:pass when
# set), then the request again with that token.
curl_dance() {
    local out=$1 url=$2 code chal realm service scope tok user=()
    shift 2
    code=$(curl -s --noproxy '*' "$@" -H "$accept" -D "$WORK/dance.hdr" -o "$out" \
        -w '%{http_code}' "$url") || return 1
    [[ $code == 200 ]] && return 0
    [[ $code == 401 ]] || return 1
    chal=$(grep -i '^www-authenticate: *bearer ' "$WORK/dance.hdr" | tr -d '\r')
    realm=$(sed -n 's/.*realm="\([^"]*\)".*/\1/p' <<<"$chal")
    service=$(sed -n 's/.*service="\([^"]*\)".*/\1/p' <<<"$chal")
    scope=$(sed -n 's/.*scope="\([^"]*\)".*/\1/p' <<<"$chal")
    [[ -n $realm ]] || return 1
    [[ -n ${CURL_USER:-} ]] && user=(-u "$CURL_USER")
    tok=$(curl -sf --noproxy '*' "$@" "${user[@]}" -G --data-urlencode "service=$service" \
        --data-urlencode "scope=$scope" "$realm" | jq -r '.token // .access_token') || return 1
    curl -sf --noproxy '*' "$@" -L -H "$accept" -H "Authorization: Bearer $tok" -o "$out" "$url"
}

# Lines the token server logged since token_mark.
token_mark() { tmark=$(wc -l <"$1"); }
token_since() { tail -n "+$((tmark + 1))" "$1" >"$WORK/tlog"; }

# ---- push as alice: private/app:v1 and public/app:v1 -------------------------------------------
ctx=$WORK/ctx
mkdir -p "$ctx"
printf 'FROM localbase:1\nRUN echo token > /x\n' >"$ctx/Dockerfile"
build_image a "$ctx" "$R/private/app:v1"
docker_cli a tag "$R/private/app:v1" "$R/public/app:v1"
printf '%s' "$tok_REG_PASS" | docker_cli a login -u "$tok_REG_USER" --password-stdin "$R" >/dev/null 2>&1 ||
    fail "docker login to $R"
for repo in private public; do
    docker_cli a push "$R/$repo/app:v1" >"$WORK/push.log" 2>&1 ||
        fail "docker push $repo/app: $(tail -3 "$WORK/push.log")"
done
pass "pushed to the token-auth registry after docker login"
assert_contains "$TLOG" "authorization=basic user=alice .*scope=repository:private/app:[a-z,]*push" \
    "dockerd got a push token for alice from the token server"
# No --identity-tokens: docker login stores the password, not an identity token.
jq -e --arg r "$R" '.auths[$r].auth and .auths[$r].identitytoken == null' \
    "$DOCKER_CONFIG/config.json" >/dev/null ||
    fail "docker login did not write auths[$R].auth alone (credsStore in use? identitytoken?)"

# ---- anonymous: public pulls, private is refused -----------------------------------------------
mkdir -p "$WORK/empty"
curl_dance "$WORK/public.curl" "http://$R/v2/public/app/manifests/v1" || fail "curl: anonymous public manifest"
assert_exit 0 "anonymous raw manifest of a public repository" -- \
    "$cs" --docker-config "$WORK/empty" audit --raw manifest "$R/public/app:v1"
cmp -s "$WORK/out" "$WORK/public.curl" || fail "public manifest differs from curl's"
pass "anonymous public manifest is byte-equal to curl's"

assert_exit 4 "anonymous access to a private repository exits 4" -- \
    "$cs" --docker-config "$WORK/empty" audit --raw manifest "$R/private/app:v1"
assert_contains "$WORK/err" "$R.*docker login $R" "the refusal names the registry and docker login"

# ---- docker login credentials: private manifest and config -------------------------------------
CURL_USER=$tok_REG_USER:$tok_REG_PASS curl_dance "$WORK/manifest.curl" \
    "http://$R/v2/private/app/manifests/v1" || fail "curl: private manifest"
cdigest=$(jq -r .config.digest "$WORK/manifest.curl")
CURL_USER=$tok_REG_USER:$tok_REG_PASS curl_dance "$WORK/config.curl" \
    "http://$R/v2/private/app/blobs/$cdigest" || fail "curl: private config"

token_mark "$TLOG"
assert_exit 0 "raw manifest of a private repository with the docker login credentials" -- \
    "$cs" audit --raw manifest "$R/private/app:v1"
cmp -s "$WORK/out" "$WORK/manifest.curl" || fail "private manifest differs from curl's"
pass "private manifest is byte-equal to curl's"
assert_exit 0 "raw config of a private repository" -- "$cs" audit --raw config "$R/private/app:v1"
cmp -s "$WORK/out" "$WORK/config.curl" || fail "private config differs from curl's"
pass "private config is byte-equal to curl's"
token_since "$TLOG"
assert_contains "$WORK/tlog" 'status=200 authorization=basic user=alice .*scope=repository:private/app:pull( |$)' \
    "cachesync asked the token server for repository:private/app:pull with Basic credentials"
assert_not_contains "$WORK/tlog" 'scope=repository:private/app:[a-z,]*push' "cachesync never asks for push"
assert_not_contains "$WORK/tlog" 'status=[^2]' "every token request of cachesync succeeded"

# ---- wrong password ----------------------------------------------------------------------------
mkdir -p "$WORK/bad"
printf '{"auths":{"%s":{"auth":"%s"}}}' "$R" "$(printf 'alice:Not-The-Pw-77' | base64)" \
    >"$WORK/bad/config.json"
assert_exit 4 "a wrong password exits 4" -- \
    "$cs" --docker-config "$WORK/bad" audit --raw manifest "$R/private/app:v1"
assert_contains "$WORK/err" "$R: wrong username or password" "the wrong password is explained"
assert_not_contains "$WORK/err" 'Not-The-Pw-77' "the wrong password itself is not printed"

# ---- -v -v shows neither the password nor a token ----------------------------------------------
assert_exit 0 "verbose run" -- "$cs" -v -v audit "$R/private/app:v1"
assert_not_contains "$WORK/err" "$tok_REG_PASS" "the password is not in verbose output"
assert_not_contains "$WORK/err" "$(printf '%s:%s' "$tok_REG_USER" "$tok_REG_PASS" | base64)" \
    "the Basic credentials are not in verbose output"
assert_not_contains "$WORK/err" 'eyJ' "no token (JWT) is in verbose output"
assert_not_contains "$WORK/out" 'eyJ' "no token (JWT) is in the output"
assert_contains "$WORK/err" "> GET http://$R/v2/" "verbose output shows the requests"

# ---- cross-repository mount: push to mnt/a, then the same image to mnt/b ----------------------
# A store of its own: it records which repositories hold which blobs, and nothing else may
# have taught it where these blobs are.
mstore=$WORK/mount-store
token_mark "$TLOG"
assert_exit 0 "cachesync push to mnt/a" -- env DOCKER_HOST="$a_DOCKER_HOST" \
    "$cs" --json --store "$mstore" push "docker:$R/private/app:v1" "$R/mnt/a:v1"
cp "$WORK/out" "$WORK/push-a.json"
nblobs=$(jq -r .blobs.total "$WORK/push-a.json")
assert_eq "$(jq -r .blobs.uploaded "$WORK/push-a.json")" "$nblobs" "the first push uploads every blob"
token_since "$TLOG"
assert_contains "$WORK/tlog" 'status=200 authorization=basic user=alice .*scope=repository:mnt/a:pull,push .*granted=repository:mnt/a:pull,push' \
    "the first push got a pull,push token for mnt/a"

token_mark "$TLOG"
assert_exit 0 "cachesync push of the same image to mnt/b" -- env DOCKER_HOST="$a_DOCKER_HOST" \
    "$cs" -v -v --json --store "$mstore" push "docker:$R/private/app:v1" "$R/mnt/b:v1"
cp "$WORK/out" "$WORK/push-b.json"
cp "$WORK/err" "$WORK/push-b.err"
token_since "$TLOG"
assert_eq "$(jq -r .blobs.total "$WORK/push-b.json")" "$nblobs" "the second push has the same blobs"
assert_eq "$(jq -r .blobs.mounted "$WORK/push-b.json")" "$nblobs" "every blob was mounted from mnt/a"
assert_eq "$(jq -r .blobs.uploaded "$WORK/push-b.json")" 0 "no blob was uploaded"
assert_eq "$(jq -r .blobs.bytes_uploaded "$WORK/push-b.json")" 0 "0 layer bytes were uploaded"
assert_eq "$(jq -r .digest "$WORK/push-b.json")" "$(jq -r .digest "$WORK/push-a.json")" \
    "mnt/b got the same manifest"
CURL_USER=$tok_REG_USER:$tok_REG_PASS curl_dance "$WORK/mnt-b.curl" "http://$R/v2/mnt/b/manifests/v1" ||
    fail "curl: mnt/b manifest"
for d in $(jq -r '.config.digest, .layers[].digest' "$WORK/mnt-b.curl"); do
    assert_contains "$WORK/push-b.err" "> POST http://$R/v2/mnt/b/blobs/uploads/\\?mount=$d&from=mnt/a\$" \
        "POST ?mount=${d:7:12}&from=mnt/a"
done
assert_eq "$(grep -c "^cachesync: debug: < 201 http://$R/v2/mnt/b/blobs/uploads/?mount=" "$WORK/push-b.err")" \
    "$nblobs" "the registry answered 201 Created to every mount"
assert_not_contains "$WORK/push-b.err" "> (PUT|PATCH) http://$R/v2/mnt/b/blobs/" "no blob upload request to mnt/b"
# one token for both repositories: push on the target, pull on the source
assert_contains "$WORK/tlog" 'GET /token status=200 authorization=basic user=alice .*scope=repository:mnt/b:pull,push scope=repository:mnt/a:pull granted=repository:mnt/b:pull,push granted=repository:mnt/a:pull' \
    "the mount token asked for repository:mnt/b:pull,push and repository:mnt/a:pull, and got both"
assert_not_contains "$WORK/tlog" 'scope=repository:mnt/a:[a-z,]*push' "the mount asked no push on the source"
assert_not_contains "$WORK/tlog" 'status=[^2]' "every token request of the second push succeeded"
for d in $(jq -r '.config.digest, .layers[].digest' "$WORK/mnt-b.curl"); do
    CURL_USER=$tok_REG_USER:$tok_REG_PASS curl_dance "$WORK/mnt-b.blob" "http://$R/v2/mnt/b/blobs/$d" ||
        fail "curl: blob $d of mnt/b"
    [[ sha256:$(sha256sum "$WORK/mnt-b.blob" | cut -d' ' -f1) == "$d" ]] || fail "blob $d of mnt/b does not verify"
done
pass "mnt/b serves every mounted blob, verified"

# ---- the same over TLS: registry and token server on https with the test CA -------------------
start_registry tls --tls --token --htpasswd alice:tls-t0k3n-pw --anonymous-pull '^public/'
S=$tls_REG
CA=$tls_REG_CA
[[ $tls_REG_TOKEN_URL == https://* ]] || fail "the TLS registry's realm is not https: $tls_REG_TOKEN_URL"
docker_cli a tag "$R/private/app:v1" "$S/private/app:v1"
printf '%s' "$tls_REG_PASS" | docker_cli a login -u "$tls_REG_USER" --password-stdin "$S" >/dev/null 2>&1 ||
    fail "docker login to $S"
docker_cli a push "$S/private/app:v1" >"$WORK/push.log" 2>&1 ||
    fail "docker push over TLS: $(tail -3 "$WORK/push.log")"
pass "pushed to the TLS token-auth registry"
CURL_USER=$tls_REG_USER:$tls_REG_PASS curl_dance "$WORK/tls-manifest.curl" \
    "https://$S/v2/private/app/manifests/v1" --cacert "$CA" || fail "curl: TLS private manifest"

token_mark "$tls_REG_TOKEN_LOG"
assert_exit 0 "raw manifest over TLS with a token from the https token server" -- \
    "$cs" --ca-cert "$CA" audit --raw manifest "$S/private/app:v1"
cmp -s "$WORK/out" "$WORK/tls-manifest.curl" || fail "TLS manifest differs from curl's"
pass "TLS manifest is byte-equal to curl's"
token_since "$tls_REG_TOKEN_LOG"
assert_contains "$WORK/tlog" 'status=200 authorization=basic user=alice .*scope=repository:private/app:pull( |$)' \
    "cachesync got its TLS token with Basic credentials"
assert_exit 1 "without --ca-cert the TLS token registry exits 1" -- \
    "$cs" audit --raw manifest "$S/private/app:v1"
assert_contains "$WORK/err" "$S: TLS certificate not trusted" "the certificate error names the registry"
