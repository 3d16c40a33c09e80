#!/usr/bin/env python3
"""Independent reference for e2m-kdf's test vectors.

Computes, with Python's standard `hmac` and `hashlib` modules only (no code shared with the
Rust crate), the TS 33.220 Annex B.2 KDF

    derived = HMAC-SHA-256(Key, FC || P0 || L0 || ... || Pn || Ln),  Li = len(Pi), 2 octets BE

and from it:
  * re-checks the published vectors in tests/data/{rfc4231,ck_ik_prime,kasme}.txt;
  * writes tests/data/derived.txt: vectors for derivations that have no published vector
    (e2m_int_key, e2m_key, the short-hash key id, Ks_NAF, K_AUSF -> K_AKMA / A-TID / K_AF)
    and edge cases of the raw KDF, all chained from the TS 35.208 test set 1 MILENAGE
    outputs (CK, IK, RAND, SQN, AK as published in TS 35.208 §4.3.1 / §5.1 test set 1);
  * writes the key-id case again, with its own provenance header, into the e2m-keyid crate
    (../e2m-keyid/tests/data/key_id.txt), which owns the key identifiers: a published
    crate's tests may read only files inside that crate's package.

Run from the crate directory:  python3 vectors/generate.py        (writes both files)
                               python3 vectors/generate.py --check (exit 1 on any mismatch)
"""
import hashlib
import hmac
import sys
import unicodedata
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
# The copy for e2m-keyid exists only in the workspace (not in the e2m-kdf package); --check
# skips it when the script runs from an unpacked e2m-kdf package.
KEY_ID_DATA = Path(__file__).resolve().parent.parent.parent / "e2m-keyid" / "tests" / "data"


def kdf(key: bytes, fc: bytes, *params: bytes) -> bytes:
    s = bytearray(fc)
    for p in params:
        assert len(p) <= 0xFFFF
        s += p + len(p).to_bytes(2, "big")
    return hmac.new(key, bytes(s), hashlib.sha256).digest()


def text(s: str) -> bytes:
    # TS 33.220 B.2.1.2: character strings are NFKC-normalised, then UTF-8 encoded.
    return unicodedata.normalize("NFKC", s).encode("utf-8")


def unhex(v: str) -> bytes:
    """Hex, or 'XX*N' meaning octet XX repeated N times, or '' for empty."""
    if "*" in v:
        octet, count = v.split("*")
        return bytes.fromhex(octet) * int(count)
    return bytes.fromhex(v)


def read_cases(name: str):
    cases, current = [], None
    for line in (DATA / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = {"name": line.strip("[]")}
            cases.append(current)
            continue
        k, _, v = line.partition("=")
        current[k.strip()] = v.strip()
    return cases


def check_published() -> bool:
    ok = True

    def expect(label, got, want):
        nonlocal ok
        if got != want:
            ok = False
            print(f"MISMATCH {label}: got {got.hex()} want {want.hex()}")

    for c in read_cases("rfc4231.txt"):
        mac = hmac.new(unhex(c["key"]), unhex(c["data"]), hashlib.sha256).digest()
        want = unhex(c["mac"])
        expect("rfc4231 " + c["name"], mac[: len(want)], want)
    for c in read_cases("ck_ik_prime.txt"):
        out = kdf(unhex(c["ck"]) + unhex(c["ik"]), b"\x20", text(c["network"]), unhex(c["sqn_xor_ak"]))
        expect("ck' " + c["name"], out[:16], unhex(c["ck_prime"]))
        expect("ik' " + c["name"], out[16:], unhex(c["ik_prime"]))
    for c in read_cases("kasme.txt"):
        out = kdf(unhex(c["ck"]) + unhex(c["ik"]), b"\x10", unhex(c["sn_id"]), unhex(c["sqn_xor_ak"]))
        expect("kasme " + c["name"], out, unhex(c["kasme"]))
    return ok


# TS 35.208 test set 1 (MILENAGE): inputs and the published outputs used below.
SET1 = {
    "k": "465b5ce8b199b49faa5f0a2ee238a6bc",
    "rand": "23553cbe9637a89d218ae64dae47bf35",
    "sqn": "ff9bb4d0b607",
    "ck": "b40ba9a3c58b2a05bbf0d987b21bf8cb",
    "ik": "f769bcd751044604127672711c6d3441",
    "ak": "aa689c648370",
}

# The provisional e2m profile (crates/e2m-kdf/src/profile.rs documents it).
FC_INT, FC_KEY, FC_KEY_ID = b"\xe0", b"\xe1", b"\xe2"
INT_LABEL, KEY_ID_LABEL = "e2m_CIoT", "e2m_key_id"


def derived_cases():
    ck, ik = bytes.fromhex(SET1["ck"]), bytes.fromhex(SET1["ik"])
    rand = bytes.fromhex(SET1["rand"])
    sqn_xor_ak = bytes(a ^ b for a, b in zip(bytes.fromhex(SET1["sqn"]), bytes.fromhex(SET1["ak"])))
    cases = []

    int_key = kdf(ck + ik, FC_INT, text(INT_LABEL))
    cases.append(("e2m_int_key", {"ck": ck.hex(), "ik": ik.hex(), "e2m_int_key": int_key.hex()}))
    for emse in ["iot-platform.example.com", "emse-b.example.org"]:
        cases.append((f"e2m_key {emse}", {
            "e2m_int_key": int_key.hex(), "emse_id": emse,
            "e2m_key": kdf(int_key, FC_KEY, text(emse)).hex()}))
    cases.append(("e2m_key with string", {
        "e2m_int_key": int_key.hex(), "emse_id": "iot-platform.example.com", "key_label": "e2m_key",
        "e2m_key": kdf(int_key, FC_KEY, text("iot-platform.example.com"), text("e2m_key")).hex()}))
    cases.append(("e2m_key with empty string", {
        "e2m_int_key": int_key.hex(), "emse_id": "iot-platform.example.com", "key_label": "",
        "e2m_key": kdf(int_key, FC_KEY, text("iot-platform.example.com"), b"").hex()}))
    cases.append(("e2m_key non-ascii emse", {
        "e2m_int_key": int_key.hex(), "emse_id": "plateforme-\u00e9.example.fr",
        "e2m_key": kdf(int_key, FC_KEY, text("plateforme-\u00e9.example.fr")).hex()}))
    cases.append(("key id", {
        "rand": rand.hex(), "rand_lsb32": rand[12:].hex(),
        "e2m_int_key": int_key.hex(),
        "short_hash": kdf(int_key, FC_KEY_ID, text(KEY_ID_LABEL))[:4].hex()}))

    impi = "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"
    naf_id = text("naf.example.com") + bytes.fromhex("0100000002")
    cases.append(("ks_naf", {
        "ks": (ck + ik).hex(), "rand": rand.hex(), "impi": impi, "naf_id": naf_id.hex(),
        "ks_naf": kdf(ck + ik, b"\x01", b"gba-me", rand, text(impi), naf_id).hex()}))

    sn_name = "5G:mnc001.mcc001.3gppnetwork.org"
    kausf = kdf(ck + ik, b"\x6a", text(sn_name), sqn_xor_ak)
    cases.append(("kausf", {
        "ck": ck.hex(), "ik": ik.hex(), "serving_network_name": sn_name,
        "sqn_xor_ak": sqn_xor_ak.hex(), "kausf": kausf.hex()}))
    supi = "001010123456789"
    kakma = kdf(kausf, b"\x80", b"AKMA", text(supi))
    af_id = text("af.example.com") + bytes.fromhex("0100000102")
    cases.append(("akma", {
        "kausf": kausf.hex(), "supi": supi,
        "kakma": kakma.hex(),
        "a_tid": kdf(kausf, b"\x81", b"A-TID", text(supi)).hex(),
        "af_id": af_id.hex(),
        "kaf": kdf(kakma, b"\x82", af_id).hex()}))

    key = bytes(range(32))
    edge = [
        ("kdf no parameter", b"\x42", []),
        ("kdf empty parameter", b"\x42", [b""]),
        ("kdf empty middle parameter", b"\x42", [b"a", b"", b"b"]),
        ("kdf two-octet fc", b"\xff\x01", [b"a"]),
        ("kdf 55-octet S boundary", b"\x42", [b"\x61" * 52]),
        ("kdf 56-octet S boundary", b"\x42", [b"\x61" * 53]),
        ("kdf 65535-octet parameter", b"\x42", [b"\x61" * 65535]),
    ]
    for name, fc, params in edge:
        fields = {"key": key.hex(), "fc": fc.hex()}
        for i, p in enumerate(params):
            fields[f"p{i}"] = (f"61*{len(p)}" if len(p) > 8 else p.hex())
        fields["out"] = kdf(key, fc, *params).hex()
        cases.append((name, fields))
    return cases


def write_key_id():
    """The key-id and e2m_key cases of derived.txt, for e2m-keyid's own tests."""
    lines = [
        "# GENERATED by e2m-kdf's vectors/generate.py (Python hmac/hashlib: an implementation",
        "# independent of e2m-kdf and e2m-keyid). Do not edit by hand; re-run the script.",
        "# The same key-id and e2m_key cases as in e2m-kdf's tests/data/derived.txt, copied",
        "# here so that this crate's package carries the data its tests read.",
        "# Inputs: RAND of TS 35.208 test set 1; e2m_int_key = KDF(CK || IK, 0xE0, \"e2m_CIoT\")",
        "# on that set's CK and IK. rand_lsb32 = RAND octets 12..16 (seed alternative 1);",
        "# short_hash = first 4 octets of KDF(e2m_int_key, 0xE2, \"e2m_key_id\") (provisional",
        "# profile); e2m_key = KDF(e2m_int_key, 0xE1, EMSE_Id [, string]). Binary fields are hex.",
        "",
    ]
    for name, fields in derived_cases():
        if name == "key id" or name.startswith("e2m_key"):
            lines.append(f"[{name}]")
            lines += [f"{k} = {v}" for k, v in fields.items()]
            lines.append("")
    return "\n".join(lines)


def write_derived():
    lines = [
        "# GENERATED by vectors/generate.py (Python hmac/hashlib: an implementation independent",
        "# of this crate). Do not edit by hand; re-run the script.",
        "# Inputs are chained from TS 35.208 test set 1 MILENAGE outputs (CK, IK, RAND, SQN, AK).",
        "# Profile: e2m_int_key FC 0xE0 P0 \"e2m_CIoT\"; e2m_key FC 0xE1 P0 EMSE_Id [P1 string];",
        "# short-hash key id FC 0xE2 P0 \"e2m_key_id\", first 4 octets. Text is NFKC, UTF-8.",
        "# Binary fields are hex; 'XX*N' means octet XX repeated N times.",
        "",
    ]
    for name, fields in derived_cases():
        lines.append(f"[{name}]")
        lines += [f"{k} = {v}" for k, v in fields.items()]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    ok = check_published()
    print("published vectors:", "OK" if ok else "MISMATCH")
    outputs = [(DATA / "derived.txt", write_derived())]
    if KEY_ID_DATA.parent.is_dir():
        outputs.append((KEY_ID_DATA / "key_id.txt", write_key_id()))
    if "--check" in sys.argv:
        same = True
        for target, content in outputs:
            up_to_date = target.exists() and target.read_text() == content
            print(f"{target.name}:", "up to date" if up_to_date else "DIFFERS from the generator")
            same = same and up_to_date
        sys.exit(0 if ok and same else 1)
    for target, content in outputs:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        print("wrote", target)
    sys.exit(0 if ok else 1)
