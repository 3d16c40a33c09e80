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
    crate's tests may read only files inside that crate's package;
  * writes tests/data/akma.txt: 5G AKA and AKMA chained from TS 35.208 test sets 1, 3 and 4
    (CK, IK, AK, SQN, RAND, RES as published) -> K_AUSF, XRES* -> K_AKMA, A-TID, A-KID ->
    K_AF for several AF_IDs, with the values that the two public mistakes (K_AKMA under the
    K_AUSF FC 0x6A) would give; and copies of it for e2m-keyid (akma.txt, the same cases)
    and e2m-aka (5g_aka.txt, the K_AUSF and (X)RES* part);
  * re-checks tests/data/kausf_public.txt, a K_AUSF / XRES* vector published by a third
    party (provenance in that file), and that the TS 35.208 values below equal the ones in
    e2m-aka's tests/data/milenage_ts35208.txt where that file is present.

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
AKA_DATA = Path(__file__).resolve().parent.parent.parent / "e2m-aka" / "tests" / "data"


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
    for c in read_cases("kausf_public.txt"):
        ck_ik = unhex(c["ck"]) + unhex(c["ik"])
        sqn_xor_ak = xor(unhex(c["sqn"]), unhex(c["ak"]))
        snn = text(c["kausf_serving_network_name"])
        expect("kausf " + c["name"], kdf(ck_ik, b"\x6a", snn, sqn_xor_ak), unhex(c["kausf"]))
        snn = text(c["xres_star_serving_network_name"])
        out = kdf(ck_ik, b"\x6b", snn, unhex(c["rand"]), unhex(c["xres"]))
        expect("xres* " + c["name"], out[16:], unhex(c["xres_star"]))
    milenage = AKA_DATA / "milenage_ts35208.txt"
    if milenage.exists():
        published, current = {}, None
        for line in milenage.read_text().splitlines():
            if " = " not in line or line.startswith("#"):
                continue
            k, v = (x.strip() for x in line.split(" = "))
            if k == "set":
                current = published.setdefault(int(v), {})
            else:
                current[k] = v
        for n, fields in TS35208.items():
            for k, v in fields.items():
                if published.get(n, {}).get(k) != v:
                    ok = False
                    print(f"MISMATCH TS 35.208 set {n} {k}: here {v}, e2m-aka has {published.get(n, {}).get(k)}")
    return ok


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# TS 35.208 test set 1 (MILENAGE): inputs and the published outputs used below.
SET1 = {
    "k": "465b5ce8b199b49faa5f0a2ee238a6bc",
    "rand": "23553cbe9637a89d218ae64dae47bf35",
    "sqn": "ff9bb4d0b607",
    "ck": "b40ba9a3c58b2a05bbf0d987b21bf8cb",
    "ik": "f769bcd751044604127672711c6d3441",
    "ak": "aa689c648370",
}

# TS 35.208 §4.3 test sets 1, 3 and 4 (MILENAGE): inputs and the outputs used below, as in
# e2m-aka's tests/data/milenage_ts35208.txt (sources cited there; check_published compares).
# f2 = RES, f3 = CK, f4 = IK, f5 = AK.
TS35208 = {
    1: {"k": "465b5ce8b199b49faa5f0a2ee238a6bc", "rand": "23553cbe9637a89d218ae64dae47bf35",
        "sqn": "ff9bb4d0b607", "amf": "b9b9", "opc": "cd63cb71954a9f4e48a5994e37a02baf",
        "f2": "a54211d5e3ba50bf", "f3": "b40ba9a3c58b2a05bbf0d987b21bf8cb",
        "f4": "f769bcd751044604127672711c6d3441", "f5": "aa689c648370"},
    3: {"k": "fec86ba6eb707ed08905757b1bb44b8f", "rand": "9f7c8d021accf4db213ccff0c7f71a6a",
        "sqn": "9d0277595ffc", "amf": "725c", "opc": "1006020f0a478bf6b699f15c062e42b3",
        "f2": "8011c48c0c214ed2", "f3": "5dbdbb2954e8f3cde665b046179a5098",
        "f4": "59a92d3b476a0443487055cf88b2307b", "f5": "33484dc2136b"},
    4: {"k": "9e5944aea94b81165c82fbf9f32db751", "rand": "ce83dbc54ac0274a157c17f80d017bd6",
        "sqn": "0b604a81eca8", "amf": "9e09", "opc": "a64a507ae1a2a98bb88eb4210135dc87",
        "f2": "f365cd683cd92e96", "f3": "e203edb3971574f5a94b0d61b816345d",
        "f4": "0c4524adeac041c4dd830d20854fc46b", "f5": "f0b9c08ad02e"},
}

# The AKMA chain: one UE per test set, each with its own home network, SUPI and routing
# indicator; the serving network of the brief (MCC 208, MNC 93).
SERVING_NETWORK_NAME = "5G:mnc093.mcc208.3gppnetwork.org"  # TS 33.501 6.1.1.4, MNC 3 digits
AKMA_UES = [
    # (set, SUPI wire form (TS 29.571), routing indicator, home network realm)
    (1, "imsi-208930000000001", "0", "5gc.mnc093.mcc208.3gppnetwork.org"),
    (3, "imsi-001010123456789", "1234", "5gc.mnc001.mcc001.3gppnetwork.org"),
    (4, "nai-sensor.17@iot.example.com", "17", "iot.example.com"),
]
# AF_IDs (TS 33.535 A.4): FQDN || Ua* security protocol identifier (TS 33.220 H.3).
AF_IDS = [
    ("af.example.com", "010001c0a8"),        # (D)TLS 1.2 shared key, TLS_PSK_WITH_AES_128_CCM_8
    ("af.example.com", "0100000007"),        # shared-key TLS 1.3 (TS 33.222 5.4.0.2)
    ("iot-platform.example.org", "0100000002"),  # HTTP digest (TS 24.109)
]


def supi_kdf_param(supi: str) -> bytes:
    """TS 33.535 A.2/A.3: P0 of TS 33.501 A.7.0 -- the IMSI digits or the NAI, as text."""
    for prefix in ("imsi-", "nai-", "gci-", "gli-"):
        if supi.startswith(prefix):
            return text(supi[len(prefix):])
    raise ValueError(supi)


def akma_cases():
    cases = []
    for n, supi, rid, realm in AKMA_UES:
        tv = TS35208[n]
        ck, ik = bytes.fromhex(tv["f3"]), bytes.fromhex(tv["f4"])
        rand, res = bytes.fromhex(tv["rand"]), bytes.fromhex(tv["f2"])
        sqn_xor_ak = xor(bytes.fromhex(tv["sqn"]), bytes.fromhex(tv["f5"]))
        snn = text(SERVING_NETWORK_NAME)
        kausf = kdf(ck + ik, b"\x6a", snn, sqn_xor_ak)
        xres_star = kdf(ck + ik, b"\x6b", snn, rand, res)[16:]
        p_supi = supi_kdf_param(supi)
        kakma = kdf(kausf, b"\x80", b"AKMA", p_supi)
        a_tid = kdf(kausf, b"\x81", b"A-TID", p_supi)
        fields = {
            "k": tv["k"], "opc": tv["opc"], "amf": tv["amf"], "rand": tv["rand"], "sqn": tv["sqn"],
            "ck": ck.hex(), "ik": ik.hex(), "ak": tv["f5"], "res": res.hex(),
            "serving_network_name": SERVING_NETWORK_NAME,
            "sqn_xor_ak": sqn_xor_ak.hex(),
            "kausf": kausf.hex(),
            "xres_star": xres_star.hex(),
            "supi": supi,
            "supi_kdf_param": p_supi.decode(),
            "kakma": kakma.hex(),
            "a_tid": a_tid.hex(),
            "routing_indicator": rid,
            "home_realm": realm,
            # e2m's A-KID username encoding (e2m-keyid akma::AKid::new).
            "a_kid": f"rid{rid}.atid{a_tid.hex()}@{realm}",
            # What the two public mistakes give (must differ from kakma): K_AUSF's FC 0x6A
            # with P0 = SUPI only (UERANSIM src/ue/nas/keys.cpp, commit 27b496ce3), and with
            # P0 = routing indicator (open5gs commit cd2df6195, "Start akma implementation").
            "wrong_kakma_fc6a_supi": kdf(kausf, b"\x6a", p_supi).hex(),
            "wrong_kakma_fc6a_rid": kdf(kausf, b"\x6a", text(rid)).hex(),
            "wrong_kakma_fc6a_akma_supi": kdf(kausf, b"\x6a", b"AKMA", p_supi).hex(),
        }
        for i, (fqdn, ua) in enumerate(AF_IDS):
            af_id = text(fqdn) + bytes.fromhex(ua)
            fields[f"af_id_{i}"] = f"{fqdn};ua={ua}"
            fields[f"af_id_{i}_octets"] = af_id.hex()
            fields[f"kaf_{i}"] = kdf(kakma, b"\x82", af_id).hex()
        cases.append((f"akma set {n}", fields))
    return cases


AKMA_HEADER = [
    "# GENERATED by e2m-kdf's vectors/generate.py (Python hmac/hashlib: an implementation",
    "# independent of the Rust crates). Do not edit by hand; re-run the script.",
    "# No official AKMA test vectors exist. These chain from TS 35.208 sec. 4.3 MILENAGE test",
    "# sets 1, 3 and 4 (k, opc, amf, rand, sqn and the published outputs res = f2, ck = f3,",
    "# ik = f4, ak = f5) through:",
    "#   K_AUSF  = KDF(CK || IK, 0x6A, serving network name, SQN ^ AK)   TS 33.501 A.2",
    "#   XRES*   = last 16 octets of KDF(CK || IK, 0x6B, SNN, RAND, RES) TS 33.501 A.4",
    "#   K_AKMA  = KDF(K_AUSF, 0x80, \"AKMA\", SUPI)                      TS 33.535 A.2",
    "#   A-TID   = KDF(K_AUSF, 0x81, \"A-TID\", SUPI)                     TS 33.535 A.3",
    "#   K_AF    = KDF(K_AKMA, 0x82, AF_ID)                               TS 33.535 A.4",
    "# SUPI as KDF input (supi_kdf_param): P0 of TS 33.501 A.7.0, the IMSI digits or the NAI",
    "# without the TS 29.571 type prefix. AF_ID = FQDN || Ua* security protocol identifier",
    "# (TS 33.220 H.3), written af_id_N as e2m's text form <fqdn>;ua=<hex> and af_id_N_octets.",
    "# a_kid uses e2m's username encoding rid<RID>.atid<A-TID hex> (TS 33.535 6.1 fixes",
    "# the parts, not their spelling). wrong_kakma_*: K_AKMA as computed with the K_AUSF FC",
    "# in two public projects; a correct implementation never produces them.",
    "",
]


def write_cases(header, cases):
    lines = list(header)
    for name, fields in cases:
        lines.append(f"[{name}]")
        lines += [f"{k} = {v}" for k, v in fields.items()]
        lines.append("")
    return "\n".join(lines)


def write_5g_aka():
    """The 5G AKA part of akma.txt, for e2m-aka's own tests."""
    keep = ["k", "opc", "amf", "rand", "sqn", "serving_network_name", "sqn_xor_ak", "kausf", "xres_star"]
    header = [
        "# GENERATED by e2m-kdf's vectors/generate.py (Python hmac/hashlib: an implementation",
        "# independent of e2m-kdf and e2m-aka). Do not edit by hand; re-run the script.",
        "# 5G AKA on TS 35.208 sec. 4.3 test sets 1, 3 and 4 (k, opc, amf, rand, sqn as",
        "# published): K_AUSF = KDF(CK || IK, 0x6A, SNN, SQN ^ AK) (TS 33.501 A.2) and",
        "# XRES* = last 16 octets of KDF(CK || IK, 0x6B, SNN, RAND, XRES) (A.4), computed from",
        "# the published CK, IK, AK and RES; the same cases as e2m-kdf's tests/data/akma.txt.",
        "",
    ]
    return write_cases(header, [(n, {k: f[k] for k in keep}) for n, f in akma_cases()])


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
    # (D)TLS 1.2 shared key with TLS_PSK_WITH_AES_128_CCM_8: (0x01,0x00,0x01,0xC0,0xA8), TS 33.220 H.3.
    af_id = text("af.example.com") + bytes.fromhex("010001c0a8")
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
    outputs = [(DATA / "derived.txt", write_derived()),
               (DATA / "akma.txt", write_cases(AKMA_HEADER, akma_cases()))]
    if KEY_ID_DATA.parent.is_dir():
        outputs.append((KEY_ID_DATA / "key_id.txt", write_key_id()))
        outputs.append((KEY_ID_DATA / "akma.txt", write_cases(AKMA_HEADER, akma_cases())))
    if AKA_DATA.parent.is_dir():
        outputs.append((AKA_DATA / "5g_aka.txt", write_5g_aka()))
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
