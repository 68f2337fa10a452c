#!/usr/bin/env bash
# Docker credential helpers and identity tokens: with credHelpers or credsStore in the docker
# config, cachesync asks docker-credential-<name> (found on PATH, the server key on stdin) and
# gets the same private manifest as curl with the password; a helper's "credentials not found"
# is anonymous (exit 4 on a private repository), a missing helper is a one-line error naming
# it; an identity token (`docker login` to a token server that issues refresh tokens, or a
# helper answering Username "<token>") is traded for access tokens with the OAuth2 POST
# grant_type=refresh_token; -v -v never shows the password or the identity token.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl

cs=$CACHESYNC
start_registry tok --token --htpasswd alice:ch-pw-5150
start_dockerd a
make_base_image a
R=$tok_REG
TLOG=$tok_REG_TOKEN_LOG

accept='Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'

# curl_dance OUT URL: GET URL as a registry client does, with Basic CURL_USER=user:pass for
# the token (see test_registry_token.sh).
curl_dance() {
    local out=$1 url=$2 code chal realm service scope tok
    code=$(curl -s --noproxy '*' -H "$accept" -D "$WORK/dance.hdr" -o "$out" \
        -w '%{http_code}' "$url") || return 1
    [[ $code == 200 ]] && return 0
    [[ $code == 401 ]] || return 1
    chal=$(grep -i '^www-authenticate: *bearer ' "$WORK/dance.hdr" | tr -d '\r')
    realm=$(sed -n 's/.*realm="\([^"]*\)".*/\1/p' <<<"$chal")
    service=$(sed -n 's/.*service="\([^"]*\)".*/\1/p' <<<"$chal")
    scope=$(sed -n 's/.*scope="\([^"]*\)".*/\1/p' <<<"$chal")
    [[ -n $realm ]] || return 1
    tok=$(curl -sf --noproxy '*' -u "$CURL_USER" -G --data-urlencode "service=$service" \
        --data-urlencode "scope=$scope" "$realm" | jq -r '.token // .access_token') || return 1
    curl -sf --noproxy '*' -L -H "$accept" -H "Authorization: Bearer $tok" -o "$out" "$url"
}

token_mark() { tmark=$(wc -l <"$1"); }
token_since() { tail -n "+$((tmark + 1))" "$1" >"$WORK/tlog"; }

# ---- push as alice with docker login -----------------------------------------------------------
ctx=$WORK/ctx
mkdir -p "$ctx"
printf 'FROM localbase:1\nRUN echo credhelper > /x\n' >"$ctx/Dockerfile"
build_image a "$ctx" "$R/private/app:v1"
printf '%s' "$tok_REG_PASS" | docker_cli a login -u "$tok_REG_USER" --password-stdin "$R" >/dev/null 2>&1 ||
    fail "docker login to $R"
docker_cli a push "$R/private/app:v1" >"$WORK/push.log" 2>&1 ||
    fail "docker push private/app: $(tail -3 "$WORK/push.log")"
pass "pushed private/app:v1 to the token-auth registry"
CURL_USER=$tok_REG_USER:$tok_REG_PASS curl_dance "$WORK/manifest.curl" \
    "http://$R/v2/private/app/manifests/v1" || fail "curl: private manifest"

# ---- helpers on PATH ---------------------------------------------------------------------------
mkdir -p "$WORK/bin"
# docker-credential-cstest: alice's password for $R, "not found" for any other key; logs the
# keys it is asked for (never the secret) to $WORK/helper.log.
cat >"$WORK/bin/docker-credential-cstest" <<HELPER
#!/usr/bin/env bash
[[ \${1:-} == get ]] || { echo "unsupported action \$1"; exit 1; }
key=\$(cat)
key=\${key//[\$'\\t\\r\\n ']/}
printf '%s\n' "\$key" >>"$WORK/helper.log"
if [[ \$key == "$R" ]]; then
    printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\n' "\$key" "$tok_REG_USER" "$tok_REG_PASS"
    exit 0
fi
echo "credentials not found in native keychain"
exit 1
HELPER
# docker-credential-cstestnone: knows nothing
printf '#!/bin/sh\ncat >/dev/null\necho "credentials not found in native keychain"\nexit 1\n' \
    >"$WORK/bin/docker-credential-cstestnone"
# docker-credential-cstestbroken: fails the way a locked keychain does
printf '#!/bin/sh\ncat >/dev/null\necho "error getting credentials - err: exit status 2, out: gpg: decryption failed: No secret key"\nexit 1\n' \
    >"$WORK/bin/docker-credential-cstestbroken"
chmod +x "$WORK"/bin/docker-credential-*
export PATH=$WORK/bin:$PATH

# ---- credHelpers -------------------------------------------------------------------------------
mkdir -p "$WORK/ch"
printf '{"auths":{"%s":{}},"credHelpers":{"%s":"cstest"}}' "$R" "$R" >"$WORK/ch/config.json"
: >"$WORK/helper.log"
token_mark "$TLOG"
assert_exit 0 "credHelpers: raw manifest of a private repository" -- \
    "$cs" --docker-config "$WORK/ch" audit --raw manifest "$R/private/app:v1"
cmp -s "$WORK/out" "$WORK/manifest.curl" || fail "credHelpers manifest differs from curl's"
pass "credHelpers manifest is byte-equal to curl's"
assert_contains "$WORK/helper.log" "^$R\$" "the helper was asked with the registry's key"
token_since "$TLOG"
assert_contains "$WORK/tlog" 'status=200 authorization=basic user=alice .*scope=repository:private/app:pull( |$)' \
    "the helper's password went to the token server as Basic credentials"

# ---- credsStore --------------------------------------------------------------------------------
mkdir -p "$WORK/cs"
printf '{"auths":{"%s":{}},"credsStore":"cstest"}' "$R" >"$WORK/cs/config.json"
assert_exit 0 "credsStore: raw manifest of a private repository" -- \
    "$cs" --docker-config "$WORK/cs" audit --raw manifest "$R/private/app:v1"
cmp -s "$WORK/out" "$WORK/manifest.curl" || fail "credsStore manifest differs from curl's"
pass "credsStore manifest is byte-equal to curl's"

# ---- not found: anonymous ----------------------------------------------------------------------
mkdir -p "$WORK/nf"
printf '{"credsStore":"cstestnone"}' >"$WORK/nf/config.json"
assert_exit 4 "a helper without credentials means anonymous: exit 4 on a private repository" -- \
    "$cs" --docker-config "$WORK/nf" audit --raw manifest "$R/private/app:v1"
assert_contains "$WORK/err" "requires authentication" "the anonymous refusal says authentication is required"
assert_not_contains "$WORK/err" "credentials not found" "not found is not reported as a helper error"

# ---- a failing helper: its first output line, exit 4 -------------------------------------------
mkdir -p "$WORK/br"
printf '{"credHelpers":{"%s":"cstestbroken"}}' "$R" >"$WORK/br/config.json"
assert_exit 4 "a failing helper exits 4" -- \
    "$cs" --docker-config "$WORK/br" audit --raw manifest "$R/private/app:v1"
assert_contains "$WORK/err" "docker-credential-cstestbroken.*decryption failed" \
    "the failure quotes the helper's message"

# ---- a missing helper: one clear line ----------------------------------------------------------
mkdir -p "$WORK/ms"
printf '{"credsStore":"nosuchhelper"}' >"$WORK/ms/config.json"
assert_exit 1 "a helper that is not installed exits 1" -- \
    "$cs" --docker-config "$WORK/ms" audit --raw manifest "$R/private/app:v1"
assert_contains "$WORK/err" "docker-credential-nosuchhelper not found on PATH" \
    "the error names docker-credential-nosuchhelper"
assert_eq "$(wc -l <"$WORK/err")" 1 "the missing-helper error is one line"

# ---- a helper name that is not a name ----------------------------------------------------------
mkdir -p "$WORK/bad"
printf '{"credsStore":"../../bin/sh"}' >"$WORK/bad/config.json"
assert_exit 2 "a helper name with a slash is refused" -- \
    "$cs" --docker-config "$WORK/bad" audit --raw manifest "$R/private/app:v1"
assert_contains "$WORK/err" 'is not \[A-Za-z0-9._-\]\+' "the refusal says what a helper name may hold"

# ---- -v -v through a helper --------------------------------------------------------------------
assert_exit 0 "verbose run through the helper" -- \
    "$cs" --docker-config "$WORK/ch" -v -v audit "$R/private/app:v1"
assert_not_contains "$WORK/err" "$tok_REG_PASS" "the helper's password is not in verbose output"
assert_not_contains "$WORK/err" 'eyJ' "no token (JWT) is in verbose output"

# ---- identity tokens ---------------------------------------------------------------------------
start_registry idt --token --htpasswd alice:idt-pw-8086 --identity-tokens
I=$idt_REG
ILOG=$idt_REG_TOKEN_LOG
printf '%s' "$idt_REG_PASS" | docker_cli a login -u "$idt_REG_USER" --password-stdin "$I" >/dev/null 2>&1 ||
    fail "docker login to $I"
itok=$(jq -r --arg r "$I" '.auths[$r].identitytoken // empty' "$DOCKER_CONFIG/config.json")
[[ -n $itok ]] || fail "docker login did not store an identitytoken for $I"
pass "docker login stored an identitytoken"
docker_cli a tag "$R/private/app:v1" "$I/private/app:v1"
docker_cli a push "$I/private/app:v1" >"$WORK/push.log" 2>&1 ||
    fail "docker push to $I: $(tail -3 "$WORK/push.log")"
pass "pushed private/app:v1 to the identity-token registry"
CURL_USER=$idt_REG_USER:$idt_REG_PASS curl_dance "$WORK/imanifest.curl" \
    "http://$I/v2/private/app/manifests/v1" || fail "curl: identity-token registry manifest"

token_mark "$ILOG"
assert_exit 0 "raw manifest with the identitytoken of config.json" -- \
    "$cs" audit --raw manifest "$I/private/app:v1"
cmp -s "$WORK/out" "$WORK/imanifest.curl" || fail "identity-token manifest differs from curl's"
pass "identity-token manifest is byte-equal to curl's"
token_since "$ILOG"
assert_contains "$WORK/tlog" 'POST /token status=200 .*grant_type=refresh_token .*client_id=cachesync .*scope=repository:private/app:pull( |$)' \
    "cachesync traded the identity token with an OAuth2 POST grant_type=refresh_token"
assert_not_contains "$WORK/tlog" 'GET /token' "no GET token request with an identity token"

# a helper answering Username "<token>"
cat >"$WORK/bin/docker-credential-cstesttok" <<HELPER
#!/bin/sh
cat >/dev/null
printf '{"ServerURL":"%s","Username":"<token>","Secret":"%s"}\n' "$I" "$itok"
HELPER
chmod +x "$WORK/bin/docker-credential-cstesttok"
mkdir -p "$WORK/tk"
printf '{"credHelpers":{"%s":"cstesttok"}}' "$I" >"$WORK/tk/config.json"
token_mark "$ILOG"
assert_exit 0 "raw manifest with an identity token from a helper (<token>)" -- \
    "$cs" --docker-config "$WORK/tk" audit --raw manifest "$I/private/app:v1"
cmp -s "$WORK/out" "$WORK/imanifest.curl" || fail "helper identity-token manifest differs from curl's"
pass "helper identity-token manifest is byte-equal to curl's"
token_since "$ILOG"
assert_contains "$WORK/tlog" 'POST /token status=200 .*grant_type=refresh_token' \
    "the helper's identity token went out as a refresh_token grant"

# a refused identity token
mkdir -p "$WORK/rt"
printf '{"auths":{"%s":{"identitytoken":"not-a-real-refresh-token-42"}}}' "$I" >"$WORK/rt/config.json"
assert_exit 4 "a refused identity token exits 4" -- \
    "$cs" --docker-config "$WORK/rt" audit --raw manifest "$I/private/app:v1"
assert_contains "$WORK/err" "identity token refused by 127\.0\.0\.1:[0-9]+.*docker login $I" \
    "the refusal names the token server and docker login"
assert_not_contains "$WORK/err" 'not-a-real-refresh-token-42' "the refused identity token is not printed"

assert_exit 0 "verbose run with an identity token" -- "$cs" -v -v audit "$I/private/app:v1"
assert_not_contains "$WORK/err" "$idt_REG_PASS" "the password is not in verbose output"
assert_not_contains "$WORK/err" "$itok" "the identity token is not in verbose output"
assert_not_contains "$WORK/err" 'eyJ' "no token (JWT) is in verbose output"
assert_contains "$WORK/err" "> POST http://127\.0\.0\.1:[0-9]+/token" "verbose output shows the token POST"
