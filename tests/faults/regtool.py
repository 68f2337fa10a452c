#!/usr/bin/env python3
"""regtool.py: images and hostile inputs for the fault tests, made without a Docker build.

    regtool.py image URL REPO TAG [--seed N] [--busybox] [--random BYTES]... [--text PATH=TEXT]...
                                  [--compression gzip|zstd|none] [--oci] [--bad-diff-id I]
        Makes one layer per --busybox (a busybox rootfs from /bin/busybox), --random (a file of
        BYTES random bytes drawn from the seed, one layer each) and --text (small files, one
        layer for all of them), gzip'ed deterministically (mtime 0), a config naming their
        diff_ids, and pushes them with the registry API (monolithic POST+PUT uploads), then
        the manifest as REPO:TAG. Prints one JSON object: manifest, config, media_type,
        layers [{digest, size, diff_id}], size (bytes of all blobs).
    regtool.py put-blob URL REPO FILE             -> prints the digest
    regtool.py put-manifest URL REPO REF TYPE FILE
    regtool.py bomb-layer OUT.tar.(gz|zst) MIB    a tar holding one file of MIB MiB of zeros,
                                                  compressed (gzip -1 | zstd -19 --long): prints
                                                  {"digest", "size", "diff_id"} of the result
    regtool.py layout DIR URL REPO TAG            write an OCI layout of REPO:TAG (from the
                                                  registry; layers as they are)

Pushes go to the registry directly (http only, no auth). Used by tests/faults/*.sh.
"""

import gzip
import hashlib
import http.client
import io
import json
import os
import platform
import random
import subprocess
import sys
import tarfile
import urllib.parse

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
             "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
             "none": "application/vnd.oci.image.layer.v1.tar"}


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def request(url, method, path, body=None, headers=None):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
    finally:
        conn.close()


def put_blob(url, repo, data):
    digest = sha(data)
    st, _, _ = request(url, "HEAD", "/v2/%s/blobs/%s" % (repo, digest))
    if st == 200:
        return digest
    st, hdrs, body = request(url, "POST", "/v2/%s/blobs/uploads/" % repo,
                             headers={"Content-Length": "0"})
    if st != 202:
        raise SystemExit("POST upload: HTTP %d %s" % (st, body[:200]))
    loc = hdrs["location"]
    lu = urllib.parse.urlsplit(loc)
    path = lu.path + "?" + (lu.query + "&" if lu.query else "") + "digest=" + digest
    st, _, body = request(url, "PUT", path, body=data,
                          headers={"Content-Type": "application/octet-stream",
                                   "Content-Length": str(len(data))})
    if st != 201:
        raise SystemExit("PUT blob %s: HTTP %d %s" % (digest, st, body[:200]))
    return digest


def put_manifest(url, repo, ref, media_type, data):
    st, _, body = request(url, "PUT", "/v2/%s/manifests/%s" % (repo, ref), body=data,
                          headers={"Content-Type": media_type,
                                   "Content-Length": str(len(data))})
    if st != 201:
        raise SystemExit("PUT manifest %s: HTTP %d %s" % (ref, st, body[:300]))
    return sha(data)


def tar_of(entries):
    """entries: (name, bytes | None for a dir | ("symlink", target))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, content in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            if content is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                t.addfile(ti)
            elif isinstance(content, tuple):
                ti.type = tarfile.SYMTYPE
                ti.linkname = content[1]
                ti.mode = 0o777
                t.addfile(ti)
            else:
                ti.size = len(content)
                ti.mode = 0o755
                t.addfile(ti, io.BytesIO(content))
    return buf.getvalue()


def compress(data, how):
    if how == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-3", "-c"], input=data, check=True,
                              stdout=subprocess.PIPE).stdout
    return data


def cmd_image(argv):
    import argparse
    p = argparse.ArgumentParser(prog="regtool.py image")
    p.add_argument("url")
    p.add_argument("repo")
    p.add_argument("tag")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--busybox", action="store_true")
    p.add_argument("--random", type=int, action="append", default=[])
    p.add_argument("--text", action="append", default=[])
    p.add_argument("--compression", default="gzip", choices=["gzip", "zstd", "none"])
    p.add_argument("--oci", action="store_true")
    p.add_argument("--bad-diff-id", type=int, action="append", default=[],
                   help="give layer I a wrong diff_id in the config")
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    tars = []
    if a.busybox:
        bb = open("/bin/busybox", "rb").read()
        ents = [("bin", None), ("bin/busybox", bb), ("tmp", None)]
        for x in ("sh", "ls", "cat", "echo", "mkdir", "cp", "dd", "sleep", "true", "sha256sum"):
            ents.append(("bin/" + x, ("symlink", "busybox")))
        tars.append(tar_of(ents))
    for i, n in enumerate(a.random):
        tars.append(tar_of([("data", None), ("data/random-%d.bin" % i, rng.randbytes(n))]))
    if a.text:
        ents = []
        for spec in a.text:
            path, _, text = spec.partition("=")
            ents.append((path.lstrip("/"), text.encode()))
        tars.append(tar_of(ents))
    if a.oci or a.compression != "gzip":
        mt_manifest, mt_config, mt_layer = OCI_MANIFEST, OCI_CONFIG, OCI_LAYER[a.compression]
    else:
        mt_manifest, mt_config, mt_layer = DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER
    layers = []
    total = 0
    for i, t in enumerate(tars):
        blob = compress(t, a.compression)
        d = put_blob(a.url, a.repo, blob)
        diff = sha(t) if i not in a.bad_diff_id else sha(t + b"x")
        layers.append({"digest": d, "size": len(blob), "diff_id": diff})
        total += len(blob)
    config = {
        "architecture": arch(), "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": {"seed": str(a.seed)}},
        "rootfs": {"type": "layers", "diff_ids": [x["diff_id"] for x in layers]},
        "history": [{"created_by": "regtool layer %d" % i} for i in range(len(layers))],
        "created": "1970-01-01T00:00:00Z",
    }
    cbytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    cd = put_blob(a.url, a.repo, cbytes)
    total += len(cbytes)
    manifest = {
        "schemaVersion": 2, "mediaType": mt_manifest,
        "config": {"mediaType": mt_config, "digest": cd, "size": len(cbytes)},
        "layers": [{"mediaType": mt_layer, "digest": x["digest"], "size": x["size"]}
                   for x in layers],
    }
    mbytes = json.dumps(manifest, indent=3).encode()
    md = put_manifest(a.url, a.repo, a.tag, mt_manifest, mbytes)
    total += len(mbytes)
    print(json.dumps({"manifest": md, "config": cd, "media_type": mt_manifest,
                      "layers": layers, "size": total}))


def cmd_bomb(argv):
    out, mib = argv[0], int(argv[1])
    # tar header for one file of MIB MiB, then the zeros, then the end blocks: streamed
    ti = tarfile.TarInfo("zeros")
    ti.size = mib << 20
    ti.mtime = 0
    ti.mode = 0o644
    header = ti.tobuf(format=tarfile.USTAR_FORMAT)
    h = hashlib.sha256()
    if out.endswith(".gz"):
        cmd = ["gzip", "-1", "-c"]
    else:
        cmd = ["zstd", "-q", "-3", "-c"]
    with open(out, "wb") as f:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=f)
        zero = bytes(1 << 20)
        proc.stdin.write(header)
        h.update(header)
        for _ in range(mib):
            proc.stdin.write(zero)
            h.update(zero)
        proc.stdin.write(bytes(1024))
        h.update(bytes(1024))
        proc.stdin.close()
        if proc.wait() != 0:
            raise SystemExit("compressor failed")
    data = open(out, "rb").read()
    print(json.dumps({"digest": sha(data), "size": len(data), "diff_id": "sha256:" + h.hexdigest()}))


def cmd_layout(argv):
    out, url, repo, tag = argv
    acc = ", ".join([DOCKER_MANIFEST, OCI_MANIFEST])
    st, hdrs, m = request(url, "GET", "/v2/%s/manifests/%s" % (repo, tag), headers={"Accept": acc})
    if st != 200:
        raise SystemExit("GET manifest: HTTP %d" % st)
    man = json.loads(m)
    os.makedirs(out + "/blobs/sha256", exist_ok=True)

    def keep(data):
        d = sha(data)
        with open(out + "/blobs/sha256/" + d[7:], "wb") as f:
            f.write(data)
        return d

    md = keep(m)
    for desc in [man["config"]] + man["layers"]:
        st, _, b = request(url, "GET", "/v2/%s/blobs/%s" % (repo, desc["digest"]))
        if st != 200:
            raise SystemExit("GET blob: HTTP %d" % st)
        keep(b)
    with open(out + "/oci-layout", "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": hdrs.get("content-type", man.get("mediaType")), "digest": md,
        "size": len(m), "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    with open(out + "/index.json", "w") as f:
        json.dump(index, f)
    print(json.dumps({"manifest": md}))


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "image":
        cmd_image(argv)
    elif cmd == "put-blob":
        print(put_blob(argv[0], argv[1], open(argv[2], "rb").read()))
    elif cmd == "put-manifest":
        print(put_manifest(argv[0], argv[1], argv[2], argv[3], open(argv[4], "rb").read()))
    elif cmd == "bomb-layer":
        cmd_bomb(argv)
    elif cmd == "layout":
        cmd_layout(argv)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
