#!/usr/bin/env python3
"""faultproxy.py: a reverse proxy that injects faults into blob downloads, for tests only.

    faultproxy.py --listen-port P --upstream http://127.0.0.1:N [--log FILE]
                  [--rate BYTES_PER_S] [--corrupt-blob DIGEST]
                  [--truncate-blob DIGEST:AFTER_BYTES] [--reset-blob DIGEST:AFTER_BYTES]
                  [--truncate-always]
                  [--status-burst CODE:COUNT[:DIGEST]] [--burst-on KIND] [--retry-after V]
                  [--stall-blob DIGEST:AFTER_BYTES:SECONDS] [--length-lie DIGEST:DELTA[:always]]
                  [--pad-blob DIGEST:BYTES] [--corrupt-manifest REF]
                  [--substitute-manifest ASKED=SERVED]
                  [--rate-up BYTES_PER_S] [--drop-upload-after BYTES] [--expire-tokens]

Listens on 127.0.0.1:P (P 0: any free port; the first line on stdout is then "PORT=n") and
forwards every request to the upstream registry as it came: method, path, query, headers
(except hop-by-hop ones; Host is kept, so the registry's Location headers name the proxy),
body. Request bodies are streamed as they came: with their Content-Length, or chunked
(Transfer-Encoding: chunked, chunk for chunk). When the upstream answers before it has read
the whole body (a registry refusing an expired token does), the proxy stops sending, relays the
answer and closes the client connection after it, the way a real server does. The answer is
streamed back, status and headers as they are (redirects are not followed). Range requests
pass through unchanged (the registry answers 206).

Faults touch only the bodies of GET /v2/<name>/blobs/<digest>:
  --rate N                throttle each such body to N bytes/s
  --corrupt-blob D        flip one byte (the one at offset size/2 of the blob, wherever the
                          response starts), keeping the length
  --truncate-blob D:N     on the first GET of D: send N body bytes, then close the connection
                          cleanly (FIN), although Content-Length announced more
  --reset-blob D:N        on the first GET of D: send N body bytes, then abort the connection
                          with a TCP reset (SO_LINGER 0)
  --truncate-always       the two above on every GET of D: each body is cut where byte N of
                          the blob would come (a resumed GET from N or later gets no byte)
  --status-burst C:K[:D]  answer the first K blob GETs (of digest D if given, else of any
                          blob) with status C and no upstream request (Retry-After: 1 for
                          429 and 503, see --retry-after)
  --burst-on KIND         what --status-burst answers: blob (the default: blob GETs), manifest
                          (manifest GETs, HEADs and PUTs), manifest-put (manifest PUTs only),
                          upload (POST/PATCH/PUT of blob uploads;
                          their body is read and dropped), head (blob HEADs), any (every
                          request but GET /v2/)
  --retry-after V         the Retry-After value sent with a 429 or 503 burst (default 1);
                          "none" sends none; an HTTP-date or any other text is sent as it is
  --stall-blob D:N:S      on the first GET of D: send N body bytes, then hold the connection
                          silent S seconds (no byte, no close), then send the rest
  --length-lie D:DELTA[:always]
                          Content-Length declares DELTA bytes more (+N) or fewer (-N) than the
                          body the proxy sends: +N sends the whole body and closes the
                          connection while N bytes are still announced; -N announces N bytes
                          fewer but sends the whole body (the client reads what was announced,
                          the rest spills into the connection, which is then closed). On the
                          first GET of D only, or on every GET with ":always"
  --pad-blob D:N          append N bytes (0x00) to every body of D, with a Content-Length (and
                          Content-Range) that counts them: a blob longer than its descriptor
  --corrupt-manifest R    flip one byte (the middle one) of the body of GET
                          /v2/<name>/manifests/R (R a tag or digest), keeping the registry's
                          headers (Docker-Content-Digest included)
  --substitute-manifest A=S
                          answer GET/HEAD /v2/<name>/manifests/A (tag or digest) with the
                          registry's answer for S (another valid manifest of the same
                          repository); when A is a digest, Docker-Content-Digest claims A
The corrupt, truncate, reset, stall, length-lie, pad and manifest options can be repeated.

Control: GET /__faultproxy/set?rate=N&rate_up=N changes the rates from now on (0: none),
answered 200 by the proxy itself; GET /__faultproxy/stats answers counters as JSON
({"requests": n, "faults": {kind: n}}).

Upload faults touch only the request bodies of PUT and PATCH /v2/<name>/blobs/uploads/...:
  --rate-up N             throttle each such body to N bytes/s on its way to the registry
  --drop-upload-after N   once: after N body bytes of an upload went to the registry, abort
                          both connections (TCP reset to the client and to the registry), like
                          a registry that died in the middle of the upload

  --expire-tokens         answer 401 with the registry's Bearer challenge (realm and service
                          from the registry's own GET /v2/, scope for the request's repository)
                          to any request whose Bearer token (a JWT) is past its exp claim,
                          without forwarding it and before reading its body. docker-registry
                          accepts tokens until exp + 60 s (distribution's token.Leeway); this
                          makes a short --token-expires-in bite at once, as on registries
                          that allow no skew

One line per request goes to --log FILE (default stdout), flushed at once:
    METHOD PATH range=RANGE|- status=S bytes=BODY_BYTES_SENT [up=N] [crange=C] [note=...]
        [fault=...] t=START
up: request body bytes forwarded (requests with a body); crange: the request's
Content-Range; note=early-response (the registry answered before the whole body) or
note=upstream-error:... (the registry connection broke during the body: the client
connection is then reset too). status=0: no answer was relayed. t: when the request came
(seconds since the epoch).
Binds loopback only. Not a product: no TLS, no upstream connection reuse.
"""

import argparse
import base64
import http.client
import http.server
import json
import re
import select
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
UPLOAD_PATH = re.compile(r"^/v2/(.+)/blobs/uploads/")
REPO_PATH = re.compile(r"^/v2/(.+?)/(?:blobs|manifests|tags|referrers)/")
CHUNK = 64 * 1024
UPSTREAM_TIMEOUT = 60
LINGER = 3  # seconds to drain a client's unread body after an early answer


MANIFEST_PATH = re.compile(r"^/v2/(.+)/manifests/([^/]+)$")
BLOB_ANY_PATH = re.compile(r"^/v2/(.+)/blobs/([^/]+)$")
STALL_SLICE = 0.2  # seconds between checks that a stalled client is still there


class UpstreamAnswered(Exception):
    """The upstream socket became readable while the request body was still being sent."""


class ClientGone(Exception):
    """The client's request body ended early or its connection broke."""


def digest_and_count(spec):
    digest, sep, n = spec.rpartition(":")
    if not sep or not digest.startswith("sha256:") or not n.isdigit():
        raise argparse.ArgumentTypeError(f"expected sha256:HEX:BYTES, got {spec!r}")
    return digest, int(n)


def digest_count_secs(spec):
    head, sep, secs = spec.rpartition(":")
    try:
        digest, n = digest_and_count(head)
        return digest, (n, float(secs))
    except (argparse.ArgumentTypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected sha256:HEX:BYTES:SECONDS, got {spec!r}")


def length_lie(spec):
    always = spec.endswith(":always")
    if always:
        spec = spec[:-len(":always")]
    digest, sep, delta = spec.rpartition(":")
    if not sep or not digest.startswith("sha256:") or not re.fullmatch(r"[+-][0-9]+", delta) \
            or int(delta) == 0:
        raise argparse.ArgumentTypeError(f"expected sha256:HEX:(+|-)N[:always], got {spec!r}")
    return digest, (int(delta), always)


def asked_and_served(spec):
    a, sep, b = spec.partition("=")
    if not sep or not a or not b or "/" in a or "/" in b:
        raise argparse.ArgumentTypeError(f"expected ASKED=SERVED, got {spec!r}")
    return a, b


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
        self.drop_left = 1 if args.drop_upload_after is not None else 0
        self.challenge = None  # the upstream's Bearer challenge (realm, service), for 401s
        self.log_lock = threading.Lock()
        self.log = open(args.log, "a", buffering=1) if args.log else sys.stdout
        self.rate = args.rate
        self.rate_up = args.rate_up
        self.requests = 0
        self.faults = {}

    def count(self, fault):
        kind = fault.split("@")[0] if fault else None
        with self.lock:
            self.requests += 1
            if kind:
                self.faults[kind] = self.faults.get(kind, 0) + 1

    def first_get(self, digest):
        with self.lock:
            first = digest not in self.seen
            self.seen.add(digest)
            return first

    def take_burst(self, digest):
        only = self.args.status_burst[2] if self.args.status_burst else None
        with self.lock:
            if self.burst_left > 0 and (only is None or only == digest):
                self.burst_left -= 1
                return True
            return False

    def take_drop(self):
        with self.lock:
            if self.drop_left > 0:
                self.drop_left -= 1
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
        self.up = None  # request body bytes forwarded, for requests with a body
        self.note = None
        self.control = False
        t_start = time.time()
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
            if self.up is not None:
                line += " up=%d" % self.up
            if self.headers.get("Content-Range"):
                line += " crange=" + self.headers.get("Content-Range").replace(" ", "")
            if self.note:
                line += " note=" + self.note
            if self.fault:
                line += " fault=" + self.fault
            line += " t=%.3f" % t_start
            if not self.control:
                st.count(self.fault)
                st.write_log(line)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_request

    def has_body(self):
        return self.chunked() or self.headers.get("Content-Length") is not None

    def chunked(self):
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def body_pieces(self):
        """The request body as it came: ("frame", bytes) for chunked framing, ("data", bytes)
        for body bytes, at most CHUNK at a time. Raises ClientGone if it ends early."""
        rf = self.rfile

        def data(n):
            while n > 0:
                b = rf.read1(min(CHUNK, n))
                if not b:
                    raise ClientGone("client body ended early")
                n -= len(b)
                yield ("data", b)

        if self.chunked():
            while True:
                line = rf.readline(1024)
                if not line.endswith(b"\n"):
                    raise ClientGone("bad chunk size line")
                size = int(line.split(b";")[0].strip(), 16)
                yield ("frame", line)
                if size == 0:
                    while True:  # trailers, then the empty line
                        t = rf.readline(8192)
                        if not t:
                            raise ClientGone("client body ended in the trailers")
                        yield ("frame", t)
                        if t in (b"\r\n", b"\n"):
                            return
                yield from data(size)
                crlf = rf.readline(16)
                if crlf not in (b"\r\n", b"\n"):
                    raise ClientGone("bad chunk end")
                yield ("frame", crlf)
        else:
            yield from data(int(self.headers.get("Content-Length", "0").strip() or 0))

    def drain_body(self):
        """Read and drop the request body (the request is answered without the upstream)."""
        try:
            for _ in self.body_pieces():
                pass
        except (ClientGone, OSError, ValueError):
            self.close_connection = True

    def abort_client(self):
        """Close the client connection with a TCP reset (SO_LINGER 0)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            # rfile holds a reference to the socket; close it first so that close() closes
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def linger_client(self):
        """After an answer given before the whole body was read: end our side, then read
        (and drop) what the client still sends for a while, so that closing does not reset
        the connection under the answer."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER
            while time.monotonic() < deadline:
                self.connection.settimeout(max(0.05, deadline - time.monotonic()))
                if not self.rfile.read1(CHUNK):
                    break
        except OSError:
            pass

    def token_expired(self):
        """Whether the request carries a Bearer JWT whose exp has passed."""
        authz = self.headers.get("Authorization", "")
        if not authz.lower().startswith("bearer "):
            return False
        parts = authz[7:].strip().split(".")
        if len(parts) != 3:
            return False
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            return time.time() >= float(claims["exp"])
        except (ValueError, KeyError, TypeError):
            return False

    def upstream_challenge(self, st):
        """The upstream's WWW-Authenticate for GET /v2/ without credentials (cached)."""
        with st.lock:
            if st.challenge is not None:
                return st.challenge
        up = urllib.parse.urlsplit(st.args.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.request("GET", "/v2/")
            resp = conn.getresponse()
            resp.read()
            chal = resp.getheader("WWW-Authenticate") or ""
        except OSError:
            chal = ""
        finally:
            conn.close()
        if chal:
            with st.lock:
                st.challenge = chal
        return chal

    def refuse_expired(self, st):
        """401 for an expired token, the registry's way, without reading the body."""
        chal = self.upstream_challenge(st)
        m = REPO_PATH.match(urllib.parse.urlsplit(self.path).path)
        if chal and m:
            # as distribution's appendAccessRecords has it
            actions = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(self.command,
                                                                              "pull,push")
            chal += ',scope="repository:%s:%s"' % (m.group(1), actions)
        extra = [("WWW-Authenticate", chal)] if chal else []
        if self.has_body():
            extra.append(("Connection", "close"))
            self.close_connection = True
        self.fault = "expired-token"
        self.send_plain(401, '{"errors":[{"code":"UNAUTHORIZED","message":"authentication '
                        'required","detail":"faultproxy: token expired"}]}', extra)
        if self.has_body():
            self.linger_client()

    @staticmethod
    def send_up(sock, data):
        """Send all of data on the non-blocking socket; raise UpstreamAnswered as soon as
        the upstream has something to say (an early answer, or it closed)."""
        view = memoryview(data)
        off = 0
        while off < len(view):
            r, w, _ = select.select([sock], [sock], [], UPSTREAM_TIMEOUT)
            if r:
                raise UpstreamAnswered()
            if not w:
                raise socket.timeout("upstream send timed out")
            try:
                off += sock.send(view[off:])
            except BlockingIOError:
                pass

    def send_body(self, st, sock, upload):
        """Stream the request body to the upstream socket. Returns "done", "early" (the
        upstream answered first), "dropped" (--drop-upload-after fired) or "error"."""
        args = st.args
        rate = st.rate_up if upload else 0
        cut = args.drop_upload_after if upload and st.drop_left > 0 else None
        self.up = 0
        t0 = None
        sock.setblocking(False)
        try:
            for kind, b in self.body_pieces():
                if kind == "frame":
                    self.send_up(sock, b)
                    continue
                if t0 is None:
                    t0 = time.monotonic()
                if cut is not None and self.up + len(b) >= cut and st.take_drop():
                    self.send_up(sock, b[:cut - self.up])
                    self.up += len(b[:cut - self.up])
                    self.fault = "drop@%d" % self.up
                    return "dropped"
                self.send_up(sock, b)
                self.up += len(b)
                if rate > 0:
                    ahead = self.up / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            return "done"
        except UpstreamAnswered:
            pass
        except ClientGone as e:
            self.note = "client-error:" + str(e).replace(" ", "-")
            return "error"
        except (OSError, ValueError) as e:
            # the upstream broke (or the client did: then peeking below finds nothing either)
            self.note = "upstream-error:" + type(e).__name__
        # something to read from the upstream before the body was all sent: an answer, or
        # the end of the connection
        try:
            if sock.recv(1, socket.MSG_PEEK):
                self.note = "early-response"
                return "early"
        except OSError as e:
            self.note = "upstream-error:" + type(e).__name__
            return "error"
        if self.note is None:
            self.note = "upstream-error:closed"
        return "error"

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

    def control_request(self, st):
        """/__faultproxy/set?rate=N&rate_up=N and /__faultproxy/stats: the proxy's own."""
        self.control = True
        u = urllib.parse.urlsplit(self.path)
        if self.has_body():
            self.drain_body()
        if u.path == "/__faultproxy/set":
            q = urllib.parse.parse_qs(u.query)
            try:
                with st.lock:
                    if "rate" in q:
                        st.rate = int(q["rate"][0])
                    if "rate_up" in q:
                        st.rate_up = int(q["rate_up"][0])
            except ValueError:
                self.send_plain(400, '{"error":"bad number"}')
                return
            self.send_plain(200, json.dumps({"rate": st.rate, "rate_up": st.rate_up}))
        elif u.path == "/__faultproxy/stats":
            with st.lock:
                body = json.dumps({"requests": st.requests, "faults": st.faults})
            self.send_plain(200, body)
        else:
            self.send_plain(404, '{"error":"unknown control path"}')

    def burst_applies(self, st, path_only):
        """Whether this request is of the kind --burst-on names; returns its target (blob
        digest or manifest reference) or None when it is not."""
        kind = st.args.burst_on
        m = BLOB_ANY_PATH.match(path_only)
        mm = MANIFEST_PATH.match(path_only)
        if kind == "blob":
            return m.group(2) if m and self.command == "GET" and not UPLOAD_PATH.match(
                path_only) else None
        if kind == "head":
            return m.group(2) if m and self.command == "HEAD" else None
        if kind == "manifest":
            return mm.group(2) if mm and self.command in ("GET", "HEAD", "PUT") else None
        if kind == "manifest-put":
            return mm.group(2) if mm and self.command == "PUT" else None
        if kind == "upload":
            return "upload" if self.command in ("POST", "PATCH", "PUT") and \
                UPLOAD_PATH.match(path_only) else None
        # any
        return None if path_only in ("/v2/", "/v2") else (
            m.group(2) if m else mm.group(2) if mm else "any")

    def forward(self, st):
        args = st.args
        u = urllib.parse.urlsplit(self.path)
        path_only = u.path
        if path_only.startswith("/__faultproxy/"):
            self.control_request(st)
            return
        m = BLOB_PATH.match(path_only) if self.command == "GET" else None
        digest = m.group(2) if m else None
        mm = MANIFEST_PATH.match(path_only) if self.command in ("GET", "HEAD") else None
        mref = mm.group(2) if mm else None

        if args.expire_tokens and self.token_expired():
            self.refuse_expired(st)
            return

        if args.status_burst:
            target = self.burst_applies(st, path_only)
            if target is not None and st.take_burst(target):
                code = args.status_burst[0]
                self.fault = "status"
                if self.has_body():
                    self.drain_body()
                extra = []
                if code in (429, 503) and args.retry_after != "none":
                    extra.append(("Retry-After", args.retry_after))
                self.send_plain(code,
                                '{"errors":[{"code":"UNAVAILABLE","message":"faultproxy"}]}',
                                extra)
                return

        # --substitute-manifest: ask the upstream for another manifest than the one asked
        up_path = self.path
        claim = None
        if mref is not None and mref in args.substitute_manifest:
            served = args.substitute_manifest[mref]
            up_path = "/v2/%s/manifests/%s" % (mm.group(1), served)
            if u.query:
                up_path += "?" + u.query
            if mref.startswith("sha256:"):
                claim = mref
            self.fault = "substitute@" + served[:19]

        first = st.first_get(digest) if digest else False  # among those forwarded
        upload = self.command in ("PUT", "PATCH") and UPLOAD_PATH.match(path_only) is not None
        has_body = self.has_body()
        up = urllib.parse.urlsplit(args.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.putrequest(self.command, up_path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                # Expect: 100-continue was answered here already (BaseHTTPRequestHandler)
                if k.lower() not in HOP_BY_HOP and k.lower() not in ("content-length", "expect"):
                    conn.putheader(k, v)
            if self.chunked():
                conn.putheader("Transfer-Encoding", "chunked")
            elif has_body:
                conn.putheader("Content-Length", self.headers.get("Content-Length").strip())
            conn.endheaders()
        except OSError as e:
            conn.close()
            if has_body:
                self.drain_body()
            self.send_plain(502, '{"errors":[{"code":"UNAVAILABLE","message":"upstream: %s"}]}'
                            % str(e).replace('"', "'"))
            return

        outcome = "done"
        try:
            if has_body:
                outcome = self.send_body(st, conn.sock, upload)
                if outcome in ("dropped", "error"):
                    # a registry that died mid-upload: both connections end abruptly
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                         struct.pack("ii", 1, 0))
                    conn.close()
                    self.abort_client()
                    return
                conn.sock.settimeout(UPSTREAM_TIMEOUT)
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                if outcome == "early":
                    self.note = "upstream-error:" + type(e).__name__
                    self.abort_client()
                    return
                self.send_plain(502, '{"errors":[{"code":"UNAVAILABLE","message":"upstream: %s"}]}'
                                % str(e).replace('"', "'"))
                return
            if outcome == "early":
                self.close_connection = True  # the rest of the body is never read
            self.relay(st, resp, digest, first, mref, claim)
            if outcome == "early":
                self.linger_client()
        finally:
            conn.close()

    def relay(self, st, resp, digest, first, mref=None, claim=None):
        args = st.args
        length = resp.getheader("Content-Length")
        has_body = self.command != "HEAD" and resp.status not in (204, 304) and \
            not 100 <= resp.status < 200
        blob_ok = digest is not None and resp.status in (200, 206)

        # Faults that change the headers: decided before they go out.
        lie = None  # --length-lie delta for this body
        pad = 0     # --pad-blob bytes appended to this body
        over = {}   # header (lower-case) -> value sent instead of the upstream's
        if blob_ok and length is not None and digest in args.length_lie:
            delta, always = args.length_lie[digest]
            if first or always:
                lie = delta
                over["content-length"] = str(max(0, int(length) + delta))
        if blob_ok and length is not None and digest in args.pad_blob and lie is None:
            pad = args.pad_blob[digest]
            over["content-length"] = str(int(length) + pad)
            cr = resp.getheader("Content-Range")
            mm = re.match(r"bytes (\d+)-(\d+)/(\d+)", cr or "")
            if mm:
                over["content-range"] = "bytes %s-%d/%d" % (
                    mm.group(1), int(mm.group(2)) + pad, int(mm.group(3)) + pad)
        if claim is not None and resp.status == 200:
            over["docker-content-digest"] = claim
        # recorded now: a client that refuses the headers never reads the body
        if lie is not None:
            self.fault = "length-lie@%+d" % lie
        elif pad:
            self.fault = "pad@%d" % pad

        self.send_response_only(resp.status, resp.reason)  # Server, Date: upstream's
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, over.get(k.lower(), v))
        if has_body and length is None:
            self.close_connection = True  # end of body = end of connection
        if lie is not None:
            self.close_connection = True  # the body and its header disagree: end it there
        if self.close_connection:
            self.send_header("Connection", "close")
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
        flip_at = -1
        if blob_ok and digest in args.corrupt_blob and total > 0:
            flip_at = total // 2 - start  # index within this body; may be outside it
        flip_kind = "corrupt"
        if mref is not None and resp.status == 200 and mref in args.corrupt_manifest and \
                total > 0:
            flip_at, flip_kind = total // 2, "corrupt-manifest"
        cut, cut_kind = -1, None
        stall_at, stall_secs = -1, 0.0
        if blob_ok and (first or args.truncate_always):
            # N counts from the start of the blob: a resumed GET from byte N or later gets
            # nothing before the cut (with --truncate-always)
            if digest in args.truncate_blob:
                cut, cut_kind = max(0, args.truncate_blob[digest] - start), "truncate"
            elif digest in args.reset_blob:
                cut, cut_kind = max(0, args.reset_blob[digest] - start), "reset"
        if blob_ok and first:
            if digest in args.stall_blob:
                stall_at, stall_secs = args.stall_blob[digest]

        t0 = time.monotonic()
        paused = 0.0
        while True:
            want = CHUNK if cut < 0 else min(CHUNK, cut - self.sent)
            if stall_at > self.sent:
                want = min(want, stall_at - self.sent)
            try:
                data = resp.read(want) if want > 0 else b""
            except (OSError, http.client.HTTPException) as e:
                # the registry went away in the middle of the body: so does this answer
                self.note = "upstream-error:" + type(e).__name__
                self.close_connection = True
                return
            if not data:
                if length is not None and self.sent < int(length) and cut < 0:
                    self.note = "upstream-error:short-body"
                    self.close_connection = True
                    return
                break
            if 0 <= flip_at - self.sent < len(data):
                i = flip_at - self.sent
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                self.fault = "%s@%d" % (flip_kind, start + flip_at)
            try:
                self.wfile.write(data)
            except OSError:
                self.close_connection = True
                return
            self.sent += len(data)
            if stall_at >= 0 and self.sent == stall_at:
                self.fault = "stall@%d" % self.sent
                try:
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True
                    return
                time.sleep(stall_secs)
                paused += stall_secs
                stall_at = -1
            rate = st.rate if blob_ok else 0
            if rate > 0:
                ahead = self.sent / rate - (time.monotonic() - t0 - paused)
                if ahead > 0:
                    time.sleep(ahead)
        if pad:
            try:
                self.wfile.write(b"\0" * pad)
                self.sent += pad
            except OSError:
                self.close_connection = True
                return
            self.fault = "pad@%d" % pad
        if lie is not None:
            self.fault = "length-lie@%+d" % lie
            return  # close_connection is set: FIN after the body
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
    p.add_argument("--truncate-always", action="store_true",
                   help="--truncate-blob and --reset-blob on every GET, not only the first")
    p.add_argument("--status-burst", type=code_and_count, metavar="CODE:COUNT[:DIGEST]")
    p.add_argument("--burst-on", default="blob",
                   choices=["blob", "manifest", "manifest-put", "upload", "head", "any"])
    p.add_argument("--retry-after", default="1", metavar="VALUE")
    p.add_argument("--stall-blob", action="append", default=[], type=digest_count_secs,
                   metavar="DIGEST:AFTER_BYTES:SECONDS")
    p.add_argument("--length-lie", action="append", default=[], type=length_lie,
                   metavar="DIGEST:(+|-)N[:always]")
    p.add_argument("--pad-blob", action="append", default=[], type=digest_and_count,
                   metavar="DIGEST:BYTES")
    p.add_argument("--corrupt-manifest", action="append", default=[], metavar="REF")
    p.add_argument("--substitute-manifest", action="append", default=[], type=asked_and_served,
                   metavar="ASKED=SERVED")
    p.add_argument("--rate-up", type=int, default=0,
                   help="bytes/s per upload body (PUT/PATCH .../blobs/uploads/...)")
    p.add_argument("--drop-upload-after", type=int, metavar="BYTES",
                   help="once: abort both connections after BYTES of an upload body")
    p.add_argument("--expire-tokens", action="store_true",
                   help="401 for Bearer tokens past their exp (no leeway)")
    args = p.parse_args()
    if not args.upstream.startswith("http://"):
        p.error("--upstream must be http://HOST:PORT")
    args.truncate_blob = dict(args.truncate_blob)
    args.reset_blob = dict(args.reset_blob)
    args.corrupt_blob = set(args.corrupt_blob)
    args.stall_blob = dict(args.stall_blob)
    args.length_lie = dict(args.length_lie)
    args.pad_blob = dict(args.pad_blob)
    args.corrupt_manifest = set(args.corrupt_manifest)
    args.substitute_manifest = dict(args.substitute_manifest)

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
