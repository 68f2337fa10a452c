# bash completion for cachesync(1)                                   -*- shell-script -*-
#
# Install as $(pkg-config --variable=completionsdir bash-completion)/cachesync, or source it
# from ~/.bashrc. Needs nothing but bash: the bash-completion package is used when loaded,
# never required.
#
# Completes the commands, the global options (anywhere on the line), each command's options
# and their values, `pull --to` targets (docker, store, oci:DIR, archive:FILE), push/audit
# sources (docker:IMAGE with the daemon's images when `docker` answers, oci:DIR,
# archive:FILE), and files or directories for --store, --docker-config and --ca-cert.

_cachesync_commands="pull push doctor audit login logout store version help"
# global options that take a value, and those that do not
_cachesync_global_argopts="--jobs --platform --store --docker-config --insecure-registry --ca-cert"
_cachesync_global_flags="-q --quiet -v --verbose --json -h --help"

# _cachesync_compgen WORDLIST CUR: COMPREPLY gets the words of WORDLIST that start with CUR.
_cachesync_compgen() {
    local w
    COMPREPLY=()
    for w in $1; do
        if [[ $w == "$2"* ]]; then
            COMPREPLY+=("$w")
        fi
    done
    return 0
}

# _cachesync_paths PREFIX CUR DIRS_ONLY: files (or directories) matching CUR, each with PREFIX
# in front (PREFIX is "oci:", "archive:" or empty).
_cachesync_paths() {
    local prefix=$1 cur=$2 dirs=$3 p
    local -a found
    if [[ $dirs == 1 ]]; then
        mapfile -t found < <(compgen -d -- "$cur")
    else
        mapfile -t found < <(compgen -f -- "$cur")
    fi
    for p in "${found[@]}"; do
        # with a prefix, readline cannot see the directory: mark it here
        if [[ -n $prefix && -d $p ]]; then
            COMPREPLY+=("$prefix$p/")
        else
            COMPREPLY+=("$prefix$p")
        fi
    done
    # -o filenames: readline quotes the names and marks directories with "/" itself (not
    # after a prefix: it cannot see the path there)
    if [[ -z $prefix ]]; then
        compopt -o filenames 2>/dev/null
    fi
    _cachesync_nospace_if_open
}

# No space after a reply that wants more: "oci:", "archive:", "docker:", "dir/".
_cachesync_nospace_if_open() {
    local r
    for r in "${COMPREPLY[@]}"; do
        if [[ $r == *[:/] ]]; then
            compopt -o nospace 2>/dev/null
            break
        fi
    done
    return 0
}

# Local images of the daemon at DOCKER_HOST as docker:REPO:TAG; nothing when docker is missing
# or the daemon does not answer (within 2 seconds).
_cachesync_docker_images() {
    local cur=$1 img
    command -v docker >/dev/null 2>&1 || return 0
    local -a imgs
    mapfile -t imgs < <(timeout 2 docker image ls --format '{{.Repository}}:{{.Tag}}' \
        2>/dev/null | grep -v '<none>')
    for img in "${imgs[@]}"; do
        if [[ docker:$img == "$cur"* ]]; then
            COMPREPLY+=("docker:$img")
        fi
    done
    return 0
}

# Values for a SOURCE (push, audit): the prefixes, then what follows them.
_cachesync_source() {
    local cur=$1
    case $cur in
    docker:*) _cachesync_docker_images "$cur" ;;
    oci:*) _cachesync_paths oci: "${cur#oci:}" 1 ;;
    archive:*) _cachesync_paths archive: "${cur#archive:}" 0 ;;
    *)
        _cachesync_compgen "docker: oci: archive:" "$cur"
        _cachesync_nospace_if_open
        ;;
    esac
    return 0
}

# Values for --to TARGET (pull).
_cachesync_target() {
    local cur=$1
    case $cur in
    oci:*) _cachesync_paths oci: "${cur#oci:}" 1 ;;
    archive:*) _cachesync_paths archive: "${cur#archive:}" 0 ;;
    *)
        # oci: and archive: want more; docker and store are complete words
        _cachesync_compgen "docker store oci: archive:" "$cur"
        _cachesync_nospace_if_open
        ;;
    esac
    return 0
}

# Readline replaces only what follows the last COMP_WORDBREAKS character (":" by default)
# of the word: strip that part of CUR from each reply (bash-completion's
# __ltrim_colon_completions).
_cachesync_ltrim_colon() {
    local cur=$1 i
    if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
        local colon_word=${cur%"${cur##*:}"}
        for i in "${!COMPREPLY[@]}"; do
            COMPREPLY[i]=${COMPREPLY[i]#"$colon_word"}
        done
    fi
    return 0
}

_cachesync() {
    COMPREPLY=()
    # bash splits "oci:dir" into "oci" ":" "dir" (":" is in COMP_WORDBREAKS): join them again
    # into words[], cword is the index of the word being completed.
    local -a words=()
    local i w join=0 n
    for ((i = 0; i <= COMP_CWORD && i < ${#COMP_WORDS[@]}; i++)); do
        w=${COMP_WORDS[i]}
        n=${#words[@]}
        if ((n > 0)) && [[ $w == :* && $w != *[!:]* ]]; then
            words[n - 1]+=$w
            join=1
        elif ((join && n > 0)); then
            words[n - 1]+=$w
            join=0
        else
            words+=("$w")
            join=0
        fi
    done
    if ((COMP_CWORD >= ${#COMP_WORDS[@]})); then
        words+=("")
    fi
    local cword=$((${#words[@]} - 1))
    local cur=${words[cword]} prev=""
    if ((cword > 0)); then
        prev=${words[cword - 1]}
    fi

    # --opt=value: bash gives "--opt" "=" "value"; treat it as "--opt" "value"
    if [[ $cur == "=" && $prev == --* ]]; then
        cur=""
    elif [[ $prev == "=" ]] && ((cword > 1)) && [[ ${words[cword - 2]} == --* ]]; then
        prev=${words[cword - 2]}
    fi

    # the command: the first word that is neither an option nor an option's value
    local cmd="" sub="" skip=0 nargs=0
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        if ((skip)); then
            skip=0
            continue
        fi
        case $w in
        =)
            skip=1 # --opt=value
            continue
            ;;
        --jobs | --platform | --store | --docker-config | --insecure-registry | --ca-cert)
            # a value follows unless written --opt=value (then the next word is "=")
            [[ ${words[i + 1]:-} == "=" ]] || skip=1
            continue
            ;;
        --fallback | --to | --tag | --compression | --against | --format | --raw | \
            --older-than | --max-size | --wait | -u | --username | -p | --password)
            [[ ${words[i + 1]:-} == "=" ]] || skip=1
            continue
            ;;
        -*) continue ;;
        esac
        if [[ -z $cmd ]]; then
            cmd=$w
        else
            [[ $cmd == store && -z $sub ]] && sub=$w
            nargs=$((nargs + 1))
        fi
    done

    # the value of an option
    case $prev in
    --store | --docker-config)
        _cachesync_paths "" "$cur" 1
        return 0
        ;;
    --ca-cert)
        _cachesync_paths "" "$cur" 0
        return 0
        ;;
    --platform)
        _cachesync_compgen "linux/amd64 linux/arm64 linux/arm64/v8 linux/arm/v7 linux/arm/v6 \
linux/386 linux/ppc64le linux/s390x linux/riscv64 windows/amd64" "$cur"
        return 0
        ;;
    --jobs | --insecure-registry | --fallback | --tag | --older-than | --max-size | -u | \
        --username | -p | --password)
        return 0
        ;;
    --to)
        [[ $cmd == pull ]] && {
            _cachesync_target "$cur"
            _cachesync_ltrim_colon "$cur"
        }
        return 0
        ;;
    --compression)
        [[ $cmd == push ]] && _cachesync_compgen "gzip zstd" "$cur"
        return 0
        ;;
    --against)
        [[ $cmd == audit ]] && {
            _cachesync_source "$cur"
            _cachesync_ltrim_colon "$cur"
        }
        return 0
        ;;
    --format)
        [[ $cmd == audit ]] && _cachesync_compgen "table json dot" "$cur"
        return 0
        ;;
    --raw)
        [[ $cmd == audit ]] && _cachesync_compgen "manifest config" "$cur"
        return 0
        ;;
    esac

    if [[ $cur == -* ]]; then
        local opts="$_cachesync_global_argopts $_cachesync_global_flags"
        case $cmd in
        "") opts+=" --version" ;;
        pull) opts+=" --fallback --to" ;;
        push) opts+=" --tag --compression" ;;
        audit) opts+=" --against --format --raw" ;;
        login) opts+=" -u --username --password-stdin -p --password" ;;
        store) [[ $sub == gc ]] && opts+=" --older-than --max-size --wait --dry-run" ;;
        esac
        _cachesync_compgen "$opts" "$cur"
        return 0
    fi

    case $cmd in
    "")
        _cachesync_compgen "$_cachesync_commands" "$cur"
        ;;
    help)
        ((nargs == 0)) && _cachesync_compgen "$_cachesync_commands" "$cur"
        ;;
    store)
        ((nargs == 0)) && _cachesync_compgen "ls verify gc" "$cur"
        ;;
    push)
        # SOURCE first, then the registry REF (nothing to offer)
        if ((nargs == 0)); then
            _cachesync_source "$cur"
            _cachesync_ltrim_colon "$cur"
        fi
        ;;
    audit)
        if ((nargs == 0)); then
            _cachesync_source "$cur"
            _cachesync_ltrim_colon "$cur"
        fi
        ;;
    logout)
        # the registries config.json holds credentials for (when jq is there)
        if ((nargs == 0)) && command -v jq >/dev/null 2>&1; then
            local cfg=${DOCKER_CONFIG:-$HOME/.docker}/config.json
            [[ -r $cfg ]] && _cachesync_compgen "$(jq -r '((.auths // {}) + (.credHelpers // {}))
                | keys[]' "$cfg" 2>/dev/null)" "$cur"
            _cachesync_ltrim_colon "$cur"
        fi
        ;;
    esac
    return 0
}

complete -F _cachesync cachesync
