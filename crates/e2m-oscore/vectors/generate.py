#!/usr/bin/env python3
"""Independent reference for the e2m OSCORE profile's test vectors (tests/data/e2m_profile.txt).

Computes with Python's `hmac`/`hashlib` and the `cryptography` package's AESCCM (no code
shared with the Rust crates; CBOR and CoAP are encoded by hand below from RFC 8949 and
RFC 7252):

  master_secret = KDF(e2m_key, FC 0xE3, "e2m_OSCORE")            TS 33.220 B.2 KDF, e2m profile
  id_context    = 0x01 || application identity (UTF-8)
  UE Sender ID  = key id (4 octets, big-endian);  EMSE Sender ID = empty
  keys, IV      = HKDF-SHA-256(salt = empty, master_secret,
                  info = [id, id_context, 10, "Key"/"IV", 16/13])  RFC 8613 §3.2.1
and then a protected request (with the ID Context) and its protected response, and a second
request without the ID Context, as RFC 8613 §5 and §8 define them.

The e2m_key input is the `e2m_key iot-platform.example.com` vector of
crates/e2m-kdf/tests/data/derived.txt (itself chained from TS 35.208 test set 1).

Run from the crate directory:  python3 vectors/generate.py         (writes the file)
                               python3 vectors/generate.py --check (exit 1 on any mismatch)
"""
import hashlib
import hmac
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "e2m_profile.txt"

E2M_KEY = bytes.fromhex("43f9e9070a6fd917f970649e08ff443f9a4f3d1d1d34ad810e46d48222cf0b39")
IDENTITY = "sensor-17@iot.example.com"
KEY_ID = 0xAE47BF35


def kdf(key, fc, *params):
    s = bytearray(fc)
    for p in params:
        s += p + len(p).to_bytes(2, "big")
    return hmac.new(key, bytes(s), hashlib.sha256).digest()


def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    if n < 256:
        return bytes([major << 5 | 24, n])
    return bytes([major << 5 | 25]) + n.to_bytes(2, "big")


def bstr(b):
    return cbor_head(2, len(b)) + b


def tstr(t):
    return cbor_head(3, len(t.encode())) + t.encode()


def hkdf(salt, ikm, info, length):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def info(ident, id_context, kind, length):
    return cbor_head(4, 5) + bstr(ident) + bstr(id_context) + cbor_head(0, 10) + tstr(kind) + cbor_head(0, length)


def nonce(common_iv, ident, piv):
    raw = bytes([len(ident)]) + ident.rjust(7, b"\0") + piv.rjust(5, b"\0")
    return bytes(a ^ b for a, b in zip(raw, common_iv))


def aad(request_kid, request_piv):
    external = cbor_head(4, 5) + b"\x01" + cbor_head(4, 1) + b"\x0a" + bstr(request_kid) + bstr(request_piv) + bstr(b"")
    return cbor_head(4, 3) + tstr("Encrypt0") + bstr(b"") + bstr(external)


def nib(v):
    if v < 13:
        return v, b""
    if v < 269:
        return 13, bytes([v - 13])
    return 14, (v - 269).to_bytes(2, "big")


def options(opts):
    out, last = bytearray(), 0
    for number, value in opts:
        d, dx = nib(number - last)
        l, lx = nib(len(value))
        out += bytes([d << 4 | l]) + dx + lx + value
        last = number
    return bytes(out)


def coap(mtype, code, mid, token, opts, payload):
    head = bytes([0x40 | mtype << 4 | len(token), code]) + mid.to_bytes(2, "big") + token
    return head + options(opts) + (b"\xff" + payload if payload else b"")


def main():
    identity = IDENTITY.encode()
    key_id = KEY_ID.to_bytes(4, "big")
    master_secret = kdf(E2M_KEY, b"\xe3", b"e2m_OSCORE")
    id_context = b"\x01" + identity
    ue_key = hkdf(b"", master_secret, info(key_id, id_context, "Key", 16), 16)
    emse_key = hkdf(b"", master_secret, info(b"", id_context, "Key", 16), 16)
    common_iv = hkdf(b"", master_secret, info(b"", id_context, "IV", 13), 13)

    mid, token = 0x1A2B, bytes.fromhex("7c1e")
    # Request 1: CON GET /temperature, SSN 0, with the ID Context.
    req = coap(0, 0x01, mid, token, [(11, b"temperature")], b"")
    piv = b"\x00"
    plaintext = bytes([0x01]) + options([(11, b"temperature")])
    ct = AESCCM(ue_key, tag_length=8).encrypt(nonce(common_iv, key_id, piv), plaintext, aad(key_id, piv))
    oscore = bytes([0x19]) + piv + bytes([len(id_context)]) + id_context + key_id
    req_protected = coap(0, 0x02, mid, token, [(9, oscore)], ct)
    # Its response: ACK 2.05, Content-Format 0 (text/plain), "21.5 C", no Partial IV.
    resp = coap(2, 0x45, mid, token, [(12, b"")], b"21.5 C")
    plaintext = bytes([0x45]) + options([(12, b"")]) + b"\xff21.5 C"
    ct = AESCCM(emse_key, tag_length=8).encrypt(nonce(common_iv, key_id, piv), plaintext, aad(key_id, piv))
    resp_protected = coap(2, 0x44, mid, token, [(9, b"")], ct)
    # Request 2: NON POST /log "up", SSN 1, without the ID Context.
    mid2, token2 = 0x1A2C, bytes.fromhex("7c1f")
    req2 = coap(1, 0x02, mid2, token2, [(11, b"log")], b"up")
    piv2 = b"\x01"
    plaintext = bytes([0x02]) + options([(11, b"log")]) + b"\xffup"
    ct = AESCCM(ue_key, tag_length=8).encrypt(nonce(common_iv, key_id, piv2), plaintext, aad(key_id, piv2))
    req2_protected = coap(1, 0x02, mid2, token2, [(9, bytes([0x09]) + piv2 + key_id)], ct)

    lines = [
        "# GENERATED by vectors/generate.py (Python hmac/hashlib + cryptography's AESCCM; CBOR and",
        "# CoAP encoded by hand): an implementation independent of the Rust crates. Do not edit by",
        "# hand; re-run the script. Profile: master secret FC 0xE3, P0 \"e2m_OSCORE\"; ID Context",
        "# 0x01 || application identity; UE Sender ID = key id; EMSE Sender ID = empty; no salt.",
        "# e2m_key: crates/e2m-kdf/tests/data/derived.txt [e2m_key iot-platform.example.com].",
        "",
        "[e2m profile context]",
        f"e2m_key = {E2M_KEY.hex()}",
        f"identity = {IDENTITY}",
        f"key_id = {key_id.hex()}",
        f"master_secret = {master_secret.hex()}",
        f"id_context = {id_context.hex()}",
        f"ue_sender_key = {ue_key.hex()}",
        f"emse_sender_key = {emse_key.hex()}",
        f"common_iv = {common_iv.hex()}",
        "",
        "[e2m profile messages]",
        f"request = {req.hex()}",
        f"request_protected = {req_protected.hex()}",
        f"response = {resp.hex()}",
        f"response_protected = {resp_protected.hex()}",
        f"request2 = {req2.hex()}",
        f"request2_protected = {req2_protected.hex()}",
        "",
    ]
    text = "\n".join(lines)
    if "--check" in sys.argv:
        if OUT.read_text() != text:
            print(f"{OUT} differs from the reference", file=sys.stderr)
            sys.exit(1)
        print(f"{OUT.name}: matches")
    else:
        OUT.write_text(text)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
