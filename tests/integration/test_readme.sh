#!/usr/bin/env bash
# The README, walked through as a new user would: every code block marked
# `<!-- runnable: ci -->` or `<!-- runnable: fresh -->` runs as written, in order, on the
# machine it names (ci: a daemon that builds; fresh: a daemon with only the base image, its
# own store), with registry.example.com replaced by a real registry on loopback and the
# current directory a small app with a Dockerfile. Every block must exit 0, and the fresh
# machine's build must show the dependency steps CACHED.
# shellcheck disable=SC2154 # NAME_* variables are set by start_registry/start_dockerd
. "${CS_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
cs_need python3

readme=${CS_SRCDIR:-$(dirname "$0")/../..}/README.md
[[ -f $readme ]] || fail "no README at $readme"

# the blocks, one file each: NN.MACHINE.sh
python3 - "$readme" "$WORK/blocks" >/dev/null <<'PY' || fail "extracting the README's runnable blocks"
import os, re, sys
text = open(sys.argv[1]).read().split("\n")
out = sys.argv[2]
os.makedirs(out, exist_ok=True)
n, i = 0, 0
while i < len(text):
    m = re.match(r"<!-- runnable: (ci|fresh) -->\s*$", text[i])
    if m:
        i += 1
        if i >= len(text) or not text[i].startswith("```"):
            sys.exit("line %d: a runnable marker must precede a code block" % i)
        i += 1
        body = []
        while i < len(text) and not text[i].startswith("```"):
            body.append(text[i])
            i += 1
        n += 1
        open(os.path.join(out, "%02d.%s.sh" % (n, m.group(1))), "w").write("\n".join(body) + "\n")
    i += 1
print(n)
PY
nblocks=$(find "$WORK/blocks" -name '*.sh' | wc -l | tr -d ' ')
((nblocks >= 4)) || fail "only $nblocks runnable blocks in the README"
pass "the README has $nblocks runnable blocks"

start_registry reg
start_dockerd ci
start_dockerd fresh
make_base_image ci
docker_cli ci save localbase:1 | docker_cli fresh load >/dev/null

# what a user has: cachesync and docker on PATH, a project with a Dockerfile
mkdir -p "$WORK/bin" "$WORK/app/src"
ln -s "$CACHESYNC" "$WORK/bin/cachesync"
# the test daemons run without a bridge network (scripts/testenv dockerd): builds get
# --network=none, which changes nothing else about them
cat >"$WORK/bin/docker" <<EOF
#!/bin/sh
if [ "\$1" = build ]; then shift; exec "$CS_DOCKER" build --network=none "\$@"; fi
exec "$CS_DOCKER" "\$@"
EOF
chmod +x "$WORK/bin/docker"
cat >"$WORK/app/Dockerfile" <<'DF'
FROM localbase:1
COPY deps.txt /deps.txt
RUN sleep 2 && echo "dependencies built" > /deps.out
COPY src /src
RUN cat /src/main.txt > /app.txt
DF
echo "serde = 1" >"$WORK/app/deps.txt"
echo "version 1" >"$WORK/app/src/main.txt"

changed=0
for block in "$WORK"/blocks/*.sh; do
    name=$(basename "$block" .sh)
    machine=${name#*.}
    if [[ $machine == fresh && $changed == 0 ]]; then
        # the developer changed a source file since CI built
        echo "version 2" >"$WORK/app/src/main.txt"
        changed=1
    fi
    sed -i "s#registry.example.com#$reg_REG#g" "$block"
    host_var=${machine}_DOCKER_HOST
    rc=0
    (
        cd "$WORK/app" &&
            env PATH="$WORK/bin:$PATH" DOCKER_HOST="${!host_var}" DOCKER_BUILDKIT=1 \
                CACHESYNC_STORE="$WORK/store-$machine" DOCKER_CONFIG="$WORK/docker-$machine" \
                bash -eo pipefail "$block"
    ) >"$WORK/$name.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        sed 's/^/#   /' "$block" >&2
        tail -n 20 "$WORK/$name.log" | sed 's/^/#   > /' >&2
        fail "README block $name exited $rc"
    else
        pass "README block $name ($(head -n 1 "$block" | cut -c1-60)...) runs as written"
    fi
done

# the promise of the quick start: on the fresh machine the dependency steps are CACHED
cat "$WORK"/*.fresh.log >"$WORK/fresh-all.log"
assert_cached "$WORK/fresh-all.log" "RUN sleep 2" "the fresh machine's build reuses the dependency step"
assert_contains "$WORK/fresh-all.log" "CACHED" "the fresh machine's build shows CACHED lines"
