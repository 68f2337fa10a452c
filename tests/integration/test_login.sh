#!/usr/bin/env bash
# cachesync login / logout against an htpasswd+TLS registry, with a real dockerd sharing the
# same DOCKER_CONFIG: what `cachesync login` writes lets `docker push`/`docker pull` in, and
# what `docker login` writes lets cachesync in; each one's logout undoes the other's login.
# config.json ends 0600 with every other key as it was; a refused login exits 4 naming the
# registry and changes nothing; with credsStore or credHelpers[HOST] the secret goes to the
# docker-credential-<name> helper (store/erase) and never into config.json; a missing helper is
# an error naming it; the password never shows, even with -v -v.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl

cs=$CACHESYNC
start_registry sec --htpasswd alice:l0gin-Pw-4711 --tls
start_dockerd a
make_base_image a
R=$sec_REG
CA=$sec_REG_CA
U=$sec_REG_USER
P=$sec_REG_PASS
CFG=$DOCKER_CONFIG/config.json
B64=$(printf '%s:%s' "$U" "$P" | base64 -w0)

ctx=$WORK/ctx
mkdir -p "$ctx"
printf 'FROM localbase:1\nRUN echo login > /x\n' >"$ctx/Dockerfile"
build_image a "$ctx" "$R/team/app:v1"

# docker pull of the image from scratch (the base layer stays): 0 when it worked.
docker_pull() {
    docker_cli a rmi -f "$R/team/app:v1" >/dev/null 2>&1 || true
    docker_cli a pull "$R/team/app:v1" >"$WORK/dpull.log" 2>&1
}

# A config.json with other settings, as a real one has.
cat >"$CFG" <<EOF
{
  "auths": {
    "other.example.com:5000": {"auth": "$(printf 'bob:other-pw' | base64)", "email": "bob@example.com"}
  },
  "credHelpers": {"gcr.io": "gcloud"},
  "psFormat": "table {{.ID}}\\t{{.Image}}",
  "experimental": "disabled",
  "x-cachesync-test": {"nested": [1, 2.5, {"k": null}], "text": "h\\u00e9 \\"q\\""}
}
EOF
chmod 644 "$CFG"
cp "$CFG" "$WORK/config.orig"
unchanged() { # MSG: config.json is byte for byte what it was, mode included
    cmp -s "$CFG" "$WORK/config.orig" || fail "$1: config.json changed"
    assert_eq "$(stat -c %a "$CFG")" 644 "$1"
}

# ---- usage: nothing is prompted for without a terminal --------------------------------------
assert_exit 2 "no password and standard input not a terminal: exit 2" -- \
    "$cs" login -u "$U" --ca-cert "$CA" "$R" </dev/null
assert_contains "$WORK/err" "standard input is not a terminal.*--password-stdin" \
    "the refusal to prompt says to use --password-stdin"
assert_exit 2 "--password-stdin without --username: exit 2" -- \
    "$cs" login --password-stdin --ca-cert "$CA" "$R" <<<"$P"
assert_exit 2 "-p with --password-stdin: exit 2" -- \
    "$cs" login -u "$U" -p "$P" --password-stdin --ca-cert "$CA" "$R" <<<"$P"
assert_exit 2 "an empty password: exit 2" -- \
    "$cs" login -u "$U" --password-stdin --ca-cert "$CA" "$R" </dev/null
unchanged "config.json untouched by usage errors"

# ---- a wrong password: exit 4 naming the registry, nothing written ------------------------------
assert_exit 4 "a wrong password exits 4" -- \
    "$cs" login -u "$U" --password-stdin --ca-cert "$CA" "$R" <<<"Wr0ng-pw-99"
assert_contains "$WORK/err" "login to $R failed: wrong username or password for $U" \
    "the refusal names the registry and the user"
assert_not_contains "$WORK/err" 'Wr0ng-pw-99' "the wrong password is not printed"
assert_eq "$(cat "$WORK/out")" "" "nothing on stdout for a refused login"
unchanged "config.json untouched by a refused login"

# ---- login: written as docker writes it ---------------------------------------------------------
assert_exit 0 "login with --password-stdin" -- \
    "$cs" login -u "$U" --password-stdin --ca-cert "$CA" "$R" <<<"$P"
assert_eq "$(cat "$WORK/out")" "Login Succeeded" "it says Login Succeeded, as docker"
assert_contains "$WORK/err" "stored unencrypted in $CFG" "it warns that the password is in the file"
assert_eq "$(stat -c %a "$CFG")" 600 "config.json is mode 0600"
assert_eq "$(jq -r --arg r "$R" '.auths[$r].auth' "$CFG")" "$B64" "auths[HOST].auth is base64(user:password)"
assert_eq "$(jq -c --arg r "$R" '.auths[$r] | keys' "$CFG")" '["auth"]' "the entry holds auth alone"
assert_eq "$(jq -S --arg r "$R" 'del(.auths[$r])' "$CFG")" "$(jq -S . "$WORK/config.orig")" \
    "every other key of config.json is kept, values included"
assert_eq "$(jq -c 'keys_unsorted' "$CFG")" "$(jq -c 'keys_unsorted' "$WORK/config.orig")" \
    "the keys keep their order"
assert_eq "$(find "$DOCKER_CONFIG" -maxdepth 1 -name 'config.json?*' | wc -l)" 0 \
    "no temporary file is left beside it"

# ---- docker uses what cachesync wrote -----------------------------------------------------------
docker_cli a push "$R/team/app:v1" >"$WORK/dpush.log" 2>&1 ||
    fail "docker push with cachesync's login: $(tail -3 "$WORK/dpush.log")"
pass "docker push works with the credentials cachesync login wrote"
docker_pull || fail "docker pull with cachesync's login: $(tail -3 "$WORK/dpull.log")"
pass "docker pull works with the credentials cachesync login wrote"

# ---- --json, -q, -p, stored credentials ---------------------------------------------------------
assert_exit 0 "--json login" -- "$cs" --json login -u "$U" --password-stdin --ca-cert "$CA" "$R" <<<"$P"
jq -e --arg r "$R" --arg u "$U" --arg c "$CFG" \
    '.registry == $r and .username == $u and .stored_in == "config.json" and .config == $c and .stored' \
    "$WORK/out" >/dev/null || fail "--json result: $(cat "$WORK/out")"
pass "--json prints one object naming registry, user and where the secret went"
assert_exit 0 "-q login" -- "$cs" -q login -u "$U" --password-stdin --ca-cert "$CA" "$R" <<<"$P"
assert_eq "$(cat "$WORK/out" "$WORK/err")" "" "-q prints nothing"
assert_exit 0 "-p PASSWORD works" -- "$cs" login -u "$U" -p "$P" --ca-cert "$CA" "$R"
assert_contains "$WORK/err" "insecure.*--password-stdin" "-p warns as docker does"
assert_exit 0 "without user or password the stored credentials are checked" -- \
    "$cs" login --ca-cert "$CA" "$R" </dev/null
assert_eq "$(cat "$WORK/out")" "Login Succeeded" "stored credentials: Login Succeeded"

# ---- -v -v never shows the password ---------------------------------------------------------------
assert_exit 0 "verbose login" -- "$cs" -v -v login -u "$U" --password-stdin --ca-cert "$CA" "$R" <<<"$P"
assert_contains "$WORK/err" "> GET https://$R/v2/" "verbose output shows the requests"
assert_not_contains "$WORK/err" "$P" "the password is not in verbose output"
assert_not_contains "$WORK/err" "$B64" "the Basic credentials are not in verbose output"

# ---- cachesync logout undoes it for docker too ----------------------------------------------------
assert_exit 0 "logout" -- "$cs" logout "$R"
assert_eq "$(cat "$WORK/out")" "Removing login credentials for $R" "logout says what it removes"
assert_eq "$(jq -S . "$CFG")" "$(jq -S . "$WORK/config.orig")" "logout leaves exactly the other keys"
assert_eq "$(stat -c %a "$CFG")" 600 "config.json stays 0600"
dmark=$(wc -l <"$a_DIR/log")
if docker_pull; then fail "docker pull still works after cachesync logout"; fi
# dockerd tries https (refused: no credentials), then plain http (which the TLS port resets)
# and reports the last error; its log has the first.
tail -n "+$((dmark + 1))" "$a_DIR/log" >"$WORK/dlog"
assert_contains "$WORK/dlog" "manifests/v1.*no basic auth credentials" \
    "docker pull is refused for want of credentials after cachesync logout"
assert_exit 0 "logout of a registry not logged in to exits 0" -- "$cs" logout "$R"
assert_eq "$(cat "$WORK/out")" "Not logged in to $R" "it says Not logged in, as docker"

# ---- on a terminal: prompts, the password not echoed (script(1) gives it a pty) ---------------
if command -v script >/dev/null 2>&1; then
    mkfifo "$WORK/pty.in"
    script -qec "$cs login --ca-cert $CA $R" /dev/null <"$WORK/pty.in" >"$WORK/pty.out" 2>&1 &
    spid=$!
    exec 7>"$WORK/pty.in"
    pty_wait() { # TEXT: until the terminal shows it (30 s)
        local i
        for ((i = 0; i < 600; i++)); do
            grep -qF -- "$1" "$WORK/pty.out" && return 0
            sleep 0.05
        done
        return 1
    }
    pty_wait "Username: " || fail "no Username prompt on the terminal: $(cat "$WORK/pty.out")"
    printf '%s\n' "$U" >&7
    pty_wait "Password: " || fail "no Password prompt on the terminal: $(cat "$WORK/pty.out")"
    printf '%s\n' "$P" >&7
    rc=0
    wait "$spid" || rc=$?
    exec 7>&-
    tr -d '\r' <"$WORK/pty.out" >"$WORK/pty.txt"
    assert_eq "$rc" 0 "login on a terminal with prompted user and password"
    assert_contains "$WORK/pty.txt" "^Username: $U\$" "the user name is prompted for and echoed"
    assert_contains "$WORK/pty.txt" "^Password: \$" "the password is prompted for"
    assert_not_contains "$WORK/pty.txt" "$P" "the password is not echoed"
    assert_contains "$WORK/pty.txt" "^Login Succeeded\$" "Login Succeeded on the terminal"
    assert_eq "$(jq -r --arg r "$R" '.auths[$r].auth' "$CFG")" "$B64" "the prompted login is stored"
    assert_exit 0 "logout after the terminal login" -- "$cs" logout "$R"
else
    printf '# script(1) not installed: the terminal prompts are not tested\n'
fi

# ---- the reverse: docker login lets cachesync in, cachesync logout undoes it ---------------------
docker_cli a login -u "$U" --password-stdin "$R" <<<"$P" >/dev/null 2>&1 || fail "docker login to $R"
assert_eq "$(jq -r --arg r "$R" '.auths[$r].auth' "$CFG")" "$B64" "docker login wrote the same auth"
assert_exit 0 "cachesync pull --to store with docker login's credentials" -- \
    "$cs" --ca-cert "$CA" --store "$WORK/store" pull --to store "$R/team/app:v1"
curl -sf --cacert "$CA" -u "$U:$P" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' \
    "https://$R/v2/team/app/manifests/v1" -o "$WORK/manifest.curl" || fail "curl manifest"
mdig=$(sha256sum "$WORK/manifest.curl" | cut -d' ' -f1)
cmp -s "$WORK/store/blobs/sha256/$mdig" "$WORK/manifest.curl" || fail "the store lacks the manifest"
for d in $(jq -r '.config.digest, .layers[].digest' "$WORK/manifest.curl"); do
    [[ $(sha256sum "$WORK/store/blobs/sha256/${d#sha256:}" | cut -d' ' -f1) == "${d#sha256:}" ]] ||
        fail "blob $d is not in the store, or does not verify"
done
pass "the store holds the manifest and every blob, verified"
assert_exit 0 "cachesync logout after docker login" -- "$cs" logout "$R"
assert_eq "$(jq --arg r "$R" '.auths[$r]' "$CFG")" null "docker's entry is gone"
assert_exit 4 "cachesync no longer gets in" -- "$cs" --ca-cert "$CA" audit "$R/team/app:v1"
assert_exit 0 "cachesync login again" -- "$cs" login -u "$U" --password-stdin --ca-cert "$CA" "$R" <<<"$P"
docker_cli a logout "$R" >/dev/null 2>&1 || fail "docker logout $R"
assert_exit 4 "after docker logout cachesync is refused (exit 4)" -- \
    "$cs" --ca-cert "$CA" audit "$R/team/app:v1"
assert_contains "$WORK/err" "$R requires authentication" "docker logout removed cachesync's login"

# ---- a credential helper: docker-credential-test on PATH -----------------------------------------
mkdir -p "$WORK/bin" "$WORK/helper"
# Keeps each server's {"ServerURL","Username","Secret"} in $WORK/helper/<server with _ for
# specials>; logs each action and server (never the secret) to $WORK/helper.log.
cat >"$WORK/bin/docker-credential-test" <<HELPER
#!/usr/bin/env bash
set -u
dir=$WORK/helper
file() { printf '%s/%s' "\$dir" "\${1//[^A-Za-z0-9.-]/_}"; }
case \${1:-} in
store)
    json=\$(cat)
    key=\$(jq -r .ServerURL <<<"\$json") || { echo "bad store input"; exit 1; }
    printf '%s' "\$json" >"\$(file "\$key")"
    ;;
get | erase)
    key=\$(cat)
    key=\${key//[\$'\\t\\r\\n ']/}
    [[ -f \$(file "\$key") ]] || { echo "credentials not found in native keychain"; echo "\$1 \$key notfound" >>"$WORK/helper.log"; exit 1; }
    if [[ \$1 == get ]]; then cat "\$(file "\$key")"; else rm -f "\$(file "\$key")"; fi
    ;;
*) echo "unknown action \${1:-}"; exit 1 ;;
esac
echo "\$1 \${key:-}" >>"$WORK/helper.log"
HELPER
chmod +x "$WORK/bin/docker-credential-test"
export PATH=$WORK/bin:$PATH
: >"$WORK/helper.log"
HF=$WORK/helper/${R//[^A-Za-z0-9.-]/_}

jq '. + {"credsStore": "test"}' "$WORK/config.orig" >"$CFG"
assert_exit 4 "a wrong password through credsStore exits 4" -- \
    "$cs" login -u "$U" --password-stdin --ca-cert "$CA" "$R" <<<"Wr0ng-pw-99"
assert_not_contains "$WORK/helper.log" '^store' "nothing was given to the helper for a refused login"
assert_exit 0 "login with credsStore" -- \
    "$cs" --json login -u "$U" --password-stdin --ca-cert "$CA" "$R" <<<"$P"
assert_eq "$(jq -r .stored_in "$WORK/out")" "helper test" "--json says the secret went to helper test"
assert_not_contains "$WORK/err" "unencrypted" "no plain-text warning with a helper"
assert_eq "$(jq -c . "$HF")" "$(jq -nc --arg r "$R" --arg u "$U" --arg p "$P" '{ServerURL:$r,Username:$u,Secret:$p}')" \
    "the helper got {ServerURL, Username, Secret}"
assert_not_contains "$CFG" "$P" "config.json does not hold the password"
assert_not_contains "$CFG" "$B64" "config.json does not hold the encoded credentials"
assert_eq "$(jq -c --arg r "$R" '.auths[$r]' "$CFG")" '{}' "config.json keeps an empty entry, as docker"
assert_eq "$(stat -c %a "$CFG")" 600 "config.json is 0600 with a helper too"
assert_exit 0 "cachesync reads the login back through the helper" -- \
    "$cs" --ca-cert "$CA" audit --raw manifest "$R/team/app:v1"
docker_pull || fail "docker pull through the helper: $(tail -3 "$WORK/dpull.log")"
pass "docker pull works with the login cachesync stored in the helper"
assert_exit 0 "verbose login through the helper" -- \
    "$cs" -v -v login -u "$U" --password-stdin --ca-cert "$CA" "$R" <<<"$P"
assert_not_contains "$WORK/err" "$P" "the password is not in verbose output (helper)"
assert_exit 0 "logout through the helper" -- "$cs" logout "$R"
assert_eq "$(cat "$WORK/out")" "Removing login credentials for $R" "logout through the helper says so"
[[ ! -e $HF ]] || fail "the helper still holds the credentials after logout"
pass "logout erased the credentials from the helper"
assert_eq "$(jq --arg r "$R" '.auths[$r]' "$CFG")" null "logout removed the empty entry too"
assert_exit 0 "logout again" -- "$cs" logout "$R"
assert_eq "$(cat "$WORK/out")" "Not logged in to $R" "nothing left: Not logged in"

# docker login into the helper, cachesync logout out of it
docker_cli a login -u "$U" --password-stdin "$R" <<<"$P" >/dev/null 2>&1 || fail "docker login (helper)"
[[ -f $HF ]] || fail "docker login did not use the helper"
assert_exit 0 "cachesync logout of docker's helper login" -- "$cs" logout "$R"
[[ ! -e $HF ]] || fail "cachesync logout left docker's login in the helper"
pass "cachesync logout erased docker's login from the helper"

# credHelpers[HOST] beats the file
jq --arg r "$R" '. + {"credHelpers": {"gcr.io": "gcloud", ($r): "test"}}' "$WORK/config.orig" >"$CFG"
assert_exit 0 "login with credHelpers[HOST]" -- \
    "$cs" --json login -u "$U" --password-stdin --ca-cert "$CA" "$R" <<<"$P"
assert_eq "$(jq -r .stored_in "$WORK/out")" "helper test" "credHelpers[HOST] names the helper used"
assert_eq "$(jq -r .Secret "$HF")" "$P" "the helper holds the secret"
assert_not_contains "$CFG" "$P" "config.json does not hold the password (credHelpers)"
assert_exit 0 "logout with credHelpers[HOST]" -- "$cs" logout "$R"
[[ ! -e $HF ]] || fail "logout left the credHelpers login"
pass "logout erased the credHelpers login"

# ---- a helper that is not installed ---------------------------------------------------------------
jq '. + {"credsStore": "nosuchhelper"}' "$WORK/config.orig" >"$CFG"
chmod 644 "$CFG"
cp "$CFG" "$WORK/config.orig"
assert_exit 1 "login with a missing helper exits 1" -- \
    "$cs" login -u "$U" --password-stdin --ca-cert "$CA" "$R" <<<"$P"
assert_contains "$WORK/err" "docker-credential-nosuchhelper not found on PATH" "the error names the helper"
assert_eq "$(wc -l <"$WORK/err")" 1 "one line of error"
unchanged "config.json untouched when the helper is missing"
assert_exit 1 "logout with a missing helper exits 1" -- "$cs" logout "$R"
assert_contains "$WORK/err" "docker-credential-nosuchhelper not found on PATH" "logout names the helper too"
unchanged "config.json untouched by logout when the helper is missing"
