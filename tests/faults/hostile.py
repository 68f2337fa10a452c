#!/usr/bin/env python3
"""hostile.py: hostile inputs and hostile peers for tests/faults/test_hostile.sh, tests only.

Files:
    hostile.py archive KIND OUT       a docker-save archive (archive:FILE for push) with one
                                      hostile trait; KIND: ok dotdot absolute symlink-out
                                      hardlink-out layer-dotdot layer-absolute bad-checksum
                                      bad-size huge-size nested-manifest huge-manifest
                                      big-config nested-config
    hostile.py oci KIND DIR           an OCI layout (oci:DIR for push); KIND: ok
                                      digest-dotdot digest-absolute layer-dotdot blob-symlink-out
                                      blob-dir nested-index huge-index big-manifest big-config
                                      index-loop
Peers (each prints "PORT=n" or "READY" on stdout once listening; one log line per request,
"METHOD PATH authorization=yes|no", to --log):
    hostile.py registry --log F --mode MODE [--cert C --key K] [--realm URL] [--upload-to URL]
        MODE http-realm: every /v2/ request gets 401 with a Bearer challenge whose realm is
                         --realm (an http:// URL given to an https registry)
             huge-manifest, nested-manifest: /v2/ answers 200; every manifest GET answers a
                         9 MiB manifest (over cachesync's 8 MiB cap) or 100000 '[' in a row
             upload-elsewhere: Basic auth (any credentials); blob HEADs 404; upload POSTs
                         answer 202 with Location --upload-to (another host:port)
    hostile.py sink --log F           answers anything 201/200 {} and logs it
    hostile.py daemon --socket S --log F --mode MODE
        A Docker Engine API on a unix socket (a mock: a real dockerd cannot be made to put an
        arbitrary error into its load stream): /_ping, /version (20.10.24, API 1.41), /info,
        image inspect (404), /images/json ([]), and POST /images/load, which reads the whole
        body and answers per MODE: error-line (a progress line, then {"errorDetail":...,
        "error":"..."}), garbage (a line that is not JSON), huge-line (one 3 MiB line),
        endless (progress lines for 8 s, then the connection closes without a result)
"""

import argparse
import hashlib
import http.server
import io
import json
import os
import socket
import socketserver
import ssl
import sys
import tarfile
import threading
import time


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---- files ---------------------------------------------------------------------------------

def tinfo(name, size=0, kind=tarfile.REGTYPE, link=""):
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = kind
    ti.linkname = link
    ti.mtime = 0
    ti.mode = 0o644
    return ti


def small_layer():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        data = b"hostile test\n"
        t.addfile(tinfo("hello.txt", len(data)), io.BytesIO(data))
    return buf.getvalue()


def config_for(layers, extra=None):
    c = {"architecture": "amd64", "os": "linux", "config": {},
         "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]}}
    if extra:
        c.update(extra)
    return json.dumps(c).encode()


def write_tar(out, entries):
    """entries: (TarInfo, bytes or None)."""
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)


def cmd_archive(kind, out):
    layer = small_layer()
    config = config_for([layer])
    cname = sha(config)[7:] + ".json"
    lname = "abc/layer.tar"
    manifest = [{"Config": cname, "RepoTags": ["hostile:1"], "Layers": [lname]}]
    entries = [(tinfo("abc", kind=tarfile.DIRTYPE), None),
               (tinfo(lname, len(layer)), layer),
               (tinfo(cname, len(config)), config)]

    def mj(m):
        data = json.dumps(m).encode()
        return (tinfo("manifest.json", len(data)), data)

    if kind == "ok":
        entries.append(mj(manifest))
    elif kind == "dotdot":
        entries.insert(0, (tinfo("../escape-dotdot", 5), b"owned"))
        entries.append(mj(manifest))
    elif kind == "absolute":
        entries.insert(0, (tinfo("/tmp/cs-hostile-absolute", 5), b"owned"))
        entries.append(mj(manifest))
    elif kind == "symlink-out":
        # the layer named in manifest.json is a symlink to a file outside the archive
        entries = [(tinfo("abc", kind=tarfile.DIRTYPE), None),
                   (tinfo(lname, kind=tarfile.SYMTYPE, link="../../../../../../etc/passwd"), None),
                   (tinfo(cname, len(config)), config), mj(manifest)]
    elif kind == "hardlink-out":
        entries = [(tinfo("abc", kind=tarfile.DIRTYPE), None),
                   (tinfo(lname, kind=tarfile.LNKTYPE, link="/etc/passwd"), None),
                   (tinfo(cname, len(config)), config), mj(manifest)]
    elif kind == "layer-dotdot":
        manifest[0]["Layers"] = ["../../../../etc/passwd"]
        entries.append(mj(manifest))
    elif kind == "layer-absolute":
        manifest[0]["Layers"] = ["/etc/passwd"]
        entries.append(mj(manifest))
    elif kind in ("bad-checksum", "bad-size", "huge-size"):
        entries.append(mj(manifest))
        write_tar(out, entries)
        data = bytearray(open(out, "rb").read())
        # the layer's header: the second 512-byte header (after the "abc" directory)
        h = 512
        assert data[h:h + len(lname)] == lname.encode()
        if kind == "bad-checksum":
            data[h + 148:h + 156] = b"0000000\0"
        else:
            size = b"77777777777\0" if kind == "huge-size" else b"99999999999\0"
            data[h + 124:h + 136] = size
            # keep the checksum right: only the size lies
            if True:
                data[h + 148:h + 156] = b"        "
                s = sum(data[h:h + 512])
                data[h + 148:h + 156] = b"%06o\0 " % s
        open(out, "wb").write(bytes(data))
        return
    elif kind == "nested-manifest":
        data = b"[" * 100000
        entries.append((tinfo("manifest.json", len(data)), data))
    elif kind == "huge-manifest":
        m = [{"Config": cname, "RepoTags": ["hostile:%d" % i for i in range(1)], "Layers": [lname],
              "Padding": "x" * (2 << 20)}]
        entries.append(mj(m))
    elif kind == "big-config":
        config = config_for([layer], {"padding": "x" * (17 << 20)})
        cname = sha(config)[7:] + ".json"
        manifest[0]["Config"] = cname
        entries = [(tinfo("abc", kind=tarfile.DIRTYPE), None), (tinfo(lname, len(layer)), layer),
                   (tinfo(cname, len(config)), config), mj(manifest)]
    elif kind == "nested-config":
        config = b"[" * 100000
        cname = sha(config)[7:] + ".json"
        manifest[0]["Config"] = cname
        entries = [(tinfo("abc", kind=tarfile.DIRTYPE), None), (tinfo(lname, len(layer)), layer),
                   (tinfo(cname, len(config)), config), mj(manifest)]
    else:
        raise SystemExit("unknown archive kind " + kind)
    write_tar(out, entries)


def cmd_oci(kind, d):
    import gzip
    os.makedirs(d + "/blobs/sha256", exist_ok=True)

    def put(data):
        dg = sha(data)
        with open(d + "/blobs/sha256/" + dg[7:], "wb") as f:
            f.write(data)
        return dg

    layer = gzip.compress(small_layer(), mtime=0)
    ld = put(layer)
    config = config_for([small_layer()])
    if kind == "big-config":
        config = config_for([small_layer()], {"padding": "x" * (17 << 20)})
    cd = put(config)
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd,
                      "size": len(config)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": ld, "size": len(layer)}]}
    if kind == "layer-dotdot":
        man["layers"][0]["digest"] = "sha256:../../../../etc/passwd"
    if kind == "big-manifest":
        man["annotations"] = {"padding": "x" * (9 << 20)}
    mbytes = json.dumps(man).encode()
    md = put(mbytes)
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
            "size": len(mbytes), "annotations": {"org.opencontainers.image.ref.name": "v1"}}
    if kind == "digest-dotdot":
        desc["digest"] = "sha256:../../../../../etc/passwd"
    elif kind == "digest-absolute":
        desc["digest"] = "sha256:/etc/passwd"
    elif kind == "blob-symlink-out":
        # the layer blob is a symlink to a file outside DIR holding exactly its bytes
        outside = os.path.dirname(os.path.abspath(d)) + "/outside-" + ld[7:19]
        with open(outside, "wb") as f:
            f.write(layer)
        os.unlink(d + "/blobs/sha256/" + ld[7:])
        os.symlink(outside, d + "/blobs/sha256/" + ld[7:])
    elif kind == "blob-dir":
        os.unlink(d + "/blobs/sha256/" + ld[7:])
        os.mkdir(d + "/blobs/sha256/" + ld[7:])
    elif kind == "index-loop":
        # an index whose only entry is an index that names itself... through its own digest
        # (impossible), so: a chain of nested indexes deeper than any reader should follow
        child = desc
        for _ in range(12):
            idx = json.dumps({"schemaVersion": 2,
                              "mediaType": "application/vnd.oci.image.index.v1+json",
                              "manifests": [dict(child, annotations={}, platform={
                                  "os": "linux", "architecture": "amd64"})]}).encode()
            child = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": put(idx),
                     "size": len(idx)}
        desc = dict(child, annotations={"org.opencontainers.image.ref.name": "v1"})
    index = {"schemaVersion": 2, "manifests": [desc]}
    with open(d + "/oci-layout", "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(d + "/index.json", "wb") as f:
        if kind == "nested-index":
            f.write(b"[" * 100000)
        elif kind == "huge-index":
            f.write(b'{"schemaVersion":2,"manifests":[],"padding":"')
            chunk = b"x" * (1 << 20)
            for _ in range(70):
                f.write(chunk)
            f.write(b'"}')
        else:
            f.write(json.dumps(index).encode())


# ---- peers ---------------------------------------------------------------------------------

class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, line):
        with self.lock:
            self.f.write(line + "\n")


def make_handler(args, log):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def body(self):
            n = int(self.headers.get("Content-Length", "0") or 0)
            if "chunked" in self.headers.get("Transfer-Encoding", ""):
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(n) if n else b""

        def answer(self, code, body=b"", headers=()):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def handle_any(self):
            auth = "yes" if self.headers.get("Authorization") else "no"
            log.write("%s %s authorization=%s" % (self.command, self.path, auth))
            self.body()
            mode = args.mode
            if args.cmd == "sink":
                self.answer(201 if self.command in ("PUT", "POST") else 200, b"{}",
                            [("Docker-Distribution-Api-Version", "registry/2.0")])
                return
            if mode == "http-realm":
                self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', [
                    ("WWW-Authenticate", 'Bearer realm="%s",service="hostile"' % args.realm),
                    ("Docker-Distribution-Api-Version", "registry/2.0")])
                return
            if mode in ("huge-manifest", "nested-manifest"):
                if self.path.rstrip("/") == "/v2":
                    self.answer(200, b"{}")
                elif "/manifests/" in self.path:
                    if mode == "huge-manifest":
                        body = b'{"schemaVersion":2,"padding":"' + b"x" * (9 << 20) + b'"}'
                    else:
                        body = b"[" * 100000
                    self.answer(200, body, [
                        ("Content-Type", "application/vnd.oci.image.manifest.v1+json")])
                else:
                    self.answer(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
                return
            if mode == "upload-elsewhere":
                if not self.headers.get("Authorization"):
                    self.answer(401, b"{}", [("WWW-Authenticate", 'Basic realm="hostile"')])
                elif self.path.rstrip("/") == "/v2":
                    self.answer(200, b"{}")
                elif self.command == "HEAD":
                    self.answer(404)
                elif self.command == "POST" and "/blobs/uploads/" in self.path:
                    self.answer(202, b"", [("Location", args.upload_to),
                                           ("Docker-Upload-UUID", "x")])
                else:
                    self.answer(404, b'{"errors":[{"code":"UNKNOWN"}]}')
                return
            self.answer(404)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any
    return H


class ThreadingUnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def make_daemon_handler(args, log):
    class D(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def address_string(self):
            return "unix"

        def json_answer(self, code, obj, headers=()):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Api-Version", "1.41")
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def handle_any(self):
            path = self.path.split("?")[0]
            log.write("%s %s" % (self.command, self.path))
            p = path
            if p.startswith("/v1."):
                p = "/" + p.split("/", 2)[2]
            if p == "/_ping":
                self.send_response(200)
                self.send_header("Api-Version", "1.41")
                self.send_header("Content-Length", "2")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(b"OK")
            elif p == "/version":
                self.json_answer(200, {"Version": "20.10.24", "ApiVersion": "1.41",
                                       "MinAPIVersion": "1.12", "Os": "linux", "Arch": "amd64"})
            elif p == "/info":
                self.json_answer(200, {"ID": "hostile", "Driver": "overlay2", "DriverStatus": [],
                                       "OSType": "linux", "Architecture": "x86_64",
                                       "ServerVersion": "20.10.24"})
            elif p == "/images/json":
                self.json_answer(200, [])
            elif p.startswith("/images/") and p.endswith("/json"):
                self.json_answer(404, {"message": "No such image"})
            elif p == "/images/load" and self.command == "POST":
                self.load()
            else:
                self.json_answer(404, {"message": "page not found"})

        def load(self):
            # read the whole body (chunked or sized)
            n = 0
            if "chunked" in self.headers.get("Transfer-Encoding", ""):
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    left = size
                    while left:
                        b = self.rfile.read(min(left, 1 << 20))
                        left -= len(b)
                        n += len(b)
                    self.rfile.readline()
            else:
                left = int(self.headers.get("Content-Length", "0"))
                while left:
                    b = self.rfile.read(min(left, 1 << 20))
                    if not b:
                        break
                    left -= len(b)
                    n += len(b)
            log.write("load body %d bytes" % n)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Api-Version", "1.41")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def chunk(data):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            mode = args.mode
            if mode == "error-line":
                chunk(b'{"stream":"Loading layer  1.024kB/1.024kB\\n"}\r\n')
                chunk(b'{"errorDetail":{"message":"hostile daemon: write /var/lib/docker: no '
                      b'space left on device"},"error":"hostile daemon: write /var/lib/docker: '
                      b'no space left on device"}\r\n')
            elif mode == "garbage":
                chunk(b'{"stream":"Loading layer"}\r\n')
                chunk(b"\x00\xff not json at all {{{\r\n")
            elif mode == "huge-line":
                chunk(b'{"stream":"' + b"A" * (3 << 20) + b'"}\r\n')
            elif mode == "endless":
                t0 = time.time()
                try:
                    while time.time() - t0 < 8:
                        chunk(b'{"status":"Loading layer","progressDetail":{"current":1}}\r\n')
                        time.sleep(0.01)
                except OSError:
                    return
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = handle_any
    return D


def serve(args):
    log = Log(args.log)
    if args.cmd == "daemon":
        if os.path.exists(args.socket):
            os.unlink(args.socket)
        srv = ThreadingUnixServer(args.socket, make_daemon_handler(args, log))
        print("READY", flush=True)
    else:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args, log))
        srv.daemon_threads = True
        if getattr(args, "cert", None):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(args.cert, args.key)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        print("PORT=%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "archive":
        cmd_archive(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) >= 2 and sys.argv[1] == "oci":
        cmd_oci(sys.argv[2], sys.argv[3])
        return
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("registry")
    r.add_argument("--log", required=True)
    r.add_argument("--mode", required=True)
    r.add_argument("--cert")
    r.add_argument("--key")
    r.add_argument("--realm", default="")
    r.add_argument("--upload-to", default="")
    s = sub.add_parser("sink")
    s.add_argument("--log", required=True)
    s.add_argument("--mode", default="sink")
    d = sub.add_parser("daemon")
    d.add_argument("--socket", required=True)
    d.add_argument("--log", required=True)
    d.add_argument("--mode", required=True)
    serve(p.parse_args())


if __name__ == "__main__":
    main()
