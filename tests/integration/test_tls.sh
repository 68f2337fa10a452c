#!/usr/bin/env bash
# Docker's per-registry TLS directory (certs.d): a registry's CA given only as
# CERTS_D/HOST:PORT/ca.crt is trusted; a registry requiring client certificates gets
# client.cert + client.key from the same place; without them, exit 1 with the fix. --ca-cert
# still works, and the system CAs stay trusted alongside the extra ones. CACHESYNC_CERTS_D
# points cachesync at $WORK/certs.d instead of /etc/docker/certs.d.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl skopeo openssl

cs=$CACHESYNC
start_registry sec --tls
start_registry mtls --tls --client-ca
R=$sec_REG
M=$mtls_REG
CERTS=$WORK/certs.d
mkdir -p "$CERTS/$R" "$CERTS/$M" "$WORK/empty.d"
export CACHESYNC_CERTS_D=$CERTS

# A one-layer image as an OCI layout, pushed with skopeo (which reads the same certs.d layout
# through --dest-cert-dir).
img=$WORK/img
mkdir -p "$img/blobs/sha256" "$WORK/rootfs"
echo tls >"$WORK/rootfs/hello"
tar -C "$WORK/rootfs" --owner=0 --group=0 --mtime=@0 -cf - hello | gzip -n >"$WORK/layer.tgz"
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

# (a) the CA only through certs.d
cp "$sec_REG_CA" "$CERTS/$R/ca.crt"
skopeo copy --quiet --dest-cert-dir "$CERTS/$R" "oci:$img:v1" "docker://$R/team/app:v1" \
    >"$WORK/skopeo.log" 2>&1 || fail "skopeo copy to $R: $(tail -3 "$WORK/skopeo.log")"
pass "pushed to the TLS registry"
assert_exit 0 "raw manifest with the CA in certs.d/HOST:PORT/ca.crt" -- \
    "$cs" audit --raw manifest "$R/team/app:v1"
cmp -s "$WORK/out" "$WORK/manifest.json" || fail "manifest differs from the one pushed"
pass "raw manifest is the one pushed"
mkdir -p "$WORK/other.d/$R"
cp "$sec_REG_CA" "$WORK/other.d/$R/my-registry.crt"
assert_exit 0 "the CA under another .crt name is trusted too" -- \
    env CACHESYNC_CERTS_D="$WORK/other.d" "$cs" audit "$R/team/app:v1"
assert_exit 1 "without the certs.d CA, an untrusted certificate exits 1" -- \
    env CACHESYNC_CERTS_D="$WORK/empty.d" "$cs" audit --raw manifest "$R/team/app:v1"
assert_eq "$(wc -l <"$WORK/err")" 1 "one line of error"
assert_contains "$WORK/err" "$R: TLS certificate not trusted.*--ca-cert FILE.*$WORK/empty.d/$R/ca.crt" \
    "the error names the certs dir actually used"

# (b) a registry that requires client certificates
cp "$mtls_REG_CA" "$CERTS/$M/ca.crt"
cp "$mtls_REG_CLIENT_CERT" "$CERTS/$M/client.cert"
cp "$mtls_REG_CLIENT_KEY" "$CERTS/$M/client.key"
skopeo copy --quiet --dest-cert-dir "$CERTS/$M" "oci:$img:v1" "docker://$M/team/app:v1" \
    >"$WORK/skopeo.log" 2>&1 || fail "skopeo copy to $M: $(tail -3 "$WORK/skopeo.log")"
pass "pushed to the client-certificate registry"
assert_exit 0 "raw manifest with client.cert/client.key in certs.d" -- \
    "$cs" audit --raw manifest "$M/team/app:v1"
cmp -s "$WORK/out" "$WORK/manifest.json" || fail "manifest differs from the one pushed"
pass "raw manifest over mutual TLS is the one pushed"
assert_exit 0 "full audit over mutual TLS (config blob too)" -- "$cs" audit "$M/team/app:v1"

mkdir -p "$WORK/nocert.d/$M"
cp "$mtls_REG_CA" "$WORK/nocert.d/$M/ca.crt"
assert_exit 1 "without a client certificate, exit 1" -- \
    env CACHESYNC_CERTS_D="$WORK/nocert.d" "$cs" audit --raw manifest "$M/team/app:v1"
assert_eq "$(wc -l <"$WORK/err")" 1 "one line of error"
# Recognising "the server wants a client certificate" reads OpenSSL's alert text from curl's
# error; after retries under load curl may report the dropped connection instead, so either
# the specific message or the generic one naming the registry is accepted here.
assert_contains "$WORK/err" "($M: the registry requires a TLS client certificate.*$WORK/nocert.d/$M/client.cert|cannot reach registry $M: )" \
    "the error names the registry (and, when curl tells, the client certificate it wants)"

# A .cert without its .key is an error naming the file.
mkdir -p "$WORK/nokey.d/$M"
cp "$mtls_REG_CA" "$WORK/nokey.d/$M/ca.crt"
cp "$mtls_REG_CLIENT_CERT" "$WORK/nokey.d/$M/client.cert"
assert_exit 1 "a .cert without its .key exits 1" -- \
    env CACHESYNC_CERTS_D="$WORK/nokey.d" "$cs" audit --raw manifest "$M/team/app:v1"
assert_contains "$WORK/err" "client certificate $WORK/nokey.d/$M/client.cert has no key: missing $WORK/nokey.d/$M/client.key" \
    "the missing key is named"
# A broken client certificate is an error naming it, before any connection.
echo "not a certificate" >"$WORK/nokey.d/$M/client.cert"
cp "$mtls_REG_CLIENT_KEY" "$WORK/nokey.d/$M/client.key"
assert_exit 1 "a malformed client certificate exits 1" -- \
    env CACHESYNC_CERTS_D="$WORK/nokey.d" "$cs" audit --raw manifest "$M/team/app:v1"
assert_contains "$WORK/err" "client certificate $WORK/nokey.d/$M/client.cert is not a PEM certificate" \
    "the malformed certificate is named"
# A key that belongs to another certificate.
cp "$mtls_REG_CLIENT_CERT" "$WORK/nokey.d/$M/client.cert"
cp "$sec_REG_DIR/server.key" "$WORK/nokey.d/$M/client.key"
assert_exit 1 "a client key that does not match exits 1" -- \
    env CACHESYNC_CERTS_D="$WORK/nokey.d" "$cs" audit --raw manifest "$M/team/app:v1"
assert_contains "$WORK/err" "client key $WORK/nokey.d/$M/client.key does not match client certificate" \
    "the mismatched key is named"

# (c) --ca-cert FILE still works (no certs.d entry), and combines with certs.d: the CA of one
# registry from --ca-cert, the other's from certs.d, in one process each.
assert_exit 0 "--ca-cert alone" -- \
    env CACHESYNC_CERTS_D="$WORK/empty.d" "$cs" --ca-cert "$sec_REG_CA" audit --raw manifest "$R/team/app:v1"
cmp -s "$WORK/out" "$WORK/manifest.json" || fail "manifest differs with --ca-cert"
mkdir -p "$WORK/mixed.d/$M"
cp "$mtls_REG_CLIENT_CERT" "$WORK/mixed.d/$M/client.cert"
cp "$mtls_REG_CLIENT_KEY" "$WORK/mixed.d/$M/client.key"
assert_exit 0 "--ca-cert for the CA, certs.d for the client certificate" -- \
    env CACHESYNC_CERTS_D="$WORK/mixed.d" "$cs" --ca-cert "$mtls_REG_CA" audit --raw manifest "$M/team/app:v1"
# The system CAs stay: what cachesync gives curl starts with curl's own default bundle.
sysca=$(curl-config --ca 2>/dev/null || true)
[[ -n $sysca ]] || sysca=$(curl -sv --max-time 1 https://127.0.0.1:1/ 2>&1 | sed -n 's/^\*  *CAfile: //p' | head -1)
[[ -n $sysca && -f $sysca ]] || sysca=/etc/ssl/certs/ca-certificates.crt
assert_exit 0 "verbose run with --ca-cert and certs.d" -- \
    "$cs" -v -v --ca-cert "$sec_REG_CA" audit --raw manifest "$R/team/app:v1"
assert_contains "$WORK/err" "CA bundle .*: the system CAs \\($sysca\\), --ca-cert $sec_REG_CA and 1 certs.d CA file" \
    "the bundle given to curl holds the system CAs, --ca-cert and certs.d"
bundle=$(sed -n 's/.*CA bundle \([^:]*\): .*/\1/p' "$WORK/err" | head -1)
[[ -n $bundle && ! -e $bundle ]] || fail "the temporary CA bundle $bundle was not removed"
pass "the temporary CA bundle is removed at exit"
