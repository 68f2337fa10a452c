#!/usr/bin/env bash
# Blob downloads redirected to another host, as registries on object storage do: a front
# (tests/integration/redirectproxy.py) before an htpasswd registry answers blob GETs with a
# 307 to a second listener on 127.0.0.2, which serves the blob and logs the headers it got.
# `cachesync pull --to store` through the front completes with every blob verified, the front
# saw the registry credentials, and the other host never saw an Authorization header (while
# curl --location-trusted, which does forward it, shows that the check would catch one).
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl python3

cs=$CACHESYNC
start_registry reg --htpasswd carol:r3d1rect-Pw-8
R=$reg_REG
U=$reg_REG_USER
P=$reg_REG_PASS

# ---- a one-layer image (2 MB of random data) as an OCI layout, pushed directly ----------------
img=$WORK/img
mkdir -p "$img/blobs/sha256" "$WORK/rootfs"
head -c 2000000 /dev/urandom >"$WORK/rootfs/data"
tar -C "$WORK/rootfs" --owner=0 --group=0 --mtime=@0 -cf - data | gzip -n >"$WORK/layer.tgz"
diffid=$(gzip -dc "$WORK/layer.tgz" | sha256sum | cut -d' ' -f1)
blob() { # FILE -> sha256 hex, stored in the layout
    local h
    h=$(sha256sum "$1" | cut -d' ' -f1)
    cp "$1" "$img/blobs/sha256/$h"
    echo "$h"
}
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' \
    "$diffid" >"$WORK/config.json"
lh=$(blob "$WORK/layer.tgz")
ch=$(blob "$WORK/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
    "$ch" "$(stat -c %s "$WORK/config.json")" "$lh" "$(stat -c %s "$WORK/layer.tgz")" >"$WORK/manifest.json"
mh=$(blob "$WORK/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
    "$mh" "$(stat -c %s "$WORK/manifest.json")" >"$img/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$img/oci-layout"

# ---- the front, with its blob host on 127.0.0.2 -------------------------------------------------
PY=/usr/bin/python3 # not a pyenv shim: those take 0.3 s to start
[[ -x $PY ]] || PY=$(command -v python3)
: >"$WORK/proxy.out"
"$PY" "$CS_SRCDIR/tests/integration/redirectproxy.py" --upstream "http://$R" \
    --upstream-user "$U:$P" --log "$WORK/proxy.log" >"$WORK/proxy.out" 2>"$WORK/proxy.err" &
proxy_pid=$!
rp_on_exit() {
    local rc=$?
    kill "$proxy_pid" 2>/dev/null
    (exit "$rc")
    cs_on_exit
}
trap rp_on_exit EXIT
for ((i = 0; i < 200; i++)); do
    grep -q '^FRONT=' "$WORK/proxy.out" && break
    kill -0 "$proxy_pid" 2>/dev/null || fail "redirectproxy died: $(cat "$WORK/proxy.err")"
    sleep 0.05
done
F=$(sed -n 's/^FRONT=\([^ ]*\) .*/\1/p' "$WORK/proxy.out")
B=$(sed -n 's/.* BLOBS=\([^ ]*\)$/\1/p' "$WORK/proxy.out")
[[ $F == 127.0.0.1:* && $B == 127.0.0.2:* ]] || fail "redirectproxy printed '$(cat "$WORK/proxy.out")'"

# docker login's result for the registry and for the front (another host:port, its own key)
auth=$(printf '%s:%s' "$U" "$P" | base64 -w0)
printf '{"auths":{"%s":{"auth":"%s"},"%s":{"auth":"%s"}}}' "$R" "$auth" "$F" "$auth" \
    >"$DOCKER_CONFIG/config.json"
assert_exit 0 "push the image straight to the registry" -- \
    "$cs" --store "$WORK/pushstore" push "oci:$img:v1" "$R/team/app:v1"

# Lines the proxy logged since log_mark, as a JSON array.
log_mark() { lmark=$(wc -l <"$WORK/proxy.log" 2>/dev/null || echo 0); }
log_since() { tail -n "+$((lmark + 1))" "$WORK/proxy.log" | jq -s . >"$WORK/plog"; }

# ---- the front and the blob host work as registries on object storage do ----------------------
code=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -u "$U:$P" \
    "http://$F/v2/team/app/blobs/sha256:$lh")
assert_eq "$code" "307 http://$B/blobs/team/app/sha256:$lh" "the front redirects a blob GET to $B"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$F/v2/team/app/blobs/sha256:$lh")
assert_eq "$code" 401 "without credentials the front relays the registry's 401"

log_mark
curl -sf -L -u "$U:$P" "http://$F/v2/team/app/blobs/sha256:$lh" -o "$WORK/curl.blob" ||
    fail "curl -L through the front"
assert_eq "$(sha256sum "$WORK/curl.blob" | cut -d' ' -f1)" "$lh" "curl -L gets the blob from $B"
log_since
assert_eq "$(jq '[.[] | select(.listener == "blobs" and .headers.authorization == null)] | length' "$WORK/plog")" 1 \
    "curl -L does not send the credentials to the other host"
log_mark
curl -sf -L --location-trusted -u "$U:$P" "http://$F/v2/team/app/blobs/sha256:$lh" -o /dev/null ||
    fail "curl --location-trusted"
log_since
assert_eq "$(jq -r '.[] | select(.listener == "blobs") | .headers.authorization' "$WORK/plog")" \
    "Basic <redacted>" "the blob host records an Authorization header when one comes (curl --location-trusted)"

# ---- cachesync pull through the front -----------------------------------------------------------
log_mark
assert_exit 0 "cachesync pull --to store through the redirecting front" -- \
    "$cs" -v -v --store "$WORK/store" pull --to store "$F/team/app:v1"
log_since
for h in "$mh" "$ch" "$lh"; do
    [[ -f $WORK/store/blobs/sha256/$h ]] || fail "blob sha256:$h is not in the store"
    assert_eq "$(sha256sum "$WORK/store/blobs/sha256/$h" | cut -d' ' -f1)" "$h" \
        "blob sha256:${h:0:12} in the store verifies"
done
cmp -s "$WORK/store/blobs/sha256/$lh" "$WORK/layer.tgz" || fail "the layer in the store differs"
pass "the layer in the store is byte-equal to the one pushed"

assert_eq "$(jq -c '[.[] | select(.listener == "front" and (.path | test("/blobs/sha256:"))) | .status] | unique' "$WORK/plog")" \
    "[307]" "every blob GET of cachesync was answered with a redirect"
assert_eq "$(jq '[.[] | select(.listener == "front" and (.path | test("/blobs/sha256:")) and .headers.authorization == null)] | length' "$WORK/plog")" \
    0 "cachesync sent its credentials to the registry host for every blob"
jq -r '.[] | select(.listener == "blobs") | .path' "$WORK/plog" | sed 's|.*/sha256:|sha256:|' |
    sort -u >"$WORK/served"
assert_eq "$(cat "$WORK/served")" "$(printf 'sha256:%s\n' "$ch" "$lh" | sort)" \
    "the other host served the config and the layer"
assert_eq "$(jq -c '[.[] | select(.listener == "blobs") | .status] | unique' "$WORK/plog")" "[200]" \
    "the other host answered 200"
assert_eq "$(jq '[.[] | select(.listener == "blobs" and (.headers.authorization != null or .headers.cookie != null))] | length' "$WORK/plog")" \
    0 "the other host never saw an Authorization (or Cookie) header from cachesync"
assert_not_contains "$WORK/err" "$P" "the password is not in verbose output"
assert_not_contains "$WORK/err" "$auth" "the Basic credentials are not in verbose output"
