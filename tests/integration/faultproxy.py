#!/usr/bin/env python3
"""faultproxy.py: a reverse proxy that injects faults into blob downloads, for tests only.

    faultproxy.py --listen-port P --upstream http://127.0.0.1:N [--log FILE]
                  [--rate BYTES_PER_S] [--corrupt-blob DIGEST]
                  [--truncate-blob DIGEST:AFTER_BYTES] [--reset-blob DIGEST:AFTER_BYTES]
                  [--status-burst CODE:COUNT[:DIGEST]]

Listens on 127.0.0.1:P (P 0: any free port; the first line on stdout is then "PORT=n") and
forwards every request to the upstream registry as it came: method, path, query, headers
(except hop-by-hop ones; Host is kept, so the registry's Location headers name the proxy),
body. The answer is streamed back, status and headers as they are (redirects are not
followed). Range requests pass through unchanged (the registry answers 206).

Faults touch only the bodies of GET /v2/<name>/blobs/<digest>:
  --rate N                throttle each such body to N bytes/s
  --corrupt-blob D        flip one byte (the one at offset size/2 of the blob, wherever the
                          response starts), keeping the length
  --truncate-blob D:N     on the first GET of D: send N body bytes, then close the connection
                          cleanly (FIN), although Content-Length announced more
  --reset-blob D:N        on the first GET of D: send N body bytes, then abort the connection
                          with a TCP reset (SO_LINGER 0)
  --status-burst C:K[:D]  answer the first K blob GETs (of digest D if given, else of any
                          blob) with status C and no upstream request (Retry-After: 1 for
                          429 and 503)
The corrupt, truncate and reset options can be repeated for several digests.

One line per request goes to --log FILE (default stdout), flushed at once:
    METHOD PATH range=RANGE|- status=S bytes=BODY_BYTES_SENT [fault=...]
Binds loopback only. Not a product: no TLS, no upstream connection reuse.
"""

import argparse
import http.client
import http.server
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
BLOB_PATH = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
CHUNK = 64 * 1024


def digest_and_count(spec):
    digest, sep, n = spec.rpartition(":")
    if not sep or not digest.startswith("sha256:") or not n.isdigit():
        raise argparse.ArgumentTypeError(f"expected sha256:HEX:BYTES, got {spec!r}")
    return digest, int(n)


def code_and_count(spec):
    code, sep, rest = spec.partition(":")
    n, _, digest = rest.partition(":")
    if not sep or not code.isdigit() or not n.isdigit() or \
            (digest and not digest.startswith("sha256:")):
        raise argparse.ArgumentTypeError(f"expected CODE:COUNT[:DIGEST], got {spec!r}")
    return int(code), int(n), digest or None


class State:
    """What the faults remember across requests."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.burst_left = args.status_burst[1] if args.status_burst else 0
        self.seen = set()  # digests GET before (for the first-request-only faults)
        self.log_lock = threading.Lock()
        self.log = open(args.log, "a", buffering=1) if args.log else sys.stdout

    def first_get(self, digest):
        with self.lock:
            first = digest not in self.seen
            self.seen.add(digest)
            return first

    def take_burst(self, digest):
        only = self.args.status_burst[2] if self.args.status_burst else None
        with self.lock:
            if self.burst_left > 0 and only in (None, digest):
                self.burst_left -= 1
                return True
            return False

    def write_log(self, line):
        with self.log_lock:
            self.log.write(line + "\n")
            self.log.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"
    state = None  # set in main

    def log_message(self, fmt, *args):  # BaseHTTPRequestHandler's own log: not wanted
        pass

    def do_request(self):
        st = self.state
        self.sent = 0
        self.fault = None
        self.status = 0
        try:
            self.forward(st)
        finally:
            line = "%s %s range=%s status=%d bytes=%d" % (
                self.command,
                self.path,
                self.headers.get("Range", "-").replace(" ", ""),
                self.status,
                self.sent,
            )
            if self.fault:
                line += " fault=" + self.fault
            st.write_log(line)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_request

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n else None

    def send_plain(self, code, body, extra=()):
        data = body.encode()
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
            self.sent = len(data)
        self.status = code

    def forward(self, st):
        args = st.args
        path_only = urllib.parse.urlsplit(self.path).path
        m = BLOB_PATH.match(path_only) if self.command == "GET" else None
        digest = m.group(2) if m else None

        if digest and st.take_burst(digest):
            code = args.status_burst[0]
            self.fault = "status"
            extra = [("Retry-After", "1")] if code in (429, 503) else []
            self.send_plain(code, '{"errors":[{"code":"UNAVAILABLE","message":"faultproxy"}]}',
                            extra)
            return

        first = st.first_get(digest) if digest else False  # among those forwarded
        body = self.read_body()
        up = urllib.parse.urlsplit(args.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            self.send_plain(502, '{"errors":[{"code":"UNAVAILABLE","message":"upstream: %s"}]}'
                            % str(e).replace('"', "'"))
            return

        try:
            self.relay(st, resp, digest, first)
        finally:
            conn.close()

    def relay(self, st, resp, digest, first):
        args = st.args
        length = resp.getheader("Content-Length")
        self.send_response_only(resp.status, resp.reason)  # Server, Date: upstream's
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        has_body = self.command != "HEAD" and resp.status not in (204, 304) and \
            not 100 <= resp.status < 200
        if has_body and length is None:
            self.send_header("Connection", "close")  # end of body = end of connection
            self.close_connection = True
        self.end_headers()
        self.status = resp.status
        if not has_body:
            return

        # Where this body sits in the blob, for --corrupt-blob.
        start, total = 0, int(length) if length is not None else -1
        cr = resp.getheader("Content-Range")
        if cr:
            mm = re.match(r"bytes (\d+)-\d+/(\d+)", cr)
            if mm:
                start, total = int(mm.group(1)), int(mm.group(2))
        blob_ok = digest is not None and resp.status in (200, 206)
        flip_at = -1
        if blob_ok and digest in args.corrupt_blob and total > 0:
            flip_at = total // 2 - start  # index within this body; may be outside it
        cut, cut_kind = -1, None
        if blob_ok and first:
            if digest in args.truncate_blob:
                cut, cut_kind = args.truncate_blob[digest], "truncate"
            elif digest in args.reset_blob:
                cut, cut_kind = args.reset_blob[digest], "reset"
        rate = args.rate if blob_ok else 0

        t0 = time.monotonic()
        while True:
            want = CHUNK if cut < 0 else min(CHUNK, cut - self.sent)
            data = resp.read(want) if want > 0 else b""
            if not data:
                break
            if 0 <= flip_at - self.sent < len(data):
                i = flip_at - self.sent
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                self.fault = "corrupt@%d" % (start + flip_at)
            try:
                self.wfile.write(data)
            except OSError:
                self.close_connection = True
                return
            self.sent += len(data)
            if rate > 0:
                ahead = self.sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        if cut_kind is None:
            return
        self.fault = "%s@%d" % (cut_kind, self.sent)
        self.close_connection = True
        if cut_kind == "reset":
            # SO_LINGER {on, 0}: close() sends RST instead of FIN. rfile holds a reference
            # to the socket; close it first so that close() really closes.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        # truncate: returning with close_connection set ends it with shutdown + close (FIN)


def main():
    p = argparse.ArgumentParser(description="fault-injecting reverse proxy for tests")
    p.add_argument("--listen-port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="http://127.0.0.1:N")
    p.add_argument("--log", help="log file (default stdout)")
    p.add_argument("--rate", type=int, default=0, help="bytes/s per blob body")
    p.add_argument("--corrupt-blob", action="append", default=[], metavar="DIGEST")
    p.add_argument("--truncate-blob", action="append", default=[], type=digest_and_count,
                   metavar="DIGEST:AFTER_BYTES")
    p.add_argument("--reset-blob", action="append", default=[], type=digest_and_count,
                   metavar="DIGEST:AFTER_BYTES")
    p.add_argument("--status-burst", type=code_and_count, metavar="CODE:COUNT[:DIGEST]")
    args = p.parse_args()
    if not args.upstream.startswith("http://"):
        p.error("--upstream must be http://HOST:PORT")
    args.truncate_blob = dict(args.truncate_blob)
    args.reset_blob = dict(args.reset_blob)
    args.corrupt_blob = set(args.corrupt_blob)

    Handler.state = State(args)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.listen_port), Handler)
    srv.daemon_threads = True
    if args.listen_port == 0:
        sys.stdout.write("PORT=%d\n" % srv.server_address[1])
        sys.stdout.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
