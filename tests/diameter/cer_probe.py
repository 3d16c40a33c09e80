#!/usr/bin/env python3
"""Sends one CER to a Diameter peer (plain TCP, or TLS from the first octet with a
client certificate) and prints, as one JSON line, what came back: the CEA's
Result-Code, Origin-Host and applications, or how the connection ended.

Used to check how a peer (freeDiameter here) treats peers it does not know, and
whether it ties a TLS certificate to the CER's Origin-Host:

    cer_probe.py --port 3868 --origin-host stranger.other.test --origin-realm other.test
    cer_probe.py --port 5868 --tls --ca W/certs/ca.pem --cert W/certs/hss.hss.test.pem \
        --key W/certs/hss.hss.test.key --server-name relay.relay.test \
        --origin-host impostor.hss.test --origin-realm hss.test
"""
from __future__ import annotations

import argparse
import json
import socket
import ssl
import struct
import sys

from diameter.message import Message
from diameter.message.commands import CapabilitiesExchangeRequest

import e2m_push as e2m


def read_message(sock) -> bytes | None:
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    length = struct.unpack("!I", head)[0] & 0xFFFFFF
    body = b""
    while len(head) + len(body) < length:
        chunk = sock.recv(length - len(head) - len(body))
        if not chunk:
            return None
        body += chunk
    return head + body


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--addr", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--origin-host", required=True)
    p.add_argument("--origin-realm", required=True)
    p.add_argument("--app-id", type=int, default=e2m.APPLICATION_ID)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--server-name", help="name the server's certificate must carry")
    p.add_argument("--timeout", type=float, default=5)
    a = p.parse_args()

    out: dict = {"origin_host": a.origin_host, "tls": a.tls}
    sock = socket.create_connection((a.addr, a.port), timeout=a.timeout)
    try:
        if a.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(a.ca)
            if a.cert:
                ctx.load_cert_chain(a.cert, a.key)
            ctx.check_hostname = bool(a.server_name)
            sock = ctx.wrap_socket(sock, server_hostname=a.server_name)
            out["tls_version"] = sock.version()
        cer = CapabilitiesExchangeRequest()
        cer.header.hop_by_hop_identifier = 1
        cer.header.end_to_end_identifier = 1
        cer.origin_host = a.origin_host.encode()
        cer.origin_realm = a.origin_realm.encode()
        cer.host_ip_address = ["127.0.0.1"]
        cer.vendor_id = e2m.VENDOR_ID
        cer.product_name = "e2m cer_probe"
        cer.auth_application_id = [a.app_id]
        sock.sendall(cer.as_bytes())
        raw = read_message(sock)
        if raw is None:
            out["outcome"] = "closed without an answer"
        else:
            cea = Message.from_bytes(raw)
            out.update(outcome="answer", result_code=cea.result_code,
                       peer_origin_host=(cea.origin_host or b"").decode(),
                       auth_application_id=list(cea.auth_application_id or []),
                       error_message=cea.error_message)
            try:
                nxt = read_message(sock)
                out["then"] = "closed" if nxt is None else "kept open"
            except (socket.timeout, TimeoutError):
                out["then"] = f"kept open (nothing more within {a.timeout}s)"
    except (ssl.SSLError, OSError) as e:
        out["outcome"] = f"{type(e).__name__}: {e}"
    finally:
        sock.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
