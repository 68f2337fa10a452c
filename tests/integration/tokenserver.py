#!/usr/bin/env python3
"""tokenserver.py: a Docker registry token issuer, for the integration tests only.

    tokenserver.py --sign-key KEY --sign-cert CERT [--port N] [--users FILE]
                   [--anonymous-pull REGEX] [--rules FILE] [--expires-in N]
                   [--service NAME] [--issuer NAME] [--identity-tokens]
                   [--cert FILE --key FILE]

Issues the JWTs docker-registry 2.8 (distribution) accepts with `auth: token:` (see
distribution registry/auth/token/token.go): header {typ: JWT, alg: RS256, x5c: [CERT]},
claims iss, sub, aud (= service), exp, nbf, iat, jti, access: [{type, name, actions}],
signed RS256 by `openssl dgst -sha256 -sign KEY` (KEY must be an RSA key; CERT, self-signed,
is what the registry's rootcertbundle holds).

  GET  /token?service=S&scope=S1&scope=S2[&account=U][&offline_token=true&client_id=C]
       Optional HTTP Basic auth against --users (lines "user:password"). A wrong user or
       password gets 401 with a JSON error body. Anonymous requests get `pull` on
       repositories matching --anonymous-pull (none by default), nothing else; users get
       what they ask for among pull and push (or what --rules allows). Answers
       {"token", "access_token", "expires_in", "issued_at"} (+ "refresh_token" when
       offline_token=true, authenticated, and --identity-tokens).
  POST /token  OAuth2 form (distribution docs/spec/auth/oauth.md): grant_type=password
       (username, password) or refresh_token (refresh_token), service, client_id, scope
       (space-separated), access_type=offline for a refresh token (--identity-tokens only).
       Answers access_token, scope, expires_in, issued_at (+ refresh_token).

Refresh tokens are what `docker login` stores as "identitytoken" (and then dockerd uses
POST grant_type=refresh_token): without --identity-tokens none is issued, so `docker login`
stores the password ("auth") as with a server that has no refresh tokens.

A service other than --service is refused (400), and so is an account that is not the
authenticated user (400, as cesanta/docker_auth does). Rules file lines: "USER REGEX ACTIONS"
(USER "*" for any user, "-" for anonymous; ACTIONS comma-separated, e.g. pull,push); with
--rules, a request gets the union of the actions of the lines that match (plus the
--anonymous-pull grant for anonymous requests).

Every request is logged to stdout, one line: time, method, path, status=, whether an
Authorization header came (authorization=basic|bearer|other|none, never its value), user=
(- for anonymous), service=, scope= for each requested scope, granted= for each resource
granted (granted=- for none), and token=sha256:<12 hex> of the token issued (never the
token; refresh= likewise). Binds 127.0.0.1:PORT (0: any free port); the first line on stdout is
"listening on 127.0.0.1:PORT". https when --cert and --key are given.
"""

import argparse
import base64
import binascii
import datetime
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

KNOWN_ACTIONS = ("pull", "push")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def short_hash(s):
    return "sha256:" + hashlib.sha256(s.encode()).hexdigest()[:12]


def pem_to_b64der(path):
    """The base64 (standard alphabet) of the DER of the first certificate in PEM file PATH."""
    with open(path, encoding="ascii") as f:
        text = f.read()
    m = re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)
    if not m:
        raise SystemExit(f"tokenserver: no certificate in {path}")
    body = "".join(m.group(1).split())
    base64.b64decode(body, validate=True)
    return body


def parse_scope(s):
    """"type:name:actions" -> (type, name, [actions]); name may hold a :port. None if bad."""
    first = s.find(":")
    last = s.rfind(":")
    if first <= 0 or last == first:
        return None
    rtype, name, actions = s[:first], s[first + 1:last], s[last + 1:]
    if not name:
        return None
    return rtype, name, [a for a in actions.split(",") if a]


class Config:
    def __init__(self, args):
        self.service = args.service
        self.issuer = args.issuer
        self.expires_in = args.expires_in
        self.identity_tokens = args.identity_tokens
        self.sign_key = args.sign_key
        self.x5c = [pem_to_b64der(args.sign_cert)]
        self.anon = re.compile(args.anonymous_pull) if args.anonymous_pull else None
        self.users = {}
        if args.users:
            with open(args.users, encoding="utf-8") as f:
                for line in f:
                    line = line.rstrip("\r\n")
                    if not line or line.startswith("#") or ":" not in line:
                        continue
                    user, pw = line.split(":", 1)
                    self.users[user] = pw
        self.rules = None
        if args.rules:
            self.rules = []
            with open(args.rules, encoding="utf-8") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) != 3 or parts[0].startswith("#"):
                        continue
                    self.rules.append((parts[0], re.compile(parts[1]), parts[2].split(",")))
        self.refresh = {}  # refresh token -> user
        self.lock = threading.Lock()


def check_password(cfg, user, password):
    want = cfg.users.get(user)
    return want is not None and hmac.compare_digest(want.encode(), password.encode())


def allowed_actions(cfg, user, rtype, name):
    if rtype == "registry" and name == "catalog":
        return {"*"} if user else set()
    if rtype.split("(")[0] != "repository":
        return set()
    got = set()
    if user is None and cfg.anon is not None and cfg.anon.search(name):
        got.add("pull")
    if cfg.rules is None:
        if user is not None:
            got.update(KNOWN_ACTIONS)
        return got
    for who, rx, actions in cfg.rules:
        if (who == "*" and user is not None) or (who == "-" and user is None) or who == user:
            if rx.search(name):
                got.update(actions)
    return got


def grant(cfg, user, scopes):
    """The access claim for USER (None: anonymous) asking for SCOPES."""
    access = []
    for s in scopes:
        p = parse_scope(s)
        if p is None:
            continue
        rtype, name, actions = p
        ok = allowed_actions(cfg, user, rtype, name)
        give = [a for a in actions if a in ok]
        if not give:
            continue
        for entry in access:  # merge repeated resources
            if entry["type"] == rtype and entry["name"] == name:
                entry["actions"] += [a for a in give if a not in entry["actions"]]
                break
        else:
            access.append({"type": rtype, "name": name, "actions": give})
    return access


def sign(cfg, user, access):
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "x5c": cfg.x5c}
    claims = {
        "iss": cfg.issuer,
        "sub": user or "",
        "aud": cfg.service,
        "exp": now + cfg.expires_in,
        "nbf": now - 1,
        "iat": now,
        "jti": secrets.token_hex(16),
        "access": access,
    }
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    proc = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", cfg.sign_key],
        input=signing_input.encode(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError("openssl dgst -sign failed: " + proc.stderr.decode(errors="replace"))
    return signing_input + "." + b64url(proc.stdout), now


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def scope_string(access):
    return " ".join(f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access)


def granted_fields(access):
    if not access:
        return [("granted", "-")]
    return [("granted", f"{a['type']}:{a['name']}:{','.join(a['actions'])}") for a in access]


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "cachesync-tokenserver/1"
    protocol_version = "HTTP/1.1"
    cfg = None  # set in main

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    # ---- plumbing ---------------------------------------------------------------------------
    def reply(self, status, body, extra_headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.status = status

    def log_line(self, fields):
        parts = [
            datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            self.command,
            urllib.parse.urlsplit(self.path).path,
            f"status={self.status}",
            f"authorization={self.auth_kind()}",
        ]
        for k, v in fields:
            if v is None:
                continue
            v = str(v).replace(" ", "%20").replace("\n", "%0A")
            parts.append(f"{k}={v}")
        with self.cfg.lock:
            sys.stdout.write(" ".join(parts) + "\n")
            sys.stdout.flush()

    def auth_kind(self):
        h = self.headers.get("Authorization")
        if h is None:
            return "none"
        scheme = h.split(" ", 1)[0].lower()
        return scheme if scheme in ("basic", "bearer") else "other"

    def basic_user(self):
        """(user, ok): (None, True) without Authorization; ok False for a bad one."""
        h = self.headers.get("Authorization")
        if h is None:
            return None, True
        scheme, _, rest = h.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            raw = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, False
        user, sep, password = raw.partition(":")
        if not sep or not check_password(self.cfg, user, password):
            return user or None, False
        return user, True

    def unauthorized(self, user):
        self.reply(
            401,
            {
                "errors": [
                    {
                        "code": "UNAUTHORIZED",
                        "message": "incorrect username or password",
                        "detail": None,
                    }
                ],
                "details": "incorrect username or password",
            },
            [("WWW-Authenticate", 'Basic realm="cachesync-test token server"')],
        )
        return user

    def bad_request(self, code, message):
        self.reply(400, {"errors": [{"code": code, "message": message, "detail": None}]})

    def token_body(self, user, scopes, oauth, want_refresh, refresh_token=None):
        access = grant(self.cfg, user, scopes)
        token, now = sign(self.cfg, user, access)
        body = {
            "access_token": token,
            "expires_in": self.cfg.expires_in,
            "issued_at": rfc3339(now),
        }
        if oauth:
            body["scope"] = scope_string(access)
        else:
            body["token"] = token
        if want_refresh and user is not None and self.cfg.identity_tokens:
            if refresh_token is None:
                refresh_token = secrets.token_urlsafe(24)
                with self.cfg.lock:
                    self.cfg.refresh[refresh_token] = user
            body["refresh_token"] = refresh_token
        return body, access, token

    # ---- handlers ---------------------------------------------------------------------------
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        scopes = [s for v in q.get("scope", []) for s in v.split(" ") if s]
        service = q.get("service", [None])[0]
        account = q.get("account", [None])[0]
        fields = [("service", service), ("account", account)] + [("scope", s) for s in scopes]
        user = None
        self.status = 0
        try:
            if url.path != "/token":
                self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
                return
            user, ok = self.basic_user()
            if not ok:
                self.unauthorized(user)
                return
            if service is not None and service != self.cfg.service:
                self.bad_request("INVALID_SERVICE", f"unknown service {service!r}")
                return
            if account and user is not None and account != user:
                self.bad_request("INVALID_ACCOUNT", "account is not the authenticated user")
                return
            offline = q.get("offline_token", [""])[0].lower() == "true"
            body, access, token = self.token_body(user, scopes, False, offline)
            self.reply(200, body)
            fields += granted_fields(access) + [("token", short_hash(token))]
            if "refresh_token" in body:
                fields.append(("refresh", short_hash(body["refresh_token"])))
        except Exception as e:  # a test helper: say what went wrong, keep serving
            if not self.status:
                self.reply(500, {"errors": [{"code": "UNKNOWN", "message": str(e)}]})
            fields.append(("error", repr(e)))
        finally:
            self.log_line([("user", user or "-")] + fields)

    do_HEAD = do_GET

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        fields = []
        user = None
        self.status = 0
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8", errors="replace") if length else ""
            if url.path != "/token":
                self.reply(404, {"error": "not_found"})
                return
            form = urllib.parse.parse_qs(raw, keep_blank_values=True)

            def one(k):
                return form.get(k, [None])[0]

            grant_type = one("grant_type")
            service = one("service")
            scopes = [s for s in (one("scope") or "").split(" ") if s]
            fields = [
                ("grant_type", grant_type),
                ("service", service),
                ("client_id", one("client_id")),
                ("access_type", one("access_type")),
                ("username", one("username")),
            ] + [("scope", s) for s in scopes]
            if service != self.cfg.service:
                self.reply(400, {"error": "invalid_request",
                                 "error_description": f"unknown service {service!r}"})
                return
            if not one("client_id"):
                self.reply(400, {"error": "invalid_request",
                                 "error_description": "missing client_id"})
                return
            refresh_token = None
            if grant_type == "password":
                user = one("username")
                if not user or not check_password(self.cfg, user, one("password") or ""):
                    self.reply(401, {"error": "invalid_grant",
                                     "error_description": "incorrect username or password"})
                    return
            elif grant_type == "refresh_token":
                refresh_token = one("refresh_token") or ""
                with self.cfg.lock:
                    user = self.cfg.refresh.get(refresh_token)
                if user is None:
                    self.reply(401, {"error": "invalid_grant",
                                     "error_description": "unknown refresh token"})
                    return
            else:
                self.reply(400, {"error": "unsupported_grant_type",
                                 "error_description": f"grant_type {grant_type!r}"})
                return
            want_refresh = one("access_type") == "offline" or refresh_token is not None
            body, access, token = self.token_body(user, scopes, True, want_refresh,
                                                  refresh_token)
            self.reply(200, body)
            fields += granted_fields(access) + [("token", short_hash(token))]
            if "refresh_token" in body:
                fields.append(("refresh", short_hash(body["refresh_token"])))
        except Exception as e:
            if not self.status:
                self.reply(500, {"error": "server_error", "error_description": str(e)})
            fields.append(("error", repr(e)))
        finally:
            self.log_line([("user", user or "-")] + fields)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False


def main():
    ap = argparse.ArgumentParser(description="registry token issuer for tests")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--sign-key", required=True, help="RSA private key (PEM) signing the JWTs")
    ap.add_argument("--sign-cert", required=True, help="its certificate (PEM), sent as x5c")
    ap.add_argument("--users", help='file of "user:password" lines')
    ap.add_argument("--anonymous-pull", metavar="REGEX", default=None)
    ap.add_argument("--rules", help='file of "USER REGEX ACTIONS" lines')
    ap.add_argument("--expires-in", type=int, default=300)
    ap.add_argument("--service", default="cachesync-test")
    ap.add_argument("--issuer", default="cachesync-test-issuer")
    ap.add_argument("--identity-tokens", action="store_true",
                    help="issue refresh tokens (offline_token=true, access_type=offline)")
    ap.add_argument("--cert", help="TLS certificate (PEM): serve https")
    ap.add_argument("--key", help="TLS key (PEM)")
    args = ap.parse_args()
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    if args.expires_in < 1:
        ap.error("--expires-in must be positive")

    Handler.cfg = Config(args)
    httpd = Server(("127.0.0.1", args.port), Handler)
    scheme = "http"
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        # The handshake happens in the handler thread, so a stuck client blocks nobody.
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True,
                                       do_handshake_on_connect=False)
        scheme = "https"
    port = httpd.server_address[1]
    sys.stdout.write(f"listening on 127.0.0.1:{port} ({scheme}) pid {os.getpid()}\n")
    sys.stdout.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
