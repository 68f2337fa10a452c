#!/usr/bin/env bash
# Hostile input: every case must be refused with one clear line on stderr and an exit status
# of a refusal (1 failure, 2 malformed input, 3 not found, 4 auth, 5 integrity), never a
# crash (status >= 128) nor a sanitizer report (run it with CACHESYNC=an --enable-asan
# --enable-ubsan build too), and nothing written outside the store.
#  - OCI layouts for push: digests with ../ or an absolute path, a blob that is a symlink out of
#    the layout or a directory, index.json nested 100000 deep or of 70 MiB, a manifest and a
#    config over the caps, indexes nested deeper than any reader follows;
#  - docker save archives for push: ../ and absolute entry names, layer entries that are
#    symlinks or hard links out, manifest.json naming ../ or absolute layers, bad header
#    checksums and sizes, a size past the end, manifest.json nested too deep or over its cap,
#    a config over its cap or nested too deep;
#  - a registry serving a config over the cap or nested too deep, indexes nested 8 deep, and
#    (a mock, tests/faults/hostile.py, for what docker-registry refuses to store) manifests of
#    9 MiB or nested 100000 deep;
#  - decompression bombs: a zstd layer of 1 GiB of zeros (33 KB) whose diff_id lies, pulled
#    into Docker 20.10 (cachesync transcodes it), and a gzip one of 512 MiB that the daemon
#    itself unpacks: refused, the store keeps no transcoded file, the daemon no image;
#  - credentials: an https registry whose Bearer realm is http:// (refused, nothing sent to the
#    realm), and a registry that sends uploads to another host (the upload goes there without
#    the credentials);
#  - a Docker daemon (a mock on a unix socket: a real dockerd cannot be made to say this) whose
#    load stream carries an error line, a line that is not JSON, a 3 MiB line, or never ends.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/faults/faultlib.sh"
cs_need openssl zstd gzip

cs=$CACHESYNC
MiB=$((1024 * 1024))
HOSTILE="$FL_PY $CS_SRCDIR/tests/faults/hostile.py"
fl_seed

# rejected CODES REGEX MSG -- CMD...: exits with one of CODES (e.g. 1|2), no crash, one line
# on stderr matching REGEX
N_REJECTED=0
rejected() {
    local codes=$1 re=$2 msg=$3 rc=0
    shift 3
    [[ ${1:-} == -- ]] && shift
    "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    if ((rc >= 128)); then
        tail -n 30 "$WORK/err" | sed 's/^/#   /' >&2
        fail "$msg: died of signal $((rc - 128))"
    fi
    no_crash "$WORK/err" || {
        grep -E -m 5 'Sanitizer|runtime error' "$WORK/err" | sed 's/^/#   /' >&2
        fail "$msg: sanitizer report"
    }
    [[ $rc =~ ^($codes)$ ]] || {
        sed 's/^/#   err: /' "$WORK/err" | tail -5 >&2
        fail "$msg: exit $rc, expected $codes"
    }
    [[ $(grep -vc '^cachesync: debug:' "$WORK/err") == 1 ]] || {
        sed 's/^/#   err: /' "$WORK/err" | tail -5 >&2
        fail "$msg: $(wc -l <"$WORK/err") lines on stderr, not one"
    }
    grep -Eq -- "$re" "$WORK/err" || fail "$msg: stderr does not match /$re/: $(cat "$WORK/err")"
    pass "$msg: exit $rc: $(grep -v "^cachesync: debug:" "$WORK/err" | cut -c1-160)"
    N_REJECTED=$((N_REJECTED + 1))
    figure "hostile.$(tr ' /' '--' <<<"${msg%%:*}").exit$rc" 1
}

# start_peer NAME ARGS...: hostile.py ARGS in the background; NAME_PORT (or a ready socket)
start_peer() {
    local name=$1 pid i port=""
    shift
    : >"$WORK/$name.out"
    $HOSTILE "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    pid=$!
    FP_PIDS+=("$pid")
    for ((i = 0; i < 200; i++)); do
        grep -q '^PORT=\|^READY' "$WORK/$name.out" && break
        kill -0 "$pid" 2>/dev/null || fail "peer $name died: $(cat "$WORK/$name.err")"
        sleep 0.05
    done
    port=$(sed -n 's/^PORT=//p' "$WORK/$name.out")
    grep -q '^PORT=\|^READY' "$WORK/$name.out" || fail "peer $name did not start"
    eval "${name}_PORT=$port ${name}_PID=$pid"
}

start_registry reg
R=$reg_REG
S=$WORK/store
SENTINELS=(/tmp/cs-hostile-absolute /tmp/cs-evil)
rm -f "${SENTINELS[@]}"

# ---- OCI layouts pushed -------------------------------------------------------------------------
$HOSTILE oci ok "$WORK/oci-ok" || fail "hostile.py oci ok"
assert_clean_exit 0 "a well-formed layout (the control) pushes" -- \
    "$cs" -q --store "$S" push "oci:$WORK/oci-ok:v1" "$R/hostile/ok:v1"
oci_case() { # KIND CODES REGEX WHAT
    $HOSTILE oci "$1" "$WORK/oci-$1" || fail "hostile.py oci $1"
    rejected "$2" "$3" "oci layout, $4" -- \
        "$cs" -q --store "$S" push "oci:$WORK/oci-$1:v1" "$R/hostile/$1:v1"
}
oci_case digest-dotdot 1 'malformed digest' "index.json digest sha256:../../../../../etc/passwd"
oci_case digest-absolute 1 'malformed digest' "index.json digest sha256:/etc/passwd"
oci_case layer-dotdot 1 'malformed digest' "layer digest sha256:../../../../etc/passwd"
oci_case blob-symlink-out '1|2' 'link out of' "a layer blob that is a symlink out of the layout"
oci_case blob-dir '1|2' 'not a regular file' "a layer blob that is a directory"
oci_case nested-index 1 'index.json.*(JSON|depth|nested)' "index.json with 100000 '['"
oci_case huge-index 1 'index.json.*(67108864|exceeds|at most)' "index.json of 70 MiB"
oci_case big-manifest 1 '8388608|exceeds' "a 9 MiB manifest"
oci_case big-config 1 '16777216|exceeds' "a 17 MiB config"
oci_case index-loop 1 "nested|deep" "indexes nested 12 deep"

# ---- docker save archives pushed -----------------------------------------------------------------
$HOSTILE archive ok "$WORK/ok.tar" || fail "hostile.py archive ok"
assert_clean_exit 0 "a well-formed archive (the control) pushes" -- \
    "$cs" -q --store "$S" push "archive:$WORK/ok.tar" "$R/hostile/arch-ok:v1"
arch_case() { # KIND CODES REGEX WHAT
    $HOSTILE archive "$1" "$WORK/$1.tar" || fail "hostile.py archive $1"
    rejected "$2" "$3" "archive, $4" -- \
        "$cs" -q --store "$S" push "archive:$WORK/$1.tar" "$R/hostile/arch-$1:v1"
}
arch_case dotdot '1|2' 'unsafe path' "an entry named ../escape-dotdot"
arch_case absolute '1|2' 'unsafe path' "an entry named /tmp/cs-hostile-absolute"
arch_case symlink-out '1|2' 'does not hold|link|unsafe' "the layer a symlink to ../../../../../../etc/passwd"
arch_case hardlink-out '1|2' 'does not hold|link|unsafe' "the layer a hard link to /etc/passwd"
arch_case layer-dotdot '1|2' 'unsafe path' "manifest.json Layers [../../../../etc/passwd]"
arch_case layer-absolute '1|2' 'unsafe path' "manifest.json Layers [/etc/passwd]"
arch_case bad-checksum '1|2' 'checksum' "a header with a bad checksum"
arch_case bad-size '1|2' 'size' "a header with a size that is not octal"
arch_case huge-size '1|2' 'truncated|size' "a header whose size runs past the end"
arch_case nested-manifest '1|2' 'manifest.json.*(JSON|nested|depth)' "manifest.json with 100000 '['"
arch_case huge-manifest '1|2' 'manifest.json.*(exceeds|1048576)' "a 2 MiB manifest.json"
arch_case big-config '1|2' 'exceeds 16777216' "a 17 MiB config"
arch_case nested-config '1|2' 'config.*(JSON|depth|nested)' "a config with 100000 '['"
for f in "${SENTINELS[@]}"; do
    [[ ! -e $f ]] || fail "$f was created"
done
[[ -z $(find /tmp -maxdepth 3 -name escape-dotdot 2>/dev/null | head -1) ]] ||
    fail "an escape-dotdot file was created under /tmp"
pass "no file was written outside the store (sentinels absent)"
assert_store_ok "$S" "the store verifies after the hostile pushes"

# ---- a registry serving hostile documents ----------------------------------------------------------
U=$reg_REG_URL
printf '[%.0s' $(seq 1 100000) >"$WORK/nested.json"
head -c $((17 * MiB)) /dev/zero | tr '\0' ' ' >"$WORK/big-config.json"
printf '{}' >>"$WORK/big-config.json"
mk_manifest() { # CONFIG_FILE OUT [MEDIA_TYPE]
    local cd
    cd=$(regtool put-blob "$U" hostile/pull "$1") || fail "put-blob $1"
    jq -n --arg c "$cd" --argjson s "$(stat -c %s "$1")" \
        '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $s},
          layers: []}' >"$2"
}
mk_manifest "$WORK/nested.json" "$WORK/m-nested.json"
regtool put-manifest "$U" hostile/pull nested-config application/vnd.oci.image.manifest.v1+json \
    "$WORK/m-nested.json" >/dev/null || fail "put-manifest nested-config"
mk_manifest "$WORK/big-config.json" "$WORK/m-big.json"
regtool put-manifest "$U" hostile/pull big-config application/vnd.oci.image.manifest.v1+json \
    "$WORK/m-big.json" >/dev/null || fail "put-manifest big-config"
rejected '1|5' 'config.*(JSON|depth|nested)' "pull, a config with 100000 '['" -- \
    "$cs" -q --store "$S" pull --to store "$R/hostile/pull:nested-config"
rejected '1|5' '16777216|limit|exceeds' "pull, a 17 MiB config" -- \
    "$cs" -q --store "$S" pull --to store "$R/hostile/pull:big-config"
# indexes nested 8 deep (each one names the next, linux/amd64)
regtool image "$U" hostile/pull base --seed "$FAULTS_SEED" --text /x=1 >"$WORK/base.json" || fail "regtool base"
child=$(jq -r .manifest "$WORK/base.json")
ctype=application/vnd.docker.distribution.manifest.v2+json
csize=$(curl -sf -H "$ACCEPT_MANIFESTS" "$U/v2/hostile/pull/manifests/base" | wc -c)
for ((i = 1; i <= 8; i++)); do
    jq -n --arg d "$child" --arg t "$ctype" --argjson s "$csize" \
        '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
          manifests: [{mediaType: $t, digest: $d, size: $s,
                       platform: {os: "linux", architecture: "amd64"}}]}' >"$WORK/idx-$i.json"
    child=$(regtool put-manifest "$U" hostile/pull "idx-$i" application/vnd.oci.image.index.v1+json \
        "$WORK/idx-$i.json") || fail "put-manifest idx-$i (the registry refused a nested index)"
    ctype=application/vnd.oci.image.index.v1+json
    csize=$(stat -c %s "$WORK/idx-$i.json")
done
rejected '1|3' 'nested more than' "pull, indexes nested 8 deep" -- \
    "$cs" -q --store "$S" --platform linux/amd64 pull --to store "$R/hostile/pull:idx-8"

start_peer hm registry --log "$WORK/hm.log" --mode huge-manifest
rejected '1|5' '8388608|limit|exceeds|large' "pull, a 9 MiB manifest (mock registry)" -- \
    "$cs" -q --store "$S" pull --to store "127.0.0.1:$hm_PORT/x:1"
start_peer nm registry --log "$WORK/nm.log" --mode nested-manifest
rejected '1|5' 'JSON|depth|nested|manifest' "pull, a manifest of 100000 '[' (mock registry)" -- \
    "$cs" -q --store "$S" pull --to store "127.0.0.1:$nm_PORT/x:1"
assert_store_ok "$S" "the store verifies after the hostile pulls"

# ---- decompression bombs into Docker 20.10 -----------------------------------------------------------
start_dockerd d
major=$(docker_cli d version -f '{{.Server.Version}}' | cut -d. -f1)
push_bomb() { # NAME FILE MEDIA_TYPE DIFF_ID
    local ld cfg
    ld=$(regtool put-blob "$U" hostile/bomb "$2") || fail "put-blob $2"
    jq -n --arg d "$4" '{architecture: "amd64", os: "linux", config: {},
        rootfs: {type: "layers", diff_ids: [$d]}}' >"$WORK/$1-config.json"
    cfg=$(regtool put-blob "$U" hostile/bomb "$WORK/$1-config.json") || fail "put-blob config"
    jq -n --arg c "$cfg" --argjson cs "$(stat -c %s "$WORK/$1-config.json")" --arg l "$ld" \
        --argjson ls "$(stat -c %s "$2")" --arg t "$3" \
        '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
          layers: [{mediaType: $t, digest: $l, size: $ls}]}' >"$WORK/$1-manifest.json"
    regtool put-manifest "$U" hostile/bomb "$1" application/vnd.oci.image.manifest.v1+json \
        "$WORK/$1-manifest.json" >/dev/null || fail "put-manifest $1"
}
lie=sha256:$(printf 'not the diff_id' | sha256sum | cut -d' ' -f1)
regtool bomb-layer "$WORK/bomb.tar.zst" 1024 >"$WORK/zbomb.json" || fail "zstd bomb"
printf '# zstd bomb: %s bytes for 1 GiB\n' "$(jq -r .size "$WORK/zbomb.json")"
push_bomb zstd "$WORK/bomb.tar.zst" application/vnd.oci.image.layer.v1.tar+zstd "$lie"
BS=$WORK/store-bomb
if ((major < 23)); then
    rss=$WORK/zbomb.rss
    rejected 5 'uncompresses to|diff_id' "zstd bomb (1 GiB of zeros, diff_id lies) into Docker $major" -- \
        /usr/bin/time -f '%M' -o "$rss" env DOCKER_HOST="$d_DOCKER_HOST" "$cs" -q --store "$BS" pull "$R/hostile/bomb:zstd"
    kib=$(tail -n 1 "$rss")
    ((kib < 200000)) || fail "cachesync used $kib KiB on the bomb: not streaming"
    pass "the zstd bomb was streamed (max RSS $kib KiB)"
    [[ ! -e $BS/blobs/sha256/${lie#sha256:} ]] || fail "the store holds a file under the lying diff_id"
    real=$(jq -r .diff_id "$WORK/zbomb.json")
    [[ ! -e $BS/blobs/sha256/${real#sha256:} ]] || fail "the store kept the 1 GiB transcoded tar"
    pass "the store keeps no transcoded tar of the bomb"
    assert_store_ok "$BS" "the store verifies after the zstd bomb"
else
    printf 'SKIP: daemon is Docker %s, which loads zstd itself: no transcoding to attack\n' "$major"
fi
assert_eq "$(docker_cli d images -aq | wc -l)" 0 "the daemon holds no image after the zstd bomb"

regtool bomb-layer "$WORK/bomb.tar.gz" 512 >"$WORK/gbomb.json" || fail "gzip bomb"
printf '# gzip bomb: %s bytes for 512 MiB\n' "$(jq -r .size "$WORK/gbomb.json")"
push_bomb gzip "$WORK/bomb.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip "$lie"
rejected '1|5' 'daemon|diff|load' "gzip bomb (512 MiB of zeros, diff_id lies) into Docker $major" -- \
    env DOCKER_HOST="$d_DOCKER_HOST" "$cs" -q --store "$BS" pull "$R/hostile/bomb:gzip"
assert_eq "$(docker_cli d images -aq | wc -l)" 0 "the daemon holds no image after the gzip bomb"
assert_store_ok "$BS" "the store verifies after the gzip bomb"

# ---- credentials -----------------------------------------------------------------------------------
SECRET=s3cret-$FAULTS_SEED-$$
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null || fail "openssl"
start_peer realm sink --log "$WORK/realm.log"
start_peer tlsreg registry --log "$WORK/tlsreg.log" --mode http-realm \
    --cert "$WORK/tls.crt" --key "$WORK/tls.key" --realm "http://127.0.0.1:$realm_PORT/token"
DC=$WORK/dc
mkdir -p "$DC"
printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$tlsreg_PORT" \
    "$(printf 'alice:%s' "$SECRET" | base64 -w0)" >"$DC/config.json"
rejected '1|4' 'realm.*(https|http://)' "an https registry whose token realm is http://" -- \
    "$cs" -v -v -q --docker-config "$DC" --ca-cert "$WORK/tls.crt" --store "$S" pull --to store \
    "127.0.0.1:$tlsreg_PORT/x:1"
assert_eq "$(wc -l <"$WORK/realm.log")" 0 "nothing was sent to the http:// realm"
assert_not_contains "$WORK/err" "$SECRET|$(printf 'alice:%s' "$SECRET" | base64 -w0)" "the secret is not on stderr"

start_peer elsewhere sink --log "$WORK/elsewhere.log"
start_peer upreg registry --log "$WORK/upreg.log" --mode upload-elsewhere \
    --upload-to "http://127.0.0.1:$elsewhere_PORT/upload/here"
printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$upreg_PORT" \
    "$(printf 'alice:%s' "$SECRET" | base64 -w0)" >"$DC/config.json"
"$cs" -v -v --docker-config "$DC" --store "$WORK/store-up" push "oci:$WORK/oci-ok:v1" \
    "127.0.0.1:$upreg_PORT/x:1" >"$WORK/up.out" 2>"$WORK/up.err" || true
no_crash "$WORK/up.err" || fail "sanitizer report on the push"
assert_contains "$WORK/upreg.log" "authorization=yes" "the registry itself got the credentials"
assert_contains "$WORK/elsewhere.log" "^PUT /upload/here" "the upload went to the other host"
assert_not_contains "$WORK/elsewhere.log" "authorization=yes" \
    "no credentials went to the other host the registry named"
assert_not_contains "$WORK/up.err" "$SECRET|$(printf 'alice:%s' "$SECRET" | base64 -w0)" "the secret is not in the -v -v log"

# ---- a daemon whose load stream is hostile (mock) -------------------------------------------------
regtool image "$U" hostile/small v1 --seed "$FAULTS_SEED" --text /x=1 >/dev/null || fail "regtool small"
for mode in error-line garbage huge-line endless; do
    start_peer "fd_${mode//-/_}" daemon --socket "$WORK/fd-$mode.sock" --log "$WORK/fd-$mode.log" --mode "$mode"
done
rejected 1 'hostile daemon: write /var/lib/docker: no space left on device' \
    "load stream with an error line (mock daemon)" -- \
    env DOCKER_HOST="unix://$WORK/fd-error-line.sock" "$cs" -q --store "$WORK/store-fd" pull "$R/hostile/small:v1"
rejected 1 'daemon|JSON|load' "load stream with a line that is not JSON (mock daemon)" -- \
    env DOCKER_HOST="unix://$WORK/fd-garbage.sock" "$cs" -q --store "$WORK/store-fd" pull "$R/hostile/small:v1"
rejected 1 'daemon|line|exceeds|load' "load stream with a 3 MiB line (mock daemon)" -- \
    env DOCKER_HOST="unix://$WORK/fd-huge-line.sock" "$cs" -q --store "$WORK/store-fd" pull "$R/hostile/small:v1"
rejected 1 'daemon|load|result|ended|connection' "load stream that ends without a result (mock daemon)" -- \
    env DOCKER_HOST="unix://$WORK/fd-endless.sock" "$cs" -q --store "$WORK/store-fd" pull "$R/hostile/small:v1"
assert_contains "$WORK/fd-error-line.log" "load body [1-9][0-9]* bytes" "the mock daemon received the image"
assert_store_ok "$WORK/store-fd" "the store verifies after the hostile daemons"

printf '# %s hostile inputs refused\n' "$N_REJECTED"
figure hostile.refused "$N_REJECTED"
fl_finish
