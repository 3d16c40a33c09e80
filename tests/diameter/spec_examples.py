#!/usr/bin/env python3
"""The example messages of crates/e2m-diameter-push/SPEC.md, built with python-diameter
(tests/diameter/e2m_push.py) and read back by two decoders that share no code with it:
pycrate (e2m_pycrate.py) and tshark (tshark_e2m.sh, with text2pcap to wrap them in
TCP). Each example's fields are checked in both decoders against the values it was
built from; any mismatch is printed and makes the exit status 1.

    python3 spec_examples.py           # check, print a summary line per example
    python3 spec_examples.py --hex     # also print each message's hex (as in SPEC.md)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from diameter.message import Message

import e2m_push as e2m
import e2m_pycrate

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = bytes.fromhex("9b3e5a7c1d2f4860a1b2c3d4e5f60718293a4b5c6d7e8f9010213243546576f8")
CREATED_MS = 1_795_771_800_017          # 2026-11-27T09:30:00.017Z (e2m-msg's golden push)
HSS, HSS_REALM = "hss1.hss.example", "hss.example"
EMKS, EMKS_REALM = "emks1.emks.example", "emks.example"
SESSION = f"{HSS};1795771800;1;e2m"


def request(key_id, created_ms=CREATED_MS, session=SESSION):
    r = e2m.build_request(session_id=session, origin_host=HSS, origin_realm=HSS_REALM,
                          destination_realm=EMKS_REALM, imsi="001010123456789",
                          int_key=KEY, created_ms=created_ms, key_id=key_id)
    r.header.hop_by_hop_identifier = 0x00000001
    r.header.end_to_end_identifier = 0x00000002
    return r


def examples():
    rand = request(0xAE47BF35)
    short = request(None, created_ms=1_795_771_800_000,
                    session=f"{HSS};1795771800;2;e2m")
    short.header.end_to_end_identifier = 0x00000003
    parsed = Message.from_bytes(rand.as_bytes())
    user = [a for a in parsed.avps if a.code == 1][0]
    ok = e2m.build_answer(parsed, origin_host=EMKS, origin_realm=EMKS_REALM,
                          expiry_unix=1_795_858_200)  # created + 24 h, whole seconds
    unknown = e2m.build_answer(parsed, origin_host=EMKS, origin_realm=EMKS_REALM,
                               result_code=None,
                               experimental_code=e2m.E2M_ERROR_USER_UNKNOWN)
    busy = e2m.build_answer(parsed, origin_host=EMKS, origin_realm=EMKS_REALM,
                            result_code=e2m.DIAMETER_TOO_BUSY)
    rejected = e2m.build_answer(parsed, origin_host=EMKS, origin_realm=EMKS_REALM,
                                result_code=e2m.DIAMETER_AUTHORIZATION_REJECTED)
    invalid = e2m.build_answer(parsed, origin_host=EMKS, origin_realm=EMKS_REALM,
                               result_code=e2m.DIAMETER_INVALID_AVP_VALUE, failed=user)
    return [
        ("request, RAND-LSB32, created 09:30:00.017", rand,
         {"flags": "RP--", 1: "001010123456789", "E2M-Key-Id-Scheme": 0,
          "E2M-Key-Id": 0xAE47BF35, "E2M-Int-Key": KEY.hex(),
          "E2M-Creation-Time": 1_795_771_800, "E2M-Creation-Time-Fraction": 17}),
        ("request, SHORT_HASH, created 09:30:00", short,
         {"flags": "RP--", 1: "001010123456789", "E2M-Key-Id-Scheme": 1,
          "E2M-Int-Key": KEY.hex(), "E2M-Creation-Time": 1_795_771_800}),
        ("answer, success", ok,
         {"flags": "-P--", 268: 2001, "E2M-Key-Expiry-Time": 1_795_858_200}),
        ("answer, unknown subscriber", unknown, {"flags": "-P--", "exp": (32473, 5001)}),
        ("answer, too busy", busy, {"flags": "-PE-", 268: 3004}),
        ("answer, not authorized", rejected, {"flags": "-P--", 268: 5003}),
        ("answer, invalid User-Name", invalid, {"flags": "-P--", 268: 5004, "failed": 1}),
    ]


def check_pycrate(octets: bytes, want: dict) -> list[str]:
    d = e2m_pycrate.decode(octets)
    problems = []
    if d["flags"] != want["flags"]:
        problems.append(f"flags {d['flags']} != {want['flags']}")
    by_key = {}
    for a in d["avps"]:
        by_key[a.get("name") if a["vendor"] else a["code"]] = a
    for k, v in want.items():
        if k in ("flags",):
            continue
        if k == "exp":
            er = by_key.get(297)
            got = None if er is None else tuple(x["value"] for x in er["avps"])
            if got != v:
                problems.append(f"Experimental-Result {got} != {v}")
            continue
        if k == "failed":
            fa = by_key.get(279)
            if fa is None or fa["avps"][0]["code"] != v:
                problems.append("Failed-AVP does not hold the AVP")
            continue
        a = by_key.get(k)
        got = None if a is None else a.get("time_unix", a.get("value"))
        if got != v:
            problems.append(f"{k}: {got!r} != {v!r}")
    return problems


def check_tshark(all_octets: list[bytes], wants: list[dict]) -> list[list[str]]:
    fields = ["diameter.flags", "diameter.User-Name", "diameter.E2M-Key-Id-Scheme",
              "diameter.E2M-Key-Id", "diameter.E2M-Int-Key", "diameter.E2M-Creation-Time",
              "diameter.E2M-Creation-Time-Fraction", "diameter.Result-Code",
              "diameter.Experimental-Result-Code",
              # Wireshark names Experimental-Result-Code values as 3GPP's only when the
              # Vendor-Id is 3GPP's; under another vendor the value goes in this field.
              "diameter.other_vendor.Experimental-Result-Code",
              "diameter.E2M-Key-Expiry-Time",
              "_ws.malformed", "_ws.expert.severity"]
    with tempfile.TemporaryDirectory() as tmp:
        txt, pcap = os.path.join(tmp, "m.txt"), os.path.join(tmp, "m.pcap")
        with open(txt, "w", encoding="ascii") as f:
            for o in all_octets:
                f.write("000000 " + " ".join(f"{b:02x}" for b in o) + "\n\n")
        subprocess.run(["text2pcap", "-q", "-T", "40000,3868", txt, pcap], check=True)
        with open(pcap, "rb") as f:
            out = subprocess.run(
                [os.path.join(HERE, "tshark_e2m.sh"), "-T", "fields", "-E", "separator=|",
                 "-E", "occurrence=a", "-o", "gui.column.format:\"No.\",\"%m\""]
                + sum((["-e", x] for x in fields), []),
                stdin=f, capture_output=True, text=True, check=True).stdout
    results = []
    for line, want in zip(out.strip("\n").split("\n"), wants):
        v = dict(zip(fields, line.split("|")))
        problems = []
        if v["_ws.malformed"]:
            problems.append("tshark: malformed")
        flag_bits = int(v["diameter.flags"], 16)
        flags = "".join(c if flag_bits & m else "-" for c, m in
                        (("R", 0x80), ("P", 0x40), ("E", 0x20), ("T", 0x10)))
        if flags != want["flags"]:
            problems.append(f"tshark flags {flags}")
        checks = {1: "diameter.User-Name", "E2M-Key-Id-Scheme": "diameter.E2M-Key-Id-Scheme",
                  "E2M-Key-Id": "diameter.E2M-Key-Id", "E2M-Int-Key": "diameter.E2M-Int-Key",
                  "E2M-Creation-Time-Fraction": "diameter.E2M-Creation-Time-Fraction",
                  268: "diameter.Result-Code"}
        for k, field in checks.items():
            if k in want and v[field] != str(want[k]):
                problems.append(f"tshark {field}={v[field]!r} != {want[k]!r}")
        if "exp" in want and v["diameter.other_vendor.Experimental-Result-Code"] != str(
                want["exp"][1]):
            problems.append("tshark Experimental-Result-Code")
        for k, field in (("E2M-Creation-Time", "diameter.E2M-Creation-Time"),
                         ("E2M-Key-Expiry-Time", "diameter.E2M-Key-Expiry-Time")):
            if k in want and not v[field]:
                problems.append(f"tshark has no {field}")
        results.append(problems)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hex", action="store_true")
    a = p.parse_args()
    exs = examples()
    octets = [m.as_bytes() for _, m, _ in exs]
    tshark = check_tshark(octets, [w for _, _, w in exs])
    status = 0
    for (title, _, want), o, tp in zip(exs, octets, tshark):
        problems = check_pycrate(o, want) + tp
        print(f"{'ok  ' if not problems else 'FAIL'} {title} ({len(o)} octets)"
              + ("" if not problems else ": " + "; ".join(problems)))
        if a.hex:
            print("\n".join(o.hex()[i:i + 64] for i in range(0, len(o.hex()), 64)))
        status |= bool(problems)
    return status


if __name__ == "__main__":
    sys.exit(main())
