#!/usr/bin/env bash
# What the user sees: progress on a pseudo-terminal (a line per layer, the daemon load, a
# total; colour unless NO_COLOR), plain lines without control characters elsewhere, -q
# silent, and --json for every command: one object on stdout with the documented fields,
# errors as {"error": {"code", "kind", "message"}} with the same exit code.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need jq script

cs=$CACHESYNC
start_registry reg
start_dockerd a
start_dockerd b
make_base_image a
docker_cli a save localbase:1 | docker_cli b load >/dev/null
R=$reg_REG
ctx=$WORK/ctx
mkdir -p "$ctx"
head -c 6000000 /dev/urandom >"$ctx/one.bin"
head -c 6000000 /dev/urandom >"$ctx/two.bin"
printf 'FROM localbase:1\nCOPY one.bin /one.bin\nCOPY two.bin /two.bin\n' >"$ctx/Dockerfile"
build_image a "$ctx" "$R/o/app:v1"
export CACHESYNC_STORE=$WORK/store

# ---- push, --json ---------------------------------------------------------------------------
assert_exit 0 "push --json" -- env DOCKER_HOST="$a_DOCKER_HOST" "$cs" --json push "$R/o/app:v1" "$R/o/app:v1"
cp "$WORK/out" "$WORK/push.json"
assert_eq "$(jq -r 'keys | join(",")' "$WORK/push.json")" \
    "blobs,digest,layers,media_type,ref,seconds,tags" "push --json has the documented fields"
digest=$(jq -r .digest "$WORK/push.json")
assert_eq "$(curl -sfI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "$reg_REG_URL/v2/o/app/manifests/v1" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')" \
    "$digest" "push --json digest is what the registry serves"
assert_eq "$(jq -r '.blobs.uploaded + .blobs.mounted + .blobs.present' "$WORK/push.json")" \
    "$(jq -r .blobs.total "$WORK/push.json")" "push --json blob counts add up"

# ---- pull on a pseudo-terminal ----------------------------------------------------------------
tty_pull() { # OUTFILE ENV [GLOBAL-FLAGS]
    local out=$1
    rm -rf "$CACHESYNC_STORE"
    docker_cli b rmi -f "$R/o/app:v1" >/dev/null 2>&1 || true
    script -qfec "env $2 DOCKER_HOST=$b_DOCKER_HOST $cs ${3:-} pull $R/o/app:v1" /dev/null >"$out" 2>&1
}
tty_pull "$WORK/tty.out" NO_COLOR=
assert_eq "$?" 0 "pull on a pty exits 0"
assert_contains "$WORK/tty.out" 'sha256:[0-9a-f]{12}: .*downloading.* / ' "a live line per layer being fetched"
assert_contains "$WORK/tty.out" 'total: [0-9]+/2 layers' "a total line"
assert_contains "$WORK/tty.out" 'docker: .*(sending|unpacking)' "the daemon load has a line"
assert_contains "$WORK/tty.out" $'\e\\[[0-9]*A' "the live block is redrawn in place"
assert_contains "$WORK/tty.out" $'\e\\[36m' "states are coloured on a terminal"
tail -n 1 "$WORK/tty.out" | tr -d '\r' | sed 's/\x1b\[[0-9]*[A-Za-z]//g' >"$WORK/tty.last"
assert_contains "$WORK/tty.last" '^done in [0-9.]+s: 2 of 3 layers fetched' "the last line is the total"
assert_eq "$(docker_cli b image inspect -f '{{.Id}}' "$R/o/app:v1")" \
    "$(docker_cli a image inspect -f '{{.Id}}' "$R/o/app:v1")" "the pty pull loaded the image"

tty_pull "$WORK/nocolor.out" NO_COLOR=1
assert_contains "$WORK/nocolor.out" 'downloading' "NO_COLOR keeps the progress"
assert_not_contains "$WORK/nocolor.out" $'\e\\[3[0-9]m' "NO_COLOR=1: no colour"

tty_pull "$WORK/quiet.out" NO_COLOR= -q
assert_not_contains "$WORK/quiet.out" $'\e|downloading|fetched' "-q on a terminal prints nothing"
[[ ! -s $WORK/quiet.out ]] || fail "-q printed: $(head -c 200 "$WORK/quiet.out")"
pass "-q printed nothing at all"

# push on a pty: the export, each layer compressed, each upload
script -qfec "env DOCKER_HOST=$a_DOCKER_HOST CACHESYNC_STORE=$WORK/store-ptypush $cs push $R/o/app:v1 $R/o/ptypush:v1" \
    /dev/null >"$WORK/ptypush.out" 2>&1
assert_eq "$?" 0 "push on a pty exits 0"
assert_contains "$WORK/ptypush.out" 'docker: .*exporting' "push shows the daemon's export"
assert_contains "$WORK/ptypush.out" 'sha256:[0-9a-f]{12}: .*compressing' "push shows each layer compressing"
assert_contains "$WORK/ptypush.out" 'compressed sha256:[0-9a-f]{12} \(6\.0 MB\)' "a finished compression is a line of its own"
assert_contains "$WORK/ptypush.out" 'sha256:[0-9a-f]{12} uploaded' "each upload ends with a line"

# ---- not a terminal -----------------------------------------------------------------------------
rm -rf "$CACHESYNC_STORE"
docker_cli b rmi -f "$R/o/app:v1" >/dev/null
assert_exit 0 "pull with stderr to a file" -- env DOCKER_HOST="$b_DOCKER_HOST" "$cs" pull "$R/o/app:v1"
if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$WORK/err"; then
    fail "control characters in non-terminal output: $(LC_ALL=C grep -c $'[\x01-\x08\x0b-\x1f]' "$WORK/err") lines"
fi
pass "non-terminal output has no control characters"
assert_eq "$(grep -c '^fetched sha256:' "$WORK/err")" 2 "one line per fetched layer"
[[ ! -s $WORK/out ]] || fail "pull without --json wrote to stdout"
pass "pull without --json leaves stdout empty"

# ---- --json for every command -----------------------------------------------------------------
rm -rf "$CACHESYNC_STORE"
docker_cli b rmi -f "$R/o/app:v1" >/dev/null
assert_exit 0 "pull --json" -- env DOCKER_HOST="$b_DOCKER_HOST" "$cs" --json pull "$R/o/app:v1"
assert_eq "$(jq -r 'keys | join(",")' "$WORK/out")" \
    "config_digest,digest,layers,manifest_digest,platform,ref,seconds,served_by,targets" \
    "pull --json has the documented fields"
assert_eq "$(jq -r '.layers | keys | join(",")' "$WORK/out")" \
    "bytes_fetched,bytes_total,fetched,in_daemon,in_store,total" "pull --json layer fields"
assert_eq "$(jq -r .digest "$WORK/out")" "$digest" "pull --json digest is the pushed one"
assert_eq "$(jq -r .layers.fetched "$WORK/out")" 2 "pull --json: 2 layers fetched (the base is in the daemon)"
assert_eq "$(jq -r '.targets[0].target' "$WORK/out")" docker "pull --json names the target"
assert_eq "$(jq -s length "$WORK/out")" 1 "pull --json prints exactly one JSON object on stdout"

assert_exit 0 "audit --json" -- "$cs" --json audit "$R/o/app:v1"
assert_eq "$(jq -r .manifest_digest "$WORK/out")" "$digest" "audit --json manifest_digest"
assert_eq "$(jq -r '.layers | length' "$WORK/out")" 3 "audit --json lists 3 layers"
assert_eq "$(jq -r .inline_cache "$WORK/out")" true "audit --json sees the inline cache"

assert_exit 0 "doctor --json" -- env DOCKER_HOST="$b_DOCKER_HOST" "$cs" --json doctor "$R/o/app:v1"
assert_eq "$(jq -r .ready "$WORK/out")" true "doctor --json: ready"
assert_eq "$(jq -r '.checks | length > 0' "$WORK/out")" true "doctor --json lists its checks"

assert_exit 0 "version --json" -- "$cs" version --json
assert_eq "$(jq -r .version "$WORK/out")" "$("$cs" version | sed -n 's/^cachesync //p')" "version --json"
assert_eq "$(jq -r .libdeflate "$WORK/out")" "$("$cs" version | sed -n 's/.*, libdeflate //p')" \
    "version --json names the libdeflate that gzip uses, as the text does"
assert_exit 0 "help --json" -- "$cs" help --json
mapfile -t cmds < <(jq -r '.commands[].name' "$WORK/out")
assert_eq "${#cmds[@]}" "$("$cs" help | sed -n '/^commands:/,/^$/p' | grep -c '^  [a-z]')" \
    "help --json lists every command of help"
for c in "${cmds[@]}"; do
    "$cs" help "$c" --json >"$WORK/h.json" || fail "help $c --json"
    [[ $(jq -r .command "$WORK/h.json") == "$c" && $(jq -r .usage "$WORK/h.json") == usage:* ]] ||
        fail "help $c --json: $(head -c 200 "$WORK/h.json")"
done
pass "help COMMAND --json for ${#cmds[@]} commands"
if "$cs" help | grep -q '^  store '; then
    assert_exit 0 "store ls --json" -- "$cs" --json store ls
    assert_eq "$(jq -r '[.refs[].digest] | index("'"$digest"'") != null' "$WORK/out")" true \
        "store ls --json lists the pulled manifest"
fi

# ---- errors as JSON, same exit codes ------------------------------------------------------------
check_json_error() { # CODE KIND MSG -- CMD...
    local code=$1 kind=$2 msg=$3
    shift 4
    assert_exit "$code" "$msg" -- "$@"
    assert_eq "$(jq -r '.error.code' "$WORK/out")" "$code" "$msg: JSON error code"
    assert_eq "$(jq -r '.error.kind' "$WORK/out")" "$kind" "$msg: JSON error kind"
    [[ $(jq -r '.error.message | length > 0' "$WORK/out") == true ]] || fail "$msg: no message"
}
check_json_error 3 not_found "pull of a missing tag" -- "$cs" --json pull --to store "$R/o/app:nope"
check_json_error 2 usage "a malformed reference" -- "$cs" --json pull "Upper:x"
check_json_error 3 not_found "audit of a missing repo" -- "$cs" --json audit "$R/o/nothing:v1"
check_json_error 1 failure "push from a daemon that is down" -- \
    env DOCKER_HOST=unix://$WORK/no.sock "$cs" --json push "$R/o/app:v1" "$R/o/app:v2"
echo "$(jq -c .error "$WORK/out")" >&2
stop_env reg
check_json_error 1 failure "pull from a registry that is down" -- "$cs" --json pull --to store "$R/o/app:v1"
