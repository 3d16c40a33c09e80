"""An independent decoder for e2m push messages, on pycrate (PyPI `pycrate`, 0.8.1).

pycrate_diameter picks an AVP's data format by AVP code alone (its FMT_LUT tables
have no Vendor-Id), so a vendor AVP whose code equals an IETF one would be read with
the IETF format. This module keeps pycrate's header and envelope machinery and chooses
the format by (code, Vendor-Id): our vendor's AVPs from
crates/e2m-diameter-push/dictionary/e2m-push.json, IETF AVPs (V bit clear) from
pycrate's own IETF table, anything else as raw octets. Grouped AVPs are decoded with
the same rule, recursively.

    python3 e2m_pycrate.py HEX        # one message as hex: prints it as JSON
    python3 e2m_pycrate.py - < HEXES  # one hex message per line: one JSON line each

Exit status 1 when a message does not decode (pycrate raised, or octets were left over).
"""
from __future__ import annotations

import json
import os
import struct
import sys

from pycrate_core.base import Buf, Uint32
from pycrate_core.elt import REPR_HEX, EltErr, Sequence
from pycrate_diameter.Diameter import (AVPGeneric, DiameterGeneric, DiameterHdr,
                                       Enumerated, OctetString, Time, Unsigned32)
from pycrate_diameter.DiameterIETF import FMT_LUT_IETF, Grouped as IetfGrouped
from pycrate_diameter.iana_diameter_dicts import AVPCodes_dict

HERE = os.path.dirname(os.path.abspath(__file__))
DICTIONARY = os.path.join(HERE, "..", "..", "crates", "e2m-diameter-push", "dictionary",
                          "e2m-push.json")
with open(DICTIONARY, encoding="utf-8") as f:
    DICT = json.load(f)
VENDOR_ID = DICT["Vendors"][0]["Code"]
_PYCRATE_TYPES = {"Unsigned32": Unsigned32, "Enumerated": Enumerated,
                  "OctetString": OctetString, "Time": Time}
E2M_AVPS = {(a["Code"], a["Vendor"]): a for a in DICT["AVPs"]}
_NTP_UNIX_OFFSET = 2_208_988_800
_ERA1_UNIX = 2_085_978_496


class AvpByVendor(AVPGeneric):
    """An AVP whose data format is chosen by (AVP code, Vendor-Id)."""

    def _format(self, code: int, vendor: int):
        if vendor == VENDOR_ID and (code, vendor) in E2M_AVPS:
            return _PYCRATE_TYPES[E2M_AVPS[(code, vendor)]["Type"]]
        if vendor == 0 and code in FMT_LUT_IETF:
            fmt = FMT_LUT_IETF[code]
            if isinstance(fmt, type) and issubclass(fmt, IetfGrouped):
                return GroupedByVendor
            return fmt
        return None

    def _from_char(self, char):
        if self.get_trans():
            return
        hdr = self[0]
        hdr._from_char(char)
        code, v_bit, length = hdr[0].get_val(), hdr[1].get_val(), hdr[5].get_val()
        vendor = hdr[6].get_val() if v_bit else 0
        data_len = length - (12 if v_bit else 8)
        if data_len < 0 or data_len > char.len_byte():
            raise EltErr(f"AVP {code}: length {length} does not fit")
        fmt = self._format(code, vendor)
        data = fmt("AVPData", hier=1) if fmt else Buf("AVPData", rep=REPR_HEX, hier=1)
        if isinstance(data, Buf) and not isinstance(data, Time):
            data.set_bl(8 * data_len)
        self.replace(self[1], data)
        saved = char._len_bit
        char._len_bit = char._cur + 8 * data_len
        try:
            self[1]._from_char(char)
            if char.len_bit():
                raise EltErr(f"AVP {code}: {char.len_byte()} octets of data left over")
        finally:
            char._len_bit = saved
        self[2]._from_char(char)


class GroupedByVendor(Sequence):
    _GEN = AvpByVendor()


class DiameterByVendor(DiameterGeneric):
    _GEN = (DiameterHdr(), Sequence("AVPs", GEN=AvpByVendor(), hier=1))


def _unix_of_time(octets: bytes) -> int:
    (ntp,) = struct.unpack("!I", octets)
    return ntp - _NTP_UNIX_OFFSET if ntp & 0x8000_0000 else ntp + _ERA1_UNIX


def _avp_json(avp) -> dict:
    hdr, data = avp[0], avp[1]
    code, v_bit = hdr[0].get_val(), hdr[1].get_val()
    vendor = hdr[6].get_val() if v_bit else 0
    flags = ("V" if v_bit else "-") + ("M" if hdr[2].get_val() else "-") + \
            ("P" if hdr[3].get_val() else "-")
    out = {"code": code, "vendor": vendor, "flags": flags, "length": hdr[5].get_val()}
    entry = E2M_AVPS.get((code, vendor))
    if entry:
        out["name"] = entry["Name"]
    elif vendor == 0 and code in AVPCodes_dict:
        out["name"] = AVPCodes_dict[code]
    if isinstance(data, Sequence):
        out["avps"] = [_avp_json(a) for a in data]
    elif isinstance(data, Time):
        octets = data.to_bytes()
        out["time_unix"] = _unix_of_time(octets)
    else:
        val = data.get_val()
        if isinstance(val, bytes):
            try:
                text = val.decode("ascii")
                out["value"] = text if text.isprintable() else val.hex()
            except UnicodeDecodeError:
                out["value"] = val.hex()
        elif isinstance(val, list):  # Address
            out["value"] = [str(v) for v in val]
        else:
            out["value"] = val
    return out


def decode(octets: bytes) -> dict:
    """The message as a JSON-friendly dict; raises on any decoding error."""
    msg = DiameterByVendor()
    msg.from_bytes(octets)
    if len(msg.to_bytes()) != len(octets):
        raise EltErr(f"{len(octets) - len(msg.to_bytes())} trailing octets")
    h = msg[0]
    if h[1].get_val() != len(octets):
        raise EltErr(f"header length {h[1].get_val()} != {len(octets)} octets received")
    flags = "".join(name if h[i].get_val() else "-" for i, name in
                    ((2, "R"), (3, "P"), (4, "E"), (5, "T")))
    return {
        "version": h[0].get_val(), "length": h[1].get_val(), "flags": flags,
        "command": h[7].get_val(), "application_id": h[8].get_val(),
        "hop_by_hop": f"{h[9].get_val():08x}", "end_to_end": f"{h[10].get_val():08x}",
        "avps": [_avp_json(a) for a in msg[1]],
    }


def main(argv: list[str]) -> int:
    lines = sys.stdin.read().split() if argv[1:] == ["-"] else argv[1:]
    status = 0
    for line in lines:
        try:
            print(json.dumps(decode(bytes.fromhex(line))))
        except Exception as e:  # report and go on: one bad message is one failure
            print(json.dumps({"error": f"{type(e).__name__}: {e}", "hex": line}))
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
