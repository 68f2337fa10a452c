#!/usr/bin/env bash
# The man page and the bash completion against the program they describe: doc/cachesync.1
# renders without a warning; every command `cachesync help` lists has a section in it, and
# every option `cachesync help COMMAND` prints is documented there and offered by
# contrib/completion/cachesync.bash; the completion itself (commands, options, their values,
# targets, sources, files) called as bash calls it, COMP_WORDS split at ":" and "=" as
# readline splits them.
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need man groff lexgrog

cs=$CACHESYNC
page=$CS_SRCDIR/doc/cachesync.1
completion=$CS_SRCDIR/contrib/completion/cachesync.bash
[[ -f $page ]] || fail "no man page at $page"
[[ -f $completion ]] || fail "no completion script at $completion"

# ---- the page renders cleanly ------------------------------------------------------------------
MANWIDTH=80 man --warnings -l "$page" >"$WORK/page.txt" 2>"$WORK/man.err" ||
    fail "man -l $page failed: $(head -n 5 "$WORK/man.err")"
assert_eq "$(cat "$WORK/man.err")" "" "man --warnings -l renders the page without warnings"
groff -man -ww -z "$page" >"$WORK/groff.err" 2>&1 || true
assert_eq "$(cat "$WORK/groff.err")" "" "groff -man -ww finds nothing to warn about"
assert_exit 0 "lexgrog reads the NAME section (whatis, apropos)" -- lexgrog "$page"
assert_contains "$WORK/out" 'cachesync - ' "the NAME line is 'cachesync - ...'"
long=$(awk 'length > 80' "$WORK/page.txt")
assert_eq "$long" "" "no rendered line is wider than 80 columns"
for s in NAME SYNOPSIS DESCRIPTION COMMANDS 'GLOBAL OPTIONS' 'TARGETS AND SOURCES' ENVIRONMENT \
    FILES 'EXIT STATUS' 'JSON OUTPUT' EXAMPLES 'SEE ALSO'; do
    assert_contains "$WORK/page.txt" "^$s\$" "the page has the $s section"
done
version=$("$cs" version | sed -n '1s/^cachesync //p')
assert_contains "$page" "^\\.TH CACHESYNC 1 .*\"cachesync $version\"" \
    "the page's .TH names this version ($version)"
for code in 0 1 2 3 4 5; do
    assert_contains "$WORK/page.txt" "^       $code  " "EXIT STATUS documents $code"
done
# every variable the sources read
for var in $( (grep -rhoE 'getenv\("[A-Z_]+"\)' --include='*.c' "$CS_SRCDIR/src" |
    sed 's/getenv("\(.*\)")/\1/'; echo NO_COLOR) | sort -u); do
    assert_contains "$WORK/page.txt" "^       $var\$|^       $var " "ENVIRONMENT documents $var"
done

# ---- the page against `cachesync help` ---------------------------------------------------------
# Wide and unhyphenated, so that an option is never broken across lines.
MANWIDTH=200 man -l "$page" >"$WORK/wide.txt" 2>/dev/null

"$cs" help >"$WORK/help.txt"
mapfile -t commands < <(sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p' "$WORK/help.txt")
((${#commands[@]} >= 6)) || fail "cachesync help lists only ${#commands[@]} commands"
for c in "${commands[@]}"; do
    assert_contains "$page" "^\\.SS \"?$c\"?\$" "the page has a section for '$c'"
done

# The options a help text defines: its lines that start with an option, up to the
# description (two spaces); e.g. "  -q, --quiet   print..." gives -q and --quiet.
defined_options() { # FILE
    sed -n 's/^ \{1,\}\(-.*\)$/\1/p' "$1" | sed 's/  .*//' |
        grep -oE '(^|[ ,])--?[A-Za-z][A-Za-z0-9-]*' | tr -d ' ,' | sort -u
}
# Every --option a help text mentions, defined or in passing.
mentioned_options() { # FILE
    grep -oE '(^|[^A-Za-z0-9-])--[a-z][a-z0-9-]*' "$1" | sed 's/^[^-]*//' | sort -u
}
has_word() { # FILE WORD
    grep -Eq -- "(^|[^A-Za-z0-9-])$2([^A-Za-z0-9-]|\$)" "$1"
}

for opt in $( (defined_options "$WORK/help.txt"; mentioned_options "$WORK/help.txt") | sort -u); do
    if has_word "$WORK/wide.txt" "$opt"; then
        pass "the page documents global option $opt"
    else
        fail "global option $opt (cachesync help) is not in the page"
    fi
done
for c in "${commands[@]}"; do
    "$cs" help "$c" >"$WORK/help-$c.txt"
    for opt in $( (defined_options "$WORK/help-$c.txt"; mentioned_options "$WORK/help-$c.txt") |
        sort -u); do
        if has_word "$WORK/wide.txt" "$opt"; then
            pass "the page documents $opt of $c"
        else
            fail "$opt (cachesync help $c) is not in the page"
        fi
    done
done

# ---- the completion ----------------------------------------------------------------------------
out=$(bash --norc --noprofile -c 'source "$1" && complete -p cachesync' _ "$completion" 2>&1)
assert_eq "$out" "complete -F _cachesync cachesync" "sourcing the script registers _cachesync"

# A directory to complete paths in, and a fake docker for the daemon's images.
cdir=$WORK/cdir
mkdir -p "$cdir/ocidir" "$cdir/fakebin" "$cdir/deadbin" "$cdir/certs"
: >"$cdir/img.tar"
: >"$cdir/ca.pem"
cat >"$cdir/fakebin/docker" <<'EOF'
#!/bin/sh
[ "$1 $2" = "image ls" ] || exit 2
printf '%s\n' 'app:ci' '127.0.0.1:5000/team/app:main' '<none>:<none>'
EOF
printf '#!/bin/sh\necho "Cannot connect to the Docker daemon" >&2\nexit 1\n' >"$cdir/deadbin/docker"
chmod +x "$cdir/fakebin/docker" "$cdir/deadbin/docker"

# complete LINE [PATH_PREFIX]: COMPREPLY of _cachesync for LINE (the cursor at its end), sorted,
# one line, in a fresh bash under `set -u` whose cwd is $cdir; the completion's stderr in
# $WORK/comp.err. COMP_WORDS is split as readline does: at blanks, and runs of ":" or "=" are
# words of their own.
complete_line() {
    # shellcheck disable=SC2016 # the script is for the inner bash
    (cd "$cdir" && PATH=${2:+$2:}$PATH bash --norc --noprofile -c '
        set -u
        source "$1"
        line=$2 w="" cls="" words=()
        for ((k = 0; k < ${#line}; k++)); do
            c=${line:k:1}
            if [[ $c == " " ]]; then
                [[ -n $w ]] && words+=("$w")
                w="" cls=""
            elif [[ $c == [:=] ]]; then
                if [[ $cls == brk ]]; then w+=$c; else
                    [[ -n $w ]] && words+=("$w")
                    w=$c cls=brk
                fi
            else
                if [[ $cls == brk ]]; then words+=("$w"); w=""; fi
                w+=$c cls=word
            fi
        done
        words+=("$w")
        COMP_WORDS=("${words[@]}") COMP_CWORD=$((${#words[@]} - 1))
        COMP_LINE=$line COMP_POINT=${#line}
        _cachesync
        printf "%s\n" "${COMPREPLY[@]}"
    ' _ "$completion" "$1" 2>"$WORK/comp.err") | sed '/^$/d' | LC_ALL=C sort | paste -sd ' ' -
}

assert_completes() { # LINE EXPECTED [PATH_PREFIX]
    local got
    got=$(complete_line "$1" "${3:-}")
    [[ -s $WORK/comp.err ]] && fail "completing '$1' wrote to stderr: $(head -n 3 "$WORK/comp.err")"
    assert_eq "$got" "$2" "completing '$1'"
}

assert_completes "cachesync pu" "pull push"
assert_completes "cachesync st" "store"
assert_completes "cachesync --jobs 4 -v pu" "pull push"
assert_completes "cachesync --store=/tmp pu" "pull push"
assert_completes "cachesync pull --to o" "oci:"
assert_completes "cachesync pull --to " "archive: docker oci: store"
assert_completes "cachesync pull --to=arch" "archive:"
assert_completes "cachesync pull --to oci:oc" "ocidir/"
assert_completes "cachesync pull --to oci:" "certs/ deadbin/ fakebin/ ocidir/"
assert_completes "cachesync pull --to archive:im" "img.tar"
assert_completes "cachesync pull --to=oci:oc" "ocidir/"
assert_completes "cachesync pull --fallback " ""
assert_completes "cachesync pull r --to d" "docker"
assert_completes "cachesync push --compression " "gzip zstd"
assert_completes "cachesync push --compression=z" "zstd"
assert_completes "cachesync push " "archive: docker: oci:"
assert_completes "cachesync push docker:" "127.0.0.1:5000/team/app:main app:ci" "$cdir/fakebin"
assert_completes "cachesync push docker:ap" "app:ci" "$cdir/fakebin"
assert_completes "cachesync push docker:127.0.0.1:5000/t" "5000/team/app:main" "$cdir/fakebin"
assert_completes "cachesync push docker:" "" "$cdir/deadbin"
assert_completes "cachesync push archive:i" "img.tar"
assert_completes "cachesync push app:ci " ""
assert_completes "cachesync push --t" "--tag"
assert_completes "cachesync audit --format " "dot json table"
assert_completes "cachesync audit --raw " "config manifest"
assert_completes "cachesync audit --against oci:o" "ocidir/"
assert_completes "cachesync audit o" "oci:"
assert_completes "cachesync store " "gc ls verify"
assert_completes "cachesync store gc --o" "--older-than"
assert_completes "cachesync store gc --m" "--max-size"
assert_completes "cachesync store ls --o" ""
assert_completes "cachesync store gc " ""
assert_completes "cachesync login --pass" "--password --password-stdin"
assert_completes "cachesync login --u" "--username"
assert_completes "cachesync help d" "doctor"
assert_completes "cachesync help pull " ""
assert_completes "cachesync version " ""
assert_completes "cachesync --store oc" "ocidir"
assert_completes "cachesync --docker-config c" "certs"
assert_completes "cachesync pull --ca-cert ca" "ca.pem"
assert_completes "cachesync --platform linux/arm" "linux/arm/v6 linux/arm/v7 linux/arm64 linux/arm64/v8"
assert_completes "cachesync --js" "--json"
assert_completes "cachesync doctor --ins" "--insecure-registry"

# Every command `cachesync help` lists is completed, and every option its help defines.
all=" $(complete_line "cachesync ") "
for c in "${commands[@]}"; do
    [[ $all == *" $c "* ]] || fail "'cachesync <TAB>' does not offer $c (got:$all)"
    pass "'cachesync <TAB>' offers $c"
done
for opt in $(defined_options "$WORK/help.txt"); do
    got=" $(complete_line "cachesync pull $opt") "
    [[ $got == *" $opt "* ]] || fail "global option $opt is not completed after a command"
    pass "global option $opt is completed"
done
for c in "${commands[@]}"; do
    # the store's options are gc's
    line="cachesync $c"
    [[ $c == store ]] && line="cachesync store gc"
    for opt in $(defined_options "$WORK/help-$c.txt"); do
        got=" $(complete_line "$line $opt") "
        [[ $got == *" $opt "* ]] || fail "'$line $opt<TAB>' does not offer $opt (got:$got)"
        pass "$opt of $c is completed"
    done
done
