#!/usr/bin/env python3
"""redirectproxy.py: a registry front that sends blob downloads to another host, for tests only.

    redirectproxy.py --upstream http://127.0.0.1:N --upstream-user USER:PASS --log FILE
                     [--front-host 127.0.0.1] [--blob-host 127.0.0.2] [--status 307]

The way registries backed by object storage (S3, GCS, Azure; Docker Hub's CDN) answer blob
downloads: the registry checks the client's credentials, then redirects it to a storage URL
on another host that needs no registry credentials (a signed URL). A client must follow the
redirect without taking the registry's Authorization header along.

Two listeners, on ports of their choosing (the first line on stdout is
"FRONT=HOST:PORT BLOBS=HOST:PORT"):
  front  (--front-host): forwards every request to the upstream registry as it came (method,
         path, query, headers but hop-by-hop ones, Host kept, body), and relays the answer,
         except GET /v2/<name>/blobs/<digest>: that one is checked with a HEAD to the
         registry carrying the client's headers; on any answer but 200 the GET goes to the
         registry and its answer is relayed (the 401 challenge among them); a 200 becomes
         --status (307) with
         Location: http://BLOBS/blobs/<name>/<digest>.
  blobs  (--blob-host, a different host): GET or HEAD /blobs/<name>/<digest> fetches the
         blob from the registry itself with --upstream-user's Basic credentials (a Range
         header is passed on) and serves it.

Every request either listener gets is logged to --log as one JSON line:
    {"listener": "front"|"blobs", "method", "path", "status", "headers": {name: value}}
with header names in lower case; an Authorization (or Cookie) value is logged as its scheme
and "<redacted>" only, so the log shows whether one came, never the secret.
Binds loopback only. Not a product: no TLS, no upstream connection reuse, request bodies
only with a Content-Length.
"""

import argparse
import base64
import http.client
import http.server
import json
import re
import sys
import threading
import urllib.parse

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade",
}
BLOB_PATH = re.compile(r"^/v2/(.+)/blobs/([a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$")
CHUNK = 1 << 16


class State:
    def __init__(self, args):
        u = urllib.parse.urlsplit(args.upstream)
        if u.scheme != "http" or not u.hostname:
            raise SystemExit("redirectproxy: --upstream must be http://HOST:PORT")
        self.up_host = u.hostname
        self.up_port = u.port or 80
        self.up_netloc = u.netloc
        self.basic = "Basic " + base64.b64encode(args.upstream_user.encode()).decode()
        self.status = args.status
        self.blobs_netloc = None  # set once the blob listener is bound
        self.log_file = open(args.log, "a", encoding="utf-8")
        self.lock = threading.Lock()

    def log(self, listener, handler, status):
        headers = {}
        for k, v in handler.headers.items():
            k = k.lower()
            if k in ("authorization", "cookie"):
                v = v.split(" ", 1)[0] + " <redacted>"
            headers[k] = v
        line = json.dumps({"listener": listener, "method": handler.command,
                           "path": handler.path, "status": status, "headers": headers})
        with self.lock:
            self.log_file.write(line + "\n")
            self.log_file.flush()


class Base(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None  # set in main
    listener = ""
    logged = False

    def answer(self, status, reason=None):
        """Start the answer STATUS and log the request first: the line is in the log before
        the client can see the end of the answer, so a test reading the log right after its
        client returns finds it."""
        self.state.log(self.listener, self, status)
        self.logged = True
        self.send_response(status, reason)

    def log_message(self, format, *args):  # noqa: A002 - keep stderr quiet
        pass

    def upstream(self, method, path, headers, body=None):
        conn = http.client.HTTPConnection(self.state.up_host, self.state.up_port, timeout=60)
        conn.request(method, path, body=body, headers=headers)
        return conn, conn.getresponse()

    def relay(self, resp, conn):
        """Send RESP (an http.client response) to the client, body streamed."""
        self.answer(resp.status, resp.reason)
        length = None
        for k, v in resp.getheaders():
            if k.lower() in HOP_BY_HOP:
                continue
            if k.lower() == "content-length":
                length = v
            self.send_header(k, v)
        chunked = length is None and self.command != "HEAD" and resp.status not in (204, 304)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command != "HEAD":
            while True:
                data = resp.read(CHUNK)
                if not data:
                    break
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                else:
                    self.wfile.write(data)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        conn.close()
        return resp.status

    def request_headers(self):
        return {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}


class Front(Base):
    listener = "front"

    def handle_any(self):
        self.logged = False
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = self.request_headers()
            m = BLOB_PATH.match(urllib.parse.urlsplit(self.path).path)
            if self.command == "GET" and m:
                conn, resp = self.upstream("HEAD", self.path, headers)
                if resp.status == 200:
                    resp.read()
                    conn.close()
                    loc = f"http://{self.state.blobs_netloc}/blobs/{m.group(1)}/{m.group(2)}"
                    self.answer(self.state.status)
                    self.send_header("Location", loc)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                # a HEAD answer has no body: relay the registry's own answer to the GET
                resp.read()
                conn.close()
            conn, resp = self.upstream(self.command, self.path, headers, body)
            self.relay(resp, conn)
        finally:
            if not self.logged:  # failed before answering
                self.state.log(self.listener, self, 0)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


class Blobs(Base):
    listener = "blobs"

    def handle_any(self):
        self.logged = False
        try:
            m = re.match(r"^/blobs/(.+)/([^/]+)$", urllib.parse.urlsplit(self.path).path)
            if self.command not in ("GET", "HEAD") or not m:
                self.answer(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            # what a signed URL is: access without the client's registry credentials
            headers = {"Authorization": self.state.basic, "Host": self.state.up_netloc}
            if self.headers.get("Range"):
                headers["Range"] = self.headers["Range"]
            conn, resp = self.upstream(self.command, f"/v2/{m.group(1)}/blobs/{m.group(2)}",
                                       headers)
            self.relay(resp, conn)
        finally:
            if not self.logged:
                self.state.log(self.listener, self, 0)

    do_GET = do_HEAD = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False


def main():
    ap = argparse.ArgumentParser(description="registry front redirecting blob downloads")
    ap.add_argument("--upstream", required=True, help="http://HOST:PORT of the registry")
    ap.add_argument("--upstream-user", required=True, help="USER:PASS for the blob host")
    ap.add_argument("--log", required=True)
    ap.add_argument("--front-host", default="127.0.0.1")
    ap.add_argument("--blob-host", default="127.0.0.2")
    ap.add_argument("--status", type=int, default=307, choices=(301, 302, 303, 307, 308))
    args = ap.parse_args()

    state = State(args)
    Front.state = state
    Blobs.state = state
    front = Server((args.front_host, 0), Front)
    blobs = Server((args.blob_host, 0), Blobs)
    state.blobs_netloc = f"{args.blob_host}:{blobs.server_address[1]}"
    threading.Thread(target=blobs.serve_forever, daemon=True).start()
    sys.stdout.write(f"FRONT={args.front_host}:{front.server_address[1]} "
                     f"BLOBS={state.blobs_netloc}\n")
    sys.stdout.flush()
    try:
        front.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
