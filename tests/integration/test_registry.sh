#!/usr/bin/env bash
# cachesync audit against a real registry holding an image built by a real BuildKit and
# pushed by a real docker: the bytes cachesync prints equal what curl gets, by tag, by digest
# and through a manifest list and an OCI index; missing things exit 3, corrupt bytes exit 5.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq curl python3

cs=$CACHESYNC
start_registry reg
start_dockerd a
make_base_image a

R=$reg_REG
ctx=$WORK/ctx
mkdir -p "$ctx/src"
echo "fn main() {}" >"$ctx/src/main.rs"
cat >"$ctx/Dockerfile" <<'DF'
FROM localbase:1
ARG FEATURES=default
RUN dd if=/dev/urandom of=/deps bs=1k count=64 2>/dev/null
ENV APP=demo
COPY src /src
RUN cat /src/main.rs > /built
DF
build_image a "$ctx" "$R/app:main"
docker_cli a push "$R/app:main" >"$WORK/push.log" 2>&1 || fail "docker push failed: $(tail -3 "$WORK/push.log")"
pass "BuildKit image with inline cache pushed by docker"

accept='Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
curl -sf -H "$accept" "http://$R/v2/app/manifests/main" -o "$WORK/manifest.curl"
mdigest=sha256:$(sha256sum "$WORK/manifest.curl" | cut -d' ' -f1)
mtype=$(jq -r .mediaType "$WORK/manifest.curl")
cdigest=$(jq -r .config.digest "$WORK/manifest.curl")
curl -sf "http://$R/v2/app/blobs/$cdigest" -o "$WORK/config.curl"

# --- by tag ---------------------------------------------------------------------------------
assert_exit 0 "audit --raw manifest by tag" -- "$cs" audit --raw manifest "$R/app:main"
cmp -s "$WORK/out" "$WORK/manifest.curl" || fail "raw manifest by tag differs from curl's bytes"
pass "raw manifest by tag is byte-equal to curl's"
assert_exit 0 "audit --raw config by tag" -- "$cs" audit --raw config "$R/app:main"
cmp -s "$WORK/out" "$WORK/config.curl" || fail "raw config differs from curl's bytes"
pass "raw config is byte-equal to curl's"
grep -q '"moby.buildkit.cache.v0"' "$WORK/out" || fail "the config lacks moby.buildkit.cache.v0"
pass "the config carries BuildKit inline cache"

# --- by digest ------------------------------------------------------------------------------
assert_exit 0 "audit --raw manifest by digest" -- "$cs" audit --raw manifest "$R/app@$mdigest"
cmp -s "$WORK/out" "$WORK/manifest.curl" || fail "raw manifest by digest differs"
pass "raw manifest by digest is byte-equal to curl's"
assert_exit 0 "tag and digest together" -- "$cs" audit --raw manifest "$R/app:ignored@$mdigest"
cmp -s "$WORK/out" "$WORK/manifest.curl" || fail "name:tag@digest did not use the digest"
pass "name:tag@digest pulls by digest"

# --- summary, table and JSON ----------------------------------------------------------------
nlayers=$(jq '.layers | length' "$WORK/manifest.curl")
assert_exit 0 "audit summary" -- "$cs" audit "$R/app:main"
assert_contains "$WORK/out" "^digest +$mdigest" "summary shows the manifest digest"
assert_contains "$WORK/out" 'inline cache metadata present' "summary sees the inline cache"
assert_contains "$WORK/out" "^layers +$nlayers," "summary counts the layers"
assert_contains "$WORK/out" 'RUN dd if=/dev/urandom' "summary names the RUN step of its layer"
assert_contains "$WORK/out" 'COPY src /src' "summary names the COPY step"
assert_exit 0 "audit --format json" -- "$cs" audit --format json "$R/app:main"
jq -e . "$WORK/out" >/dev/null || fail "audit JSON does not parse"
assert_eq "$(jq -r .digest "$WORK/out")" "$mdigest" "JSON digest"
assert_eq "$(jq -r .config.digest "$WORK/out")" "$cdigest" "JSON config digest"
assert_eq "$(jq -r .inline_cache "$WORK/out")" true "JSON inline_cache"
assert_eq "$(jq -r '.layers | length' "$WORK/out")" "$nlayers" "JSON layer count"
assert_eq "$(jq -r '[.layers[].digest] | join(",")' "$WORK/out")" \
    "$(jq -r '[.layers[].digest] | join(",")' "$WORK/manifest.curl")" "JSON layer digests in order"
assert_eq "$(jq -r '[.layers[].diff_id] | join(",")' "$WORK/out")" \
    "$(jq -r '.rootfs.diff_ids | join(",")' "$WORK/config.curl")" "JSON diff_ids from the config"
assert_exit 0 "--json works as a global option after the command" -- "$cs" audit "$R/app:main" --json
jq -e .layers "$WORK/out" >/dev/null || fail "--json after the command"
pass "--json after the command prints JSON"

# --- a manifest list and an OCI index made with the registry API ------------------------------
msize=$(stat -c %s "$WORK/manifest.curl")
entry() { # ARCH OS [VARIANT]
    jq -n --arg mt "$mtype" --arg d "$mdigest" --argjson s "$msize" --arg a "$1" --arg o "$2" \
        --arg v "${3:-}" '{mediaType:$mt,digest:$d,size:$s,platform:({architecture:$a,os:$o}
        + (if $v == "" then {} else {variant:$v} end))}'
}
jq -n --argjson a "$(entry arm64 linux v8)" --argjson b "$(entry amd64 linux)" \
    '{schemaVersion:2,mediaType:"application/vnd.docker.distribution.manifest.list.v2+json",manifests:[$a,$b]}' \
    >"$WORK/list.json"
jq -n --argjson u "$(entry unknown unknown)" --argjson b "$(entry amd64 linux)" --argjson c "$(entry arm linux v7)" \
    '{schemaVersion:2,mediaType:"application/vnd.oci.image.index.v1+json",manifests:[$u,$c,$b]}' \
    >"$WORK/index.json"
curl -sf -X PUT -H 'Content-Type: application/vnd.docker.distribution.manifest.list.v2+json' \
    --data-binary "@$WORK/list.json" "http://$R/v2/app/manifests/list" >/dev/null || fail "PUT manifest list"
curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
    --data-binary "@$WORK/index.json" "http://$R/v2/app/manifests/index" >/dev/null || fail "PUT OCI index"
pass "manifest list and OCI index pushed with the registry API"

for t in list index; do
    curl -sf -H "$accept" "http://$R/v2/app/manifests/$t" -o "$WORK/$t.curl"
    assert_exit 0 "audit --raw manifest of the $t" -- "$cs" audit --raw manifest "$R/app:$t"
    cmp -s "$WORK/out" "$WORK/$t.curl" || fail "raw $t differs from curl's bytes"
    pass "raw $t is byte-equal to curl's"
    assert_exit 0 "audit --raw config through the $t" -- "$cs" --platform linux/amd64 audit --raw config "$R/app:$t"
    cmp -s "$WORK/out" "$WORK/config.curl" || fail "config through the $t differs"
    pass "config selected through the $t for linux/amd64"
    assert_exit 0 "audit --json through the $t" -- "$cs" audit --json --platform linux/amd64 "$R/app:$t"
    assert_eq "$(jq -r .manifest_digest "$WORK/out")" "$mdigest" "the $t resolves to the image manifest"
    assert_eq "$(jq -r .digest "$WORK/out")" "sha256:$(sha256sum "$WORK/$t.curl" | cut -d' ' -f1)" \
        "the $t's own digest is reported"
done
assert_exit 0 "platform variant normalisation picks arm64/v8" -- "$cs" audit --json --platform linux/aarch64 "$R/app:list"
assert_exit 3 "a platform the index lacks exits 3" -- "$cs" audit --platform linux/s390x "$R/app:index"
assert_contains "$WORK/err" 'no image for platform linux/s390x.*linux/arm/v7, linux/amd64' \
    "the error lists what the index offers (and not the attestation entry)"

# --- not found ------------------------------------------------------------------------------
assert_exit 3 "unknown tag exits 3" -- "$cs" audit "$R/app:nope"
assert_contains "$WORK/err" "manifest app:nope not found on $R" "unknown tag is named"
assert_exit 3 "unknown repository exits 3" -- "$cs" audit "$R/nothere/app:main"
assert_exit 3 "unknown digest exits 3" -- "$cs" audit "$R/app@sha256:$(printf '0%.0s' {1..64})"

# --- corrupt bytes on the registry's disk: exit 5, nothing printed ---------------------------
blob_path() { local h=${1#sha256:}; echo "$reg_REG_DIR/data/docker/registry/v2/blobs/sha256/${h:0:2}/$h/data"; }
# Change one byte after NEEDLE, keeping the length and the JSON valid (a digit stays a digit,
# a letter changes case), so only a hash can tell.
flip() { python3 - "$1" "$2" <<'PY'
import sys
p, needle = sys.argv[1], sys.argv[2].encode()
b = bytearray(open(p, 'rb').read())
i = b.find(needle)
assert i >= 0, "needle not found"
i += len(needle)
while not chr(b[i]).isalnum():
    i += 1
b[i] = ord('1') if b[i] == ord('2') else ord('2') if chr(b[i]).isdigit() else b[i] ^ 0x20
open(p, 'wb').write(bytes(b))
PY
}
flip "$(blob_path "$cdigest")" '"architecture":'
assert_exit 5 "a corrupt config exits 5" -- "$cs" audit --raw config "$R/app:main"
assert_contains "$WORK/err" "blob $cdigest from $R: content has digest" "the corrupt config is named"
assert_eq "$(stat -c %s "$WORK/out")" 0 "nothing printed from a corrupt config"
flip "$(blob_path "$mdigest")" '"size":'
assert_exit 5 "a corrupt manifest by digest exits 5" -- "$cs" audit --raw manifest "$R/app@$mdigest"
assert_contains "$WORK/err" "content has digest" "the digest mismatch is explained"
assert_eq "$(stat -c %s "$WORK/out")" 0 "nothing printed from a corrupt manifest"
assert_exit 5 "a corrupt manifest by tag exits 5" -- "$cs" audit --raw manifest "$R/app:main"
