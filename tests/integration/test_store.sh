#!/usr/bin/env bash
# cachesync store ls | verify | gc on a store filled by real pulls from a real registry: sizes
# equal the blobs on disk, last use is recorded by every pull (a no-op one too), verify finds
# and removes a corrupt blob (exit 5) and a pull heals it, gc removes exactly the blobs of
# forgotten, old (--older-than) or least recently used (--max-size) refs, and gc during a
# throttled pull waits for it: the pull succeeds and the store verifies. Images are made with
# the registry API (random gzip layers), no docker needed.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$CS_SRCDIR/tests/integration/faultproxy.sh"
cs_need jq curl gzip tar sha256sum python3

cs=$CACHESYNC
start_registry reg
R=$reg_REG
U=$reg_REG_URL
S=$WORK/store
export CACHESYNC_STORE=$S

# ---- images through the registry API ---------------------------------------------------------
push_blob() { # REPO FILE -> prints the digest
    local repo=$1 f=$2 d loc sep code
    d=sha256:$(sha256sum <"$f" | cut -d' ' -f1)
    loc=$(curl -sf -X POST -D - -o /dev/null "$U/v2/$repo/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    [[ -n $loc ]] || fail "no upload location for $f"
    [[ $loc == /* ]] && loc=$U$loc
    [[ $loc == *\?* ]] && sep='&' || sep='?'
    code=$(curl -s -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$f" \
        -o "$WORK/put.out" -w '%{http_code}' "$loc${sep}digest=$d")
    [[ $code == 201 ]] || fail "PUT blob $d: HTTP $code $(cat "$WORK/put.out")"
    printf '%s\n' "$d"
}

# A layer: a tar of one file of KIB random KiB (NAME names it), gzip'd. -> $WORK/layers/NAME.tgz
make_layer() { # NAME KIB
    local dir=$WORK/layers/$1.d
    mkdir -p "$dir"
    head -c "$(($2 * 1024))" /dev/urandom >"$dir/$1.bin"
    tar -C "$dir" --mtime=@0 --owner=0 --group=0 -cf "$WORK/layers/$1.tar" "$1.bin"
    gzip -n -c "$WORK/layers/$1.tar" >"$WORK/layers/$1.tgz"
}

# REPO:TAG with the layers NAMES (made by make_layer), a Docker schema2 manifest.
push_image() { # REPO TAG NAMES...
    local repo=$1 tag=$2 n layers='[]' diffs='[]' d cfg code
    shift 2
    for n in "$@"; do
        d=$(push_blob "$repo" "$WORK/layers/$n.tgz")
        layers=$(jq -c --arg d "$d" --argjson s "$(stat -c %s "$WORK/layers/$n.tgz")" \
            '. + [{mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: $d, size: $s}]' \
            <<<"$layers")
        diffs=$(jq -c --arg d "sha256:$(sha256sum <"$WORK/layers/$n.tar" | cut -d' ' -f1)" \
            '. + [$d]' <<<"$diffs")
    done
    cfg=$WORK/$repo-$tag.config.json
    mkdir -p "${cfg%/*}"
    jq -cn --argjson d "$diffs" --arg t "$repo:$tag" \
        '{architecture: "amd64", os: "linux", config: {Labels: {t: $t}},
          rootfs: {type: "layers", diff_ids: $d}}' >"$cfg"
    d=$(push_blob "$repo" "$cfg")
    jq -cn --arg c "$d" --argjson cs "$(stat -c %s "$cfg")" --argjson l "$layers" \
        '{schemaVersion: 2, mediaType: "application/vnd.docker.distribution.manifest.v2+json",
          config: {mediaType: "application/vnd.docker.container.image.v1+json", digest: $c, size: $cs},
          layers: $l}' >"$WORK/$repo-$tag.manifest.json"
    code=$(curl -s -X PUT -H 'Content-Type: application/vnd.docker.distribution.manifest.v2+json' \
        --data-binary "@$WORK/$repo-$tag.manifest.json" -o "$WORK/put.out" -w '%{http_code}' \
        "$U/v2/$repo/manifests/$tag")
    [[ $code == 201 ]] || fail "PUT manifest $repo:$tag: HTTP $code $(cat "$WORK/put.out")"
}

# The digests an image needs (manifest, config, layers), sorted, one a line.
image_blobs() { # REPO TAG
    local m=$WORK/$1-$2.manifest.json
    {
        echo "sha256:$(sha256sum <"$m" | cut -d' ' -f1)"
        jq -r '.config.digest, .layers[].digest' "$m"
    } | sort -u
}
manifest_digest() { echo "sha256:$(sha256sum <"$WORK/$1-$2.manifest.json" | cut -d' ' -f1)"; }
blob_path() { echo "$S/blobs/sha256/${1#sha256:}"; }
# Sum of the sizes on disk of the digests on stdin.
disk_bytes() {
    local d sum=0
    while read -r d; do sum=$((sum + $(stat -c %s "$(blob_path "$d")"))); done
    echo "$sum"
}
store_blobs() { find "$S/blobs/sha256" -type f -name '[0-9a-f]*' ! -name '*.tmp-*' -printf 'sha256:%f\n' | sort; }
# Set a ref's last-used annotation in index.json, as if it had been pulled at TIME.
fake_last_used() { # REF RFC3339
    jq --arg r "$1" --arg t "$2" \
        '.manifests |= map(if .annotations."org.opencontainers.image.ref.name" == $r
                           then .annotations."io.cachesync.last-used" = $t else . end)' \
        "$S/index.json" >"$WORK/index.new" && mv "$WORK/index.new" "$S/index.json"
}
days_ago() { date -u -d "@$(($(date +%s) - $1 * 86400))" +%Y-%m-%dT%H:%M:%SZ; }

make_layer base 96
make_layer a1 160
make_layer b1 224
make_layer big 1536
push_image st/a v1 base a1
push_image st/b v1 base b1
push_image st/big v1 base big
A=$R/st/a:v1
B=$R/st/b:v1

# ---- ls -----------------------------------------------------------------------------------------
t0=$(date +%s)
assert_exit 0 "pull A --to store" -- "$cs" pull --to store "$A"
assert_exit 0 "pull B --to store" -- "$cs" pull --to store "$B"
t1=$(date +%s)
assert_exit 0 "store ls" -- "$cs" store ls
assert_contains "$WORK/out" "^$R/st/a:v1 +$(manifest_digest st/a v1 | cut -c1-19) " "ls names A with its digest"
assert_contains "$WORK/out" "^$R/st/b:v1 +$(manifest_digest st/b v1 | cut -c1-19) " "ls names B with its digest"
assert_contains "$WORK/out" "2 refs, 7 blobs" "ls totals: 2 refs, 7 blobs (the base layer is shared)"
assert_exit 0 "store ls --json" -- "$cs" store ls --json
cp "$WORK/out" "$WORK/ls.json"
assert_eq "$(jq -r .store "$WORK/ls.json")" "$S" "ls --json names the store"
assert_eq "$(jq -r '.refs | length' "$WORK/ls.json")" 2 "two refs listed"
for img in a b; do
    ref=$R/st/$img:v1
    r=$(jq -c --arg r "$ref" '.refs[] | select(.ref == $r)' "$WORK/ls.json")
    [[ -n $r ]] || fail "ls --json lacks $ref"
    assert_eq "$(jq -r .digest <<<"$r")" "$(manifest_digest st/$img v1)" "$ref: digest is its manifest's"
    assert_eq "$(jq -r .media_type <<<"$r")" application/vnd.docker.distribution.manifest.v2+json "$ref: media type"
    assert_eq "$(jq -r .size <<<"$r")" "$(image_blobs st/$img v1 | disk_bytes)" \
        "$ref: size is the sum of its blobs on disk (manifest, config, 2 layers)"
    assert_eq "$(jq -r '[.blobs, .missing] | join(",")' <<<"$r")" 4,0 "$ref: 4 blobs, none missing"
    lu=$(date -u -d "$(jq -r .last_used <<<"$r")" +%s)
    ((lu >= t0 && lu <= t1)) || fail "$ref: last_used $(jq -r .last_used <<<"$r") is not the pull's time"
    pass "$ref: last_used is the time of its pull (RFC 3339)"
done
assert_eq "$(jq -r .blobs "$WORK/ls.json")" "$(store_blobs | wc -l)" "blobs: the files in blobs/sha256"
assert_eq "$(jq -r .bytes "$WORK/ls.json")" "$(store_blobs | disk_bytes)" "bytes: their sizes"
assert_eq "$(jq -r '[.unreferenced_bytes, .partial] | join(",")' "$WORK/ls.json")" 0,0 \
    "nothing unreferenced, no partial file"

# a pull that fetches nothing still records the use
fake_last_used "$A" "$(days_ago 3)"
t0=$(date +%s)
assert_exit 0 "pull A again (everything in the store)" -- "$cs" pull --json --to store "$A"
assert_eq "$(jq -r .layers.fetched "$WORK/out")" 0 "the second pull fetched nothing"
"$cs" store ls --json >"$WORK/ls.json"
lu=$(date -u -d "$(jq -r --arg r "$A" '.refs[] | select(.ref == $r) | .last_used' "$WORK/ls.json")" +%s)
((lu >= t0)) || fail "a no-op pull did not update last_used"
pass "a no-op pull updates last_used"

# ---- verify -------------------------------------------------------------------------------------
assert_exit 0 "verify a sound store: exit 0" -- "$cs" store verify --json
assert_eq "$(jq -r '[.checked, (.corrupt | length), .removed, (.missing | length)] | join(",")' "$WORK/out")" \
    7,0,0,0 "verify checked 7 blobs, found nothing wrong"
assert_eq "$(jq -r .bytes "$WORK/out")" "$(store_blobs | disk_bytes)" "verify hashed every byte"

a1=$(jq -r '.layers[1].digest' "$WORK/st/a-v1.manifest.json")
b1=$(jq -r '.layers[1].digest' "$WORK/st/b-v1.manifest.json")
# one byte flipped in A's own layer (same size)
printf '\x5a' | dd of="$(blob_path "$a1")" bs=1 seek=1000 conv=notrunc status=none
assert_exit 5 "verify finds the flipped byte: exit 5" -- "$cs" store verify
assert_contains "$WORK/out" "^corrupt +$a1 +digest mismatch: content hashes to sha256:[0-9a-f]{64}; removed" \
    "verify names the corrupt blob and removes it"
assert_contains "$WORK/out" "^missing +$a1 +needed by $A\$" "verify names the ref that now lacks it"
assert_contains "$WORK/err" "corrupt blob removed" "verify says so on stderr"
[[ ! -e $(blob_path "$a1") ]] || fail "the corrupt blob is still there"
pass "the corrupt blob is gone"
# B's own layer cut short: a size mismatch
truncate -s 1000 "$(blob_path "$b1")"
assert_exit 5 "verify --json finds the short blob: exit 5" -- "$cs" store verify --json
assert_eq "$(jq -r '.corrupt | map([.digest, .reason, .removed] | join(" ")) | join(";")' "$WORK/out")" \
    "$b1 size mismatch true" "verify --json: the digest, the reason, removed"
assert_eq "$(jq -r '.corrupt[0].path' "$WORK/out")" "$(blob_path "$b1")" "verify --json: the path"
assert_eq "$(jq -r '[.removed, .checked] | join(",")' "$WORK/out")" 1,6 "one removed of 6 checked"
assert_eq "$(jq -r '.missing | map(.ref + " " + .digest) | sort | join(";")' "$WORK/out")" \
    "$A $a1;$B $b1" "both refs' missing blobs listed"
# pulls heal the store
assert_exit 0 "pull A heals it" -- "$cs" pull --json --to store "$A"
assert_eq "$(jq -r .layers.fetched "$WORK/out")" 1 "pull A fetched the removed layer only"
assert_exit 0 "pull B heals it" -- "$cs" pull --to store "$B"
assert_exit 0 "verify after the pulls: exit 0" -- "$cs" store verify --json
assert_eq "$(jq -r '[.checked, (.corrupt | length), (.missing | length)] | join(",")' "$WORK/out")" \
    7,0,0 "the store is whole again"

# ---- gc: a forgotten ref ----------------------------------------------------------------------
store_blobs >"$WORK/before"
jq --arg r "$B" '.manifests |= map(select(.annotations."org.opencontainers.image.ref.name" != $r))' \
    "$S/index.json" >"$WORK/index.new" && mv "$WORK/index.new" "$S/index.json"
comm -23 <(image_blobs st/b v1) <(image_blobs st/a v1) >"$WORK/b-only"
assert_eq "$(wc -l <"$WORK/b-only")" 3 "B alone needs 3 blobs (manifest, config, its layer)"
freed=$(disk_bytes <"$WORK/b-only")
"$cs" store ls --json >"$WORK/ls.json"
assert_eq "$(jq -r '[.unreferenced_blobs, .unreferenced_bytes] | join(",")' "$WORK/ls.json")" "3,$freed" \
    "ls counts B's blobs as unreferenced"
assert_exit 0 "gc --dry-run" -- "$cs" store gc --dry-run --json
assert_eq "$(jq -r '[.removed_blobs, .freed_bytes, .dry_run] | join(",")' "$WORK/out")" "3,$freed,true" \
    "a dry run reports what gc would free"
assert_eq "$(store_blobs)" "$(cat "$WORK/before")" "a dry run removes nothing"
assert_exit 0 "gc" -- "$cs" store gc
assert_contains "$WORK/out" "^removed 3 blobs and 0 partial files: .* freed; the store keeps 1 ref, 4 blobs" \
    "gc says what it removed and what is left"
assert_eq "$(store_blobs)" "$(comm -23 "$WORK/before" "$WORK/b-only")" \
    "gc removed exactly B's own blobs, kept A's (the shared base too)"
assert_exit 0 "verify after gc" -- "$cs" store verify --json
assert_eq "$(jq -r '[.checked, (.corrupt | length), (.missing | length)] | join(",")' "$WORK/out")" \
    4,0,0 "A is whole after gc"

# ---- gc --older-than ----------------------------------------------------------------------------
assert_exit 0 "pull B again" -- "$cs" pull --to store "$B"
fake_last_used "$A" "$(days_ago 10)"
fake_last_used "$B" "$(days_ago 2)"
store_blobs >"$WORK/before"
comm -23 <(image_blobs st/a v1) <(image_blobs st/b v1) >"$WORK/a-only"
afreed=$(disk_bytes <"$WORK/a-only")
assert_exit 0 "gc --older-than 30 removes nothing" -- "$cs" store gc --older-than 30 --json
assert_eq "$(jq -r '[(.removed_refs | length), .removed_blobs] | join(",")' "$WORK/out")" 0,0 \
    "no ref is 30 days old"
assert_exit 0 "gc --older-than 7" -- "$cs" store gc --older-than 7 --json
assert_eq "$(jq -r '.removed_refs | map([.ref, .digest, .reason] | join(" ")) | join(";")' "$WORK/out")" \
    "$A $(manifest_digest st/a v1) older-than" "gc --older-than 7 forgets A (10 days) only"
assert_eq "$(jq -r '[.removed_blobs, .freed_bytes] | join(",")' "$WORK/out")" "3,$afreed" \
    "and frees A's own 3 blobs"
assert_eq "$(store_blobs)" "$(comm -23 "$WORK/before" "$WORK/a-only")" "exactly those: the base stays for B"
assert_eq "$(jq -r '[.manifests[].annotations."org.opencontainers.image.ref.name"] | join(",")' "$S/index.json")" \
    "$B" "index.json names B only"

# ---- gc --max-size --------------------------------------------------------------------------------
assert_exit 0 "pull A again" -- "$cs" pull --to store "$A"
fake_last_used "$A" "$(days_ago 1)"
fake_last_used "$B" "$(days_ago 2)"
total=$(store_blobs | disk_bytes)
assert_exit 0 "gc --max-size TOTAL keeps both" -- "$cs" store gc --max-size "$total" --json
assert_eq "$(jq -r '.removed_refs | length' "$WORK/out")" 0 "everything fits"
assert_exit 0 "gc --max-size TOTAL-1" -- "$cs" store gc --max-size "$((total - 1))" --json
assert_eq "$(jq -r '.removed_refs | map(.ref + " " + .reason) | join(";")' "$WORK/out")" "$B max-size" \
    "the least recently used ref goes (B, 2 days), A (1 day) stays"
assert_eq "$(store_blobs)" "$(image_blobs st/a v1)" "the store holds A's blobs only"
assert_exit 2 "a bad --max-size is a usage error" -- "$cs" store gc --max-size 10Q
assert_exit 2 "gc options are gc's" -- "$cs" store ls --older-than 3

# ---- gc while a throttled pull is running -----------------------------------------------------
start_proxy slow "$U" --rate 300000
BIG=$slow_REG/st/big:v1
junk=$WORK/junk
head -c 5000 /dev/urandom >"$junk"
jd=sha256:$(sha256sum <"$junk" | cut -d' ' -f1)
cp "$junk" "$(blob_path "$jd")" # a blob no ref needs: gc must remove it, once it runs
"$cs" pull --to store "$BIG" >"$WORK/bigpull.out" 2>&1 &
pull_pid=$!
for ((i = 0; i < 400; i++)); do
    [[ -n $(find "$S/partial" -type f ! -name '*.lock' -size +1k 2>/dev/null) ]] && break
    sleep 0.05
done
[[ -n $(find "$S/partial" -type f ! -name '*.lock' -size +1k) ]] || fail "the throttled pull wrote no partial file"
kill -0 "$pull_pid" 2>/dev/null || fail "the throttled pull ended too soon to test anything"
pass "a throttled pull is writing a blob no ref names yet"
assert_exit 1 "gc --wait 0.5 during the pull gives up" -- "$cs" store gc --wait 0.5
assert_contains "$WORK/err" "in use by another process .*try again" "with a clear message"
[[ -e $(blob_path "$jd") ]] || fail "gc that gave up removed something"
assert_exit 0 "gc during the pull waits for it, then runs" -- "$cs" store gc --json --wait 120
cp "$WORK/out" "$WORK/gc.json"
wait "$pull_pid" || fail "the throttled pull failed: $(cat "$WORK/bigpull.out")"
pass "the throttled pull succeeded"
# the pull names its ref last, just before it lets go of the store: gc saw it, so it ran after
assert_eq "$(jq -r '.after.refs' "$WORK/gc.json")" 2 "gc ran only once the pull had named its ref"
cp "$WORK/gc.json" "$WORK/out"
assert_eq "$(jq -r '.removed_blobs' "$WORK/out")" 1 "gc removed the one unneeded blob"
[[ ! -e $(blob_path "$jd") ]] || fail "the unneeded blob is still there"
assert_eq "$(comm -23 <(image_blobs st/big v1) <(store_blobs) | wc -l)" 0 "every blob of the pulled image is there"
assert_exit 0 "verify after gc and pull: exit 0" -- "$cs" store verify --json
assert_eq "$(jq -r '[(.corrupt | length), (.missing | length)] | join(",")' "$WORK/out")" 0,0 \
    "the store verifies: nothing corrupt, nothing missing"
"$cs" store ls --json >"$WORK/ls.json"
assert_eq "$(jq -r '.refs | map(.ref) | sort | join(",")' "$WORK/ls.json")" \
    "$(printf '%s\n' "$A" "$BIG" | LC_ALL=C sort | paste -sd,)" "ls names A and the big image"
