#!/usr/bin/env bash
# Content that does not match what was asked: a byte flipped in a layer, in the config, in
# the manifest (pulled by tag and by digest), a Content-Length that disagrees with the blob's
# size (larger or smaller, with a body to match or not), a body longer than the blob, and a
# registry that answers a manifest digest with another valid manifest. Each pull goes to
# every target at once (the daemon, an OCI layout, a docker-archive file, the store) and must
# exit 5 naming the digest, with nothing delivered: no image in the daemon, no blob of that
# digest in the store (nor a partial of it), no OCI directory, no archive file (nor a temp
# file beside them). tests/integration/faultproxy.py does the damage between cachesync and a
# real registry; a real dockerd is the daemon.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/faults/faultlib.sh"

cs=$CACHESYNC
MiB=$((1024 * 1024))
fl_seed

start_registry reg
start_dockerd d
REPO=int/app
regtool image "$reg_REG_URL" "$REPO" v1 --seed "$FAULTS_SEED" --busybox \
    --random $((4 * MiB)) --text "/etc/int=v1 $FAULTS_SEED" >"$WORK/v1.json" || fail "regtool v1"
regtool image "$reg_REG_URL" "$REPO" v2 --seed $((FAULTS_SEED + 1)) --busybox \
    --random $((1 * MiB)) --text "/etc/int=v2" >"$WORK/v2.json" || fail "regtool v2"
M1=$(jq -r .manifest "$WORK/v1.json")
M2=$(jq -r .manifest "$WORK/v2.json")
CONFIG=$(jq -r .config "$WORK/v1.json")
BIG=$(jq -r '.layers | max_by(.size) | .digest' "$WORK/v1.json")
jq -r '.manifest, .config, .layers[].digest' "$WORK/v1.json" >"$WORK/v1-blobs"
pass "images $REPO:v1 (${M1:0:19}) and v2 (${M2:0:19})"
export DOCKER_HOST=$d_DOCKER_HOST

# The daemon holds nothing at all, and nothing tagged REF.
daemon_empty() { # REF
    [[ $(docker_cli d images -aq | wc -l) == 0 ]] && ! docker_cli d image inspect "$1" >/dev/null 2>&1
}

N=0
# pull through a proxy with PROXY-ARGS to every target; it must exit 5 naming DIGEST, and
# leave BAD (the digest whose content was wrong) out of the store.
integrity_case() { # WHAT REF_SUFFIX DIGEST BAD PROXY-ARGS...
    local what=$1 suffix=$2 digest=$3 bad=$4 name ref S oci arch preg
    shift 4
    N=$((N + 1))
    name=x$N
    start_proxy "$name" "$reg_REG_URL" "$@"
    preg=${name}_REG
    ref=${!preg}/$REPO$suffix
    S=$WORK/store-$name oci=$WORK/oci-$name arch=$WORK/arch-$name.tar
    assert_clean_exit 5 "$what: exit 5" -- \
        "$cs" -q --store "$S" pull "$ref" --to docker --to "oci:$oci" --to "archive:$arch" --to store
    assert_eq "$(wc -l <"$WORK/err")" 1 "$what: one line on stderr"
    printf '# stderr: %s\n' "$(cat "$WORK/err")"
    assert_contains "$WORK/err" "$digest" "$what: the error names $digest"
    daemon_empty "$ref" || fail "$what: the daemon holds an image: $(docker_cli d images -a --format '{{.ID}} {{.Repository}}:{{.Tag}}')"
    pass "$what: no image in the daemon"
    [[ ! -e $S/blobs/sha256/${bad#sha256:} ]] || fail "$what: the store holds $bad"
    [[ ! -s $S/partial/${bad#sha256:} ]] || fail "$what: the store keeps a partial of $bad"
    pass "$what: no blob (nor partial) $bad in the store"
    verify_store "$S" || fail "$what: the store does not verify: $(cat "$WORK/verify.out")"
    pass "$what: the store verifies"
    [[ ! -e $oci ]] || fail "$what: the OCI layout $oci was left: $(find "$oci" | head -5 | tr '\n' ' ')"
    pass "$what: no OCI layout left"
    [[ -z $(compgen -G "$arch*") ]] || fail "$what: the archive was left: $(compgen -G "$arch*" | tr '\n' ' ')"
    pass "$what: no archive file (nor temp file) left"
    figure "integrity.$(tr ' ' '-' <<<"${what%% (*}").exit5" 1
    stop_proxy "$name"
}

integrity_case "byte flipped in a layer" :v1 "$BIG" "$BIG" --corrupt-blob "$BIG"
assert_contains "$WORK/x1.log" "/blobs/$BIG .*fault=corrupt@" "the proxy flipped a byte of the layer"
integrity_case "byte flipped in the config" :v1 "$CONFIG" "$CONFIG" --corrupt-blob "$CONFIG"
assert_contains "$WORK/x2.log" "/blobs/$CONFIG .*fault=corrupt@" "the proxy flipped a byte of the config"
integrity_case "byte flipped in the manifest (by tag)" :v1 "$M1" "$M1" --corrupt-manifest v1
assert_contains "$WORK/x3.log" "/manifests/v1 .*fault=corrupt-manifest@" "the proxy flipped a byte of the manifest"
integrity_case "byte flipped in the manifest (by digest)" "@$M1" "$M1" "$M1" --corrupt-manifest "$M1"
integrity_case "Content-Length 1000 bytes too large" :v1 "$BIG" "$BIG" --length-lie "$BIG:+1000:always"
integrity_case "Content-Length 1000 bytes too small" :v1 "$BIG" "$BIG" --length-lie "$BIG:-1000:always"
integrity_case "100 bytes more than the blob" :v1 "$BIG" "$BIG" --pad-blob "$BIG:100"
integrity_case "another valid manifest for the digest asked" "@$M1" "$M1" "$M1" \
    --substitute-manifest "$M1=v2"
assert_contains "$WORK/x8.log" "/manifests/$M1 .*fault=substitute@" "the proxy served v2's manifest for ${M1:0:19}"
# the substituted manifest's own blobs must not have been fetched either
[[ ! -e $WORK/store-x8/blobs/sha256/${M2#sha256:} ]] || fail "the substituted manifest is in the store"
pass "the substituted manifest is not in the store"
# by tag, a registry may move a tag: v2's manifest served for v1 is v2 (and says so)
start_proxy moved "$reg_REG_URL" --substitute-manifest v1=v2
assert_clean_exit 0 "a tag the registry answers with another manifest (and its digest) is that manifest" -- \
    "$cs" -q --store "$WORK/store-moved" --json pull --to store "$moved_REG/$REPO:v1"
assert_eq "$(jq -r .digest "$WORK/out")" "$M2" "the pull reports v2's manifest digest"
stop_proxy moved

# the same while the daemon load is already streaming (a throttled layer: the load starts with
# the first layers, and the corruption shows at the end of the last)
start_proxy slowbad "$reg_REG_URL" --corrupt-blob "$BIG" --rate $((2 * MiB))
assert_clean_exit 5 "byte flipped in a layer during a streamed load: exit 5" -- \
    "$cs" -v -v --store "$WORK/store-slowbad" pull "$slowbad_REG/$REPO:v1"
assert_contains "$WORK/err" "> POST .*/images/load" "the daemon load had started"
assert_contains "$WORK/err" "cachesync: .*$BIG" "the error names the layer"
daemon_empty "$slowbad_REG/$REPO:v1" || fail "the daemon holds an image after the failed streamed load"
pass "no image in the daemon after the failed streamed load"
[[ ! -e $WORK/store-slowbad/blobs/sha256/${BIG#sha256:} ]] || fail "the corrupted layer is in the store"
pass "the corrupted layer is not in the store"
stop_proxy slowbad
figure integrity.byte-flipped-in-a-layer-during-load.exit5 1

# a corrupted layer once, then a clean registry: the next pull completes (nothing bad was kept)
S=$WORK/store-x1
assert_clean_exit 0 "after the corrupted layer, a pull from the real registry completes" -- \
    "$cs" -q --store "$S" pull "$reg_REG/$REPO:v1" --to docker --to store
assert_eq "$(docker_cli d image inspect -f '{{.Id}}' "$reg_REG/$REPO:v1")" "$CONFIG" \
    "the daemon then holds the image, complete"
assert_store_ok "$S" "and the store verifies"
fl_finish
