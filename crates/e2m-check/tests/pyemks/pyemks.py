#!/usr/bin/env python3
"""A second, independent EMKS for the e2m conformance checker's tests (issue 19).

Written from the seed (3GPP BEST study, Solution #10, clauses 6.x.2.1-6.x.2.3) and e2m's REST
binding as documented (crates/e2m-msg/README.md, the XSD, DESIGN.md section 4), with
Python's standard library only: ssl for mutual TLS, http.server for HTTP/1.1,
xml.etree.ElementTree for XML, hmac/hashlib for TS 33.220 Annex B.2. It shares no code with
the Rust EMKS. State is in memory.

Its faults are planted on purpose with --fault NAME (repeatable), so that the tests can show
that the checker catches each; `--list-faults` prints them.

    python3 pyemks.py --certs DIR --provision-file FILE [--listen 127.0.0.1:0]
                      [--allow-imsi EMSE_ID]... [--keys-per-ue 4] [--max-age 86400]
                      [--session-ttl 43200] [--fault NAME]...

The first line on stdout is "EMKS listening on https://HOST:PORT".
"""

import argparse
import hashlib
import hmac
import http.client
import http.server
import ipaddress
import os
import queue
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

NS = "urn:e2m:xml:ns:emse-emks:1"
PROBLEM_NS = "urn:ietf:rfc:7807"
MAX_BODY = 64 * 1024
MAX_HEAD = 16 * 1024

# e2m's provisional profile (crates/e2m-kdf, E2mProfile::PROVISIONAL).
FC_KEY = b"\xe1"
FC_KEY_ID = b"\xe2"
KEY_ID_LABEL = b"e2m_key_id"

FAULTS = {
    "wrong-emse-id": "derives e2m_key with the certificate's URI instead of the EMSE_Id",
    "keep-oldest": "keeps N+1 keys per UE: the oldest is not evicted",
    "404-for-403": "answers 404 not-found where 403 emse-not-authorized is due",
    "no-store": "sends key responses without Cache-Control: no-store",
    "session-any-cert": "lets any EMSE certificate use any session",
    "403-for-foreign-session": "answers 403 to another EMSE's session (an oracle of which ids exist)",
    "latest-key": "serves the newest key whatever the key id asked for",
    "unscoped-identities": "resolves an application identity provisioned for any EMSE",
    "dereg-keeps-subscriptions": "keeps a session's subscriptions after its deregistration",
    "no-location": "sends 201 without Location",
    "register-200": "answers a registration with 200 instead of 201",
    "fetch-201": "answers a key fetch with 201 (the seed's slip) instead of 200",
    "serve-expired": "serves keys past their maximum age",
    "text-xml": "sends messages as text/xml",
    "no-allow": "sends 405 without Allow",
    "json-problems": "sends problem details as application/problem+json",
    "any-media-type": "accepts any Content-Type",
    "no-body-limit": "accepts bodies over 64 KiB",
    "emse-can-push": "accepts key pushes from EMSE certificates",
    "no-notifications": "never sends notifications",
    "no-retry": "does not deliver a notification again after a failure",
    "all-events": "notifies every event, whatever the subscription asked for",
    "short-hash-sha256": "computes the short-hash key id as SHA-256(e2m_int_key)[0:4]",
    "same-id-kept": "keeps the older key when a newer one with the same key id is pushed",
    "lenient-xml": "ignores unknown elements",
    "lenient-query": "ignores unknown and repeated query parameters",
    "optional-client-cert": "lets clients without a certificate through TLS (refused at HTTP)",
    "imsi-for-all": "lets every EMSE name UEs by IMSI",
    "unsubscribe-any": "lets any EMSE remove any subscription",
    "session-id-hex": "issues session ids as 32 hex digits",
    "any-callback": "accepts callbacks to any host",
    "subscribe-all-open": "lets any EMSE subscribe to every UE (no IMSI permission needed)",
    "notify-unchecked": "accepts any notification from any client",
    "session-limit": "refuses a 65th session of one EMSE with 429 (the EMSE is locked out)",
    "no-sweep": "never retires expired keys (no key-retired notification on expiry)",
}


# ---- derivations (TS 33.220 Annex B.2) ---------------------------------------------------

def kdf(key, fc, *params):
    s = fc
    for p in params:
        s += p + len(p).to_bytes(2, "big")
    return hmac.new(key, s, hashlib.sha256).digest()


# ---- time -----------------------------------------------------------------------------------

def now_ms():
    return int(time.time() * 1000)


TS_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?Z$")


def parse_ts(text):
    m = TS_RE.match(text or "")
    if not m:
        raise ValueError("timestamp")
    y, mo, d, h, mi, s, frac = m.groups()
    import calendar
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    ms = int((frac or "0").ljust(3, "0"))
    return secs * 1000 + ms


def format_ts(ms):
    secs, frac = divmod(ms, 1000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + ("%03d" % frac).rstrip("0")
    return text + "Z"


# ---- problems -------------------------------------------------------------------------------

STATUS = {
    "unknown-session": 404, "emse-not-authorized": 403, "ue-unknown": 404,
    "key-not-available": 404, "unknown-subscription": 404, "not-found": 404,
    "method-not-allowed": 405, "malformed": 400, "payload-too-large": 413,
    "unsupported-media-type": 415, "rate-limited": 429, "unavailable": 503, "internal": 500,
}


class Refusal(Exception):
    def __init__(self, cause, allow=None):
        super().__init__(cause)
        self.cause = cause
        self.allow = allow


# ---- identities in certificates ------------------------------------------------------------

UNRESERVED = re.compile(r"^[A-Za-z0-9\-._~]$")


def identity_of(cert):
    """(role, name) from the one urn:e2m: URI, or None."""
    found = []
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind == "URI" and value.startswith("urn:e2m:"):
            found.append(value)
    if len(found) != 1:
        return None
    rest = found[0][len("urn:e2m:"):]
    role, _, encoded = rest.partition(":")
    name = urllib.parse.unquote(encoded, errors="strict")
    if role not in ("emse", "hss", "emks") or not name:
        return None
    return role, name, found[0]


def hosts_of(cert):
    out = []
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind == "DNS":
            out.append(value.lower())
        elif kind == "IP Address":
            out.append(str(ipaddress.ip_address(value.strip())))
    return out


def callback_host(uri):
    parsed = urllib.parse.urlsplit(uri)
    host = parsed.hostname
    if host is None:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


# ---- XML in and out -------------------------------------------------------------------------

KEY_ID_RE = re.compile(r"^[0-9a-f]{8}$")
KEY_RE = re.compile(r"^[0-9a-f]{64}$")
IMSI_RE = re.compile(r"^[0-9]{6,15}$")
ID_RE = re.compile(r"^(0|[1-9][0-9]{0,19})$")
TOKEN_RE = re.compile(r"^\S+$")
EVENTS = ("key-available", "key-retired", "key-in-use")


def parse_message(body, root_name, allowed, lenient):
    """[(name, text)] of the root's children, in order; refuses anything unexpected."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise Refusal("malformed")
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise Refusal("malformed")
    if root.tag != "{%s}%s" % (NS, root_name) or root.attrib:
        raise Refusal("malformed")
    if (root.text or "").strip():
        raise Refusal("malformed")
    out = []
    for child in root:
        if not child.tag.startswith("{%s}" % NS):
            raise Refusal("malformed")
        name = child.tag[len(NS) + 2:]
        if name not in allowed:
            if lenient:
                continue
            raise Refusal("malformed")
        if child.attrib or len(child) or (child.tail or "").strip():
            raise Refusal("malformed")
        out.append((name, child.text or ""))
    return out


def one(fields, name, pattern=TOKEN_RE, optional=False):
    values = [v for n, v in fields if n == name]
    if not values:
        if optional:
            return None
        raise Refusal("malformed")
    if len(values) > 1 or not pattern.match(values[0]):
        raise Refusal("malformed")
    return values[0]


def element(name, text):
    return "<%s>%s</%s>" % (name, escape(text), name)


def escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def document(root, children):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<%s xmlns="%s">%s</%s>\n'
            % (root, NS, "".join(children), root)).encode()


def ue_element(kind, value):
    return element("appIdentity" if kind == "app" else "imsi", value)


# ---- the EMKS's state ------------------------------------------------------------------------

class State:
    def __init__(self, args):
        self.lock = threading.RLock()
        self.faults = set(args.fault)
        self.keys_per_ue = args.keys_per_ue
        self.max_age_ms = args.max_age * 1000
        self.session_ttl_ms = args.session_ttl * 1000
        self.allow_imsi = set(args.allow_imsi)
        self.identities = {}          # (emse, app) -> imsi
        self.keys = {}                # imsi -> [(created, key_id, int_key)]
        self.sessions = {}            # session id text -> (emse, expires, created)
        self.subscriptions = {}       # id -> dict
        self.next_subscription = int.from_bytes(os.urandom(3), "big") + 1
        self.next_notification = 1
        self.outbox = queue.Queue()
        if args.provision_file:
            with open(args.provision_file, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line or line.startswith("emse_id,"):
                        continue
                    emse, app, imsi = line.split(",")
                    self.identities[(emse, app)] = imsi

    def fault(self, name):
        return name in self.faults

    # -- keys

    def live_keys(self, imsi, now):
        held = self.keys.get(imsi, [])
        if self.fault("serve-expired"):
            return list(held)
        return [k for k in held if now < k[0] + self.max_age_ms]

    def push(self, imsi, key_id, int_key, created, now):
        created = min(created, now)
        if now >= created + self.max_age_ms and not self.fault("serve-expired"):
            return "expired", None
        held = self.live_keys(imsi, now)
        for k in held:
            if k[1] == key_id:
                if k[0] > created or self.fault("same-id-kept"):
                    return "stale", None
        held = [k for k in held if k[1] != key_id]
        keep = self.keys_per_ue + (1 if self.fault("keep-oldest") else 0)
        new = (created, key_id, int_key)
        held.sort()
        evicted = None
        if len(held) >= keep:
            if new < held[0]:
                return "stale", None
            evicted = held.pop(0)
        held.append(new)
        held.sort()
        self.keys[imsi] = held
        return "stored", evicted

    def key(self, imsi, key_id, now):
        held = self.live_keys(imsi, now)
        if self.fault("latest-key") and held:
            return max(held)
        for k in held:
            if k[1] == key_id:
                return k
        return None

    # -- sessions

    def new_session_id(self):
        raw = os.urandom(16)
        if self.fault("session-id-hex"):
            return raw.hex()
        # 128 bits as 22 base64url digits, big-endian: the first digit holds the top two
        # bits (the XSD's SessionId; not the end-padded RFC 4648 form).
        n = int.from_bytes(raw, "big")
        digits = []
        for _ in range(22):
            digits.append(B64URL[n & 63])
            n >>= 6
        return "".join(reversed(digits))

    def session(self, sid, emse, now):
        s = self.sessions.get(sid)
        if s is None or now >= s[1]:
            raise Refusal("unknown-session")
        if s[0] != emse and not self.fault("session-any-cert"):
            if self.fault("403-for-foreign-session"):
                raise Refusal("emse-not-authorized")
            raise Refusal("unknown-session")
        return s

    def newest_session(self, emse, now):
        live = [(s[2], sid) for sid, s in self.sessions.items() if s[0] == emse and now < s[1]]
        if not live:
            raise Refusal("unknown-session")
        return max(live)[1]

    def resolve(self, emse, kind, value):
        if kind == "app":
            if self.fault("unscoped-identities"):
                for (_, app), imsi in self.identities.items():
                    if app == value:
                        return imsi
            imsi = self.identities.get((emse, value))
            if imsi is None:
                raise Refusal("ue-unknown")
            return imsi
        if emse in self.allow_imsi or self.fault("imsi-for-all"):
            return value
        raise Refusal("emse-not-authorized")

    # -- notifications

    def notify(self, imsi, event, key_id, now):
        if self.fault("no-notifications"):
            return
        for sid, sub in list(self.subscriptions.items()):
            if event not in sub["events"] and not self.fault("all-events"):
                continue
            if sub["ue"] is not None and sub["ue"][2] != imsi:
                continue
            if sub["ue"] is not None:
                kind, value = sub["ue"][0], sub["ue"][1]
            elif sub["emse"] in self.allow_imsi:
                kind, value = "imsi", imsi
            else:
                continue
            nid = self.next_notification
            self.next_notification += 1
            body = document("notification", [
                element("subscriptionId", str(sid)), element("event", event),
                ue_element(kind, value), element("keyId", "%08x" % key_id),
                element("time", format_ts(now)), element("notificationId", str(nid)),
            ])
            self.outbox.put((sid, sub["callback"], sub["emse"], body, 0))


def sweeper(state):
    """Every second: expired keys leave the store, each with a key-retired notification."""
    while True:
        time.sleep(1.0)
        if state.fault("no-sweep") or state.fault("serve-expired"):
            continue
        with state.lock:
            now = now_ms()
            for imsi, held in list(state.keys.items()):
                live = [k for k in held if now < k[0] + state.max_age_ms]
                for k in held:
                    if k not in live:
                        state.notify(imsi, "key-retired", k[1], now)
                state.keys[imsi] = live


# ---- delivery ----------------------------------------------------------------------------------

def deliverer(state, client_context):
    while True:
        sid, callback, emse, body, attempt = state.outbox.get()
        with state.lock:
            alive = sid in state.subscriptions
        if not alive:
            continue
        ok = False
        try:
            parsed = urllib.parse.urlsplit(callback)
            conn = http.client.HTTPSConnection(parsed.hostname, parsed.port or 443,
                                               context=client_context, timeout=10)
            conn.connect()
            peer = identity_of(conn.sock.getpeercert())
            if peer is None or peer[0] != "emse" or peer[1] != emse:
                conn.close()
                raise OSError("callback server is not the subscriber")
            conn.request("POST", parsed.path or "/", body=body,
                         headers={"Content-Type": "application/xml"})
            response = conn.getresponse()
            response.read()
            ok = 200 <= response.status < 300
            conn.close()
        except (OSError, ssl.SSLError, http.client.HTTPException):
            ok = False
        if not ok and attempt < 10 and not state.fault("no-retry"):
            def again(item=(sid, callback, emse, body, attempt + 1)):
                state.outbox.put(item)
            threading.Timer(1.0, again).start()


# ---- HTTP -----------------------------------------------------------------------------------------

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
SESSION_RE = re.compile(r"^[A-D][A-Za-z0-9_\-]{21}$")
PATH_RE = re.compile(r"^[A-Za-z0-9\-._~/]*$")
QUERY_VALUE_RE = re.compile(r"^(?:[A-Za-z0-9\-._~@:/?!$'()*,]|%[0-9A-Fa-f]{2})+$")


def parse_key_query(query, lenient):
    if query is None:
        raise Refusal("malformed")
    seen = {}
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if not eq or not value:
            raise Refusal("malformed")
        if not QUERY_VALUE_RE.match(value):
            raise Refusal("malformed")
        if name not in ("appIdentity", "imsi", "keyId"):
            if lenient:
                continue
            raise Refusal("malformed")
        if name in seen and not lenient:
            raise Refusal("malformed")
        seen[name] = urllib.parse.unquote(value, errors="strict")
    if ("appIdentity" in seen) == ("imsi" in seen) or "keyId" not in seen:
        raise Refusal("malformed")
    if not KEY_ID_RE.match(seen["keyId"]):
        raise Refusal("malformed")
    if "imsi" in seen:
        if not IMSI_RE.match(seen["imsi"]):
            raise Refusal("malformed")
        ue = ("imsi", seen["imsi"])
    else:
        if not TOKEN_RE.match(seen["appIdentity"]):
            raise Refusal("malformed")
        ue = ("app", seen["appIdentity"])
    return ue, int(seen["keyId"], 16)


def route(method, target):
    """(operation, arguments) or a Refusal."""
    if not target.startswith("/") or "#" in target:
        raise Refusal("malformed")
    path, q, query = target.partition("?")
    query = query if q else None
    if not PATH_RE.match(path):
        raise Refusal("malformed")
    if not path.startswith("/e2m/v1/"):
        raise Refusal("not-found")
    segments = path[len("/e2m/v1/"):].split("/")
    if any(s in ("", ".", "..") for s in segments) or len(segments) > 3:
        raise Refusal("not-found")

    def allow(expected):
        if method != expected:
            raise Refusal("method-not-allowed", allow=expected)

    def no_query():
        if query is not None:
            raise Refusal("malformed")

    def session_id(text):
        if not SESSION_RE.match(text):
            raise Refusal("malformed")
        return text

    head = segments[0]
    if head == "sessions" and len(segments) == 1:
        allow("POST"); no_query(); return "register", ()
    if head == "sessions" and len(segments) == 2:
        allow("DELETE"); sid = session_id(segments[1]); no_query(); return "deregister", (sid,)
    if head == "sessions" and len(segments) == 3 and segments[2] == "keys":
        allow("GET"); sid = session_id(segments[1])
        return "fetch", (sid, query)
    if head == "subscriptions" and len(segments) == 1:
        allow("POST"); no_query(); return "subscribe", ()
    if head == "subscriptions" and len(segments) == 2:
        allow("DELETE")
        if not ID_RE.match(segments[1]):
            raise Refusal("malformed")
        no_query(); return "unsubscribe", (int(segments[1]),)
    if head == "notifications" and len(segments) == 1:
        allow("POST"); no_query(); return "notify", ()
    if head == "intermediate-keys" and len(segments) == 1:
        allow("POST"); no_query(); return "push", ()
    raise Refusal("not-found")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pyemks"
    sys_version = ""

    def log_message(self, format, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        self.peer = None
        self.peer_hosts = []

    def handle(self):
        try:
            self.request.settimeout(10)
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            return
        cert = self.request.getpeercert()
        self.peer = identity_of(cert)
        self.peer_hosts = hosts_of(cert)
        try:
            super().handle()
        except (ssl.SSLError, OSError):
            pass

    # One method for all verbs.
    def do_GET(self):
        self.dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    @property
    def state(self):
        return self.server.state

    def send(self, status, body=b"", content_type=None, headers=()):
        self.send_response(status)
        if content_type:
            if content_type == "application/xml" and self.state.fault("text-xml"):
                content_type = "text/xml"
            self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def problem(self, refusal):
        cause = refusal.cause
        if cause == "emse-not-authorized" and self.state.fault("404-for-403"):
            cause = "not-found"
        status = STATUS[cause]
        headers = []
        if refusal.allow and not self.state.fault("no-allow"):
            headers.append(("Allow", refusal.allow))
        if self.state.fault("json-problems"):
            body = ('{"type":"urn:e2m:problem:%s","status":%d,"cause":"%s"}'
                    % (cause, status, cause)).encode()
            self.send(status, body, "application/problem+json", headers)
            return
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<problem xmlns="%s">'
                "<type>urn:e2m:problem:%s</type><title>%s</title><status>%d</status>"
                "<cause>%s</cause></problem>\n" % (PROBLEM_NS, cause, cause, status, cause)).encode()
        self.send(status, body, "application/problem+xml", headers)

    def read_body(self):
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise Refusal("malformed")
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit():
            self.close_connection = True
            raise Refusal("malformed")
        length = int(length)
        if length > MAX_BODY and not self.state.fault("no-body-limit"):
            # Drained (bounded) so that the client reads the answer, then closed.
            self.close_connection = True
            left = min(length, 1024 * 1024)
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
            raise Refusal("payload-too-large")
        return self.rfile.read(length) if length else b""

    def xml_body(self, body):
        media = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media != "application/xml" and not self.state.fault("any-media-type"):
            raise Refusal("unsupported-media-type")
        return body

    def emse(self):
        if self.peer is None or self.peer[0] != "emse":
            raise Refusal("emse-not-authorized")
        return self.peer[1]

    def check_callback(self, uri):
        if self.state.fault("any-callback"):
            return
        host = callback_host(uri)
        if host is None or host not in self.peer_hosts:
            raise Refusal("emse-not-authorized")

    def dispatch(self):
        try:
            body = self.read_body()
            operation, args = route(self.command, self.path)
            with self.state.lock:
                getattr(self, "op_" + operation)(body, *args)
        except Refusal as refusal:
            self.problem(refusal)

    # -- operations

    def op_register(self, body):
        fields = parse_message(self.xml_body(body), "registration", ("emseId", "callback"),
                               self.state.fault("lenient-xml"))
        emse = self.emse()
        if one(fields, "emseId") != emse:
            raise Refusal("emse-not-authorized")
        callback = one(fields, "callback", optional=True)
        if callback is not None:
            self.check_callback(callback)
        now = now_ms()
        live = [s for s in self.state.sessions.values() if s[0] == emse and now < s[1]]
        if len(live) >= 64:
            if self.state.fault("session-limit"):
                raise Refusal("rate-limited")
            # The EMSE's oldest session makes way (with its subscriptions).
            oldest = min((s[2], sid) for sid, s in self.state.sessions.items()
                         if s[0] == emse and now < s[1])[1]
            del self.state.sessions[oldest]
            for sub_id in [i for i, s in self.state.subscriptions.items() if s["session"] == oldest]:
                del self.state.subscriptions[sub_id]
        sid = self.state.new_session_id()
        expires = now + self.state.session_ttl_ms
        self.state.sessions[sid] = (emse, expires, now)
        headers = [] if self.state.fault("no-location") else [("Location", "/e2m/v1/sessions/" + sid)]
        status = 200 if self.state.fault("register-200") else 201
        self.send(status, document("registrationResult", [
            element("sessionId", sid), element("expires", format_ts(expires))]),
            "application/xml", headers)

    def op_fetch(self, body, sid, query):
        if body:
            raise Refusal("malformed")
        emse = self.emse()
        ue, key_id = parse_key_query(query, self.state.fault("lenient-query"))
        now = now_ms()
        session = self.state.session(sid, emse, now)
        imsi = self.state.resolve(emse, *ue)
        held = self.state.key(imsi, key_id, now)
        if held is None:
            raise Refusal("key-not-available")
        created, _, int_key = held
        derive_for = session[0]
        if self.state.fault("wrong-emse-id"):
            derive_for = self.peer[2]
        e2m_key = kdf(int_key, FC_KEY, derive_for.encode())
        headers = [] if self.state.fault("no-store") else [("Cache-Control", "no-store")]
        status = 201 if self.state.fault("fetch-201") else 200
        self.send(status, document("keyResponse", [
            ue_element(*ue), element("keyId", "%08x" % key_id), element("e2mKey", e2m_key.hex()),
            element("expires", format_ts(created + self.state.max_age_ms))]),
            "application/xml", headers)

    def op_deregister(self, body, sid):
        if body:
            raise Refusal("malformed")
        emse = self.emse()
        self.state.session(sid, emse, now_ms())
        del self.state.sessions[sid]
        if not self.state.fault("dereg-keeps-subscriptions"):
            for sub_id in [i for i, s in self.state.subscriptions.items() if s["session"] == sid]:
                del self.state.subscriptions[sub_id]
        self.send(204)

    def op_subscribe(self, body):
        fields = parse_message(self.xml_body(body), "subscription",
                               ("event", "appIdentity", "imsi", "callback"),
                               self.state.fault("lenient-xml"))
        emse = self.emse()
        events = [v for n, v in fields if n == "event"]
        if not events or any(e not in EVENTS for e in events) or len(set(events)) != len(events):
            raise Refusal("malformed")
        if "key-in-use" in events:
            raise Refusal("malformed")
        app = one(fields, "appIdentity", optional=True)
        imsi_name = one(fields, "imsi", IMSI_RE, optional=True)
        if app is not None and imsi_name is not None:
            raise Refusal("malformed")
        callback = one(fields, "callback")
        self.check_callback(callback)
        now = now_ms()
        sid = self.state.newest_session(emse, now)
        if app is not None:
            ue = ("app", app, self.state.resolve(emse, "app", app))
        elif imsi_name is not None:
            ue = ("imsi", imsi_name, self.state.resolve(emse, "imsi", imsi_name))
        elif emse in self.state.allow_imsi or self.state.fault("subscribe-all-open"):
            ue = None
        else:
            raise Refusal("emse-not-authorized")
        sub_id = self.state.next_subscription
        self.state.next_subscription += 1
        self.state.subscriptions[sub_id] = {
            "session": sid, "emse": emse, "events": set(events), "ue": ue, "callback": callback,
        }
        self.send(201, document("subscriptionResult", [
            element("subscriptionId", str(sub_id)),
            element("expires", format_ts(self.state.sessions[sid][1]))]),
            "application/xml", [("Location", "/e2m/v1/subscriptions/%d" % sub_id)])

    def op_unsubscribe(self, body, sub_id):
        if body:
            raise Refusal("malformed")
        emse = self.emse()
        sub = self.state.subscriptions.get(sub_id)
        if sub is None or (sub["emse"] != emse and not self.state.fault("unsubscribe-any")):
            raise Refusal("unknown-subscription")
        del self.state.subscriptions[sub_id]
        self.send(204)

    def op_notify(self, body):
        fields = parse_message(self.xml_body(body), "notification",
                               ("subscriptionId", "event", "appIdentity", "imsi", "keyId", "time",
                                "notificationId"), self.state.fault("lenient-xml"))
        if self.state.fault("notify-unchecked"):
            self.send(204)
            return
        emse = self.emse()
        self.state.newest_session(emse, now_ms())
        if one(fields, "event") != "key-in-use":
            raise Refusal("malformed")
        one(fields, "keyId", KEY_ID_RE)
        app = one(fields, "appIdentity", optional=True)
        imsi = one(fields, "imsi", IMSI_RE, optional=True)
        if (app is None) == (imsi is None):
            raise Refusal("malformed")
        self.state.resolve(emse, "app" if app is not None else "imsi", app or imsi)
        self.send(204)

    def op_push(self, body):
        fields = parse_message(self.xml_body(body), "intermediateKeyPush",
                               ("imsi", "randLsb32", "shortHash", "e2mIntKey", "created"),
                               self.state.fault("lenient-xml"))
        hss = self.peer is not None and (self.peer[0] == "hss" or
                                         (self.state.fault("emse-can-push") and self.peer[0] == "emse"))
        if not hss:
            raise Refusal("emse-not-authorized")
        imsi = one(fields, "imsi", IMSI_RE)
        int_key = bytes.fromhex(one(fields, "e2mIntKey", KEY_RE))
        try:
            created = parse_ts(one(fields, "created"))
        except ValueError:
            raise Refusal("malformed")
        rand = one(fields, "randLsb32", KEY_ID_RE, optional=True)
        short = [v for n, v in fields if n == "shortHash"]
        if (rand is None) == (not short):
            raise Refusal("malformed")
        if rand is not None:
            key_id = int(rand, 16)
        elif self.state.fault("short-hash-sha256"):
            key_id = int.from_bytes(hashlib.sha256(int_key).digest()[:4], "big")
        else:
            key_id = int.from_bytes(kdf(int_key, FC_KEY_ID, KEY_ID_LABEL)[:4], "big")
        now = now_ms()
        outcome, evicted = self.state.push(imsi, key_id, int_key, created, now)
        if evicted is not None:
            self.state.notify(imsi, "key-retired", evicted[1], now)
        if outcome == "stored":
            self.state.notify(imsi, "key-available", key_id, now)
        self.send(204)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, context, state):
        self.state = state
        super().__init__(address, Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)


class LimitedHandler(Handler):
    """Refuses request heads over MAX_HEAD octets with 431 (a single line over 64 KiB is
    refused with 431 by http.server itself)."""

    def parse_request(self):
        if not super().parse_request():
            return False
        size = len(self.raw_requestline) + sum(len(k) + len(v) + 4 for k, v in self.headers.items())
        if size > MAX_HEAD:
            self.close_connection = True
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n<problem xmlns="%s">'
                    "<status>431</status><cause>malformed</cause></problem>\n" % PROBLEM_NS).encode()
            self.send(431, body, "application/problem+xml")
            return False
        return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certs")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--provision-file")
    parser.add_argument("--allow-imsi", action="append", default=[])
    parser.add_argument("--keys-per-ue", type=int, default=4)
    parser.add_argument("--max-age", type=int, default=86400)
    parser.add_argument("--session-ttl", type=int, default=43200)
    parser.add_argument("--fault", action="append", default=[], choices=sorted(FAULTS))
    parser.add_argument("--list-faults", action="store_true")
    args = parser.parse_args()
    if args.list_faults:
        for name, what in sorted(FAULTS.items()):
            print("%-28s %s" % (name, what))
        return
    if not args.certs:
        parser.error("--certs is required")
    state = State(args)
    certs = args.certs

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.load_cert_chain(os.path.join(certs, "emks.pem"), os.path.join(certs, "emks.key"))
    context.load_verify_locations(os.path.join(certs, "ca.pem"))
    context.verify_mode = ssl.CERT_OPTIONAL if state.fault("optional-client-cert") else ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])

    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.minimum_version = ssl.TLSVersion.TLSv1_2
    client_context.load_cert_chain(os.path.join(certs, "emks.pem"), os.path.join(certs, "emks.key"))
    client_context.load_verify_locations(os.path.join(certs, "ca.pem"))

    host, _, port = args.listen.rpartition(":")
    server = Server((host, int(port)), context, state)
    server.RequestHandlerClass = LimitedHandler
    threading.Thread(target=deliverer, args=(state, client_context), daemon=True).start()
    threading.Thread(target=sweeper, args=(state,), daemon=True).start()
    bound = server.server_address
    print("EMKS listening on https://%s:%d" % (bound[0], bound[1]), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
