"""The e2m push application for python-diameter (PyPI `python-diameter`, 0.9.0).

This is the python-diameter form of the dictionary in
`crates/e2m-diameter-push/dictionary/e2m-push.json` (the freeDiameter `dict_json`
form, which is the one source of the codes): importing this module registers the
application's AVPs (`diameter.message.avp.register`) and its command
(`diameter.message.commands.register`), so that python-diameter decodes our
vendor AVPs by name and can build E2M-Key-Push-Request/Answer messages.

The wire format is specified in `crates/e2m-diameter-push/SPEC.md`. Everything
here is written from that spec, not from the Rust code, so that the interop tests
compare two independent readings of it.
"""
from __future__ import annotations

import datetime
import json
import os
import struct
from typing import Any

from diameter.message import DefinedMessage, MessageHeader
from diameter.message.avp import (Avp, AvpEnumerated, AvpOctetString, AvpTime,
                                  AvpUnsigned32)
from diameter.message.avp import avp as avp_module
from diameter.message.avp.generator import AvpGenDef
from diameter.message.avp.grouped import ExperimentalResult, FailedAvp
from diameter.message.commands import register as register_command
from diameter.message.commands._attributes import assign_attr_from_defs
from diameter.message.constants import (AVP_AUTH_SESSION_STATE,
                                        AVP_DESTINATION_HOST,
                                        AVP_DESTINATION_REALM,
                                        AVP_ERROR_MESSAGE,
                                        AVP_ERROR_REPORTING_HOST,
                                        AVP_EXPERIMENTAL_RESULT,
                                        AVP_FAILED_AVP, AVP_ORIGIN_HOST,
                                        AVP_ORIGIN_REALM, AVP_ORIGIN_STATE_ID,
                                        AVP_PROXY_INFO, AVP_RESULT_CODE,
                                        AVP_ROUTE_RECORD, AVP_SESSION_ID,
                                        AVP_USER_NAME)
from diameter.message.avp.grouped import ProxyInfo

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DICTIONARY = os.path.join(REPO, "crates", "e2m-diameter-push", "dictionary",
                          "e2m-push.json")

with open(DICTIONARY, encoding="utf-8") as _f:
    DICT: dict[str, Any] = json.load(_f)

VENDOR_ID: int = DICT["Vendors"][0]["Code"]
APPLICATION_ID: int = DICT["Applications"][0]["Code"]
COMMAND_CODE: int = DICT["Commands"][0]["Code"]
AVP_CODES: dict[str, int] = {a["Name"]: a["Code"] for a in DICT["AVPs"]}

AVP_E2M_KEY_ID = AVP_CODES["E2M-Key-Id"]
AVP_E2M_KEY_ID_SCHEME = AVP_CODES["E2M-Key-Id-Scheme"]
AVP_E2M_INT_KEY = AVP_CODES["E2M-Int-Key"]
AVP_E2M_CREATION_TIME = AVP_CODES["E2M-Creation-Time"]
AVP_E2M_CREATION_TIME_FRACTION = AVP_CODES["E2M-Creation-Time-Fraction"]
AVP_E2M_KEY_EXPIRY_TIME = AVP_CODES["E2M-Key-Expiry-Time"]

SCHEME_RAND_LSB32 = 0
SCHEME_SHORT_HASH = 1

# Base result codes (RFC 6733 section 7.1) used by the push.
DIAMETER_SUCCESS = 2001
DIAMETER_TOO_BUSY = 3004
DIAMETER_AVP_UNSUPPORTED = 5001
DIAMETER_AUTHORIZATION_REJECTED = 5003
DIAMETER_INVALID_AVP_VALUE = 5004
DIAMETER_MISSING_AVP = 5005
DIAMETER_AVP_NOT_ALLOWED = 5008
DIAMETER_AVP_OCCURS_TOO_MANY_TIMES = 5009
DIAMETER_UNABLE_TO_COMPLY = 5012
# Experimental-Result-Code under our Vendor-Id (SPEC.md "Result codes").
E2M_ERROR_USER_UNKNOWN = 5001

NO_STATE_MAINTAINED = 1

_TYPES = {"Unsigned32": AvpUnsigned32, "Enumerated": AvpEnumerated,
          "OctetString": AvpOctetString, "Time": AvpTime}

for _a in DICT["AVPs"]:
    avp_module.register(avp=_a["Code"], name=_a["Name"],
                        type_cls=_TYPES[_a["Type"]], vendor=_a["Vendor"],
                        mandatory="M" in _a["Flags"]["Must"])

# --------------------------------------------------------------------------- #
# Diameter Time (RFC 6733 section 4.3.1): the first 4 octets of an NTP timestamp,
# with RFC 4330 section 3's era rule (most significant bit clear: the era that
# starts 2036-02-07T06:28:16Z). Done here on raw octets because python-diameter's
# AvpTime decodes to a naive *local-time* datetime.
# --------------------------------------------------------------------------- #
_NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_ERA1_UNIX = 2_085_978_496        # 2036-02-07T06:28:16Z as Unix seconds


def time_to_octets(unix_seconds: int) -> bytes:
    """Unix seconds (1968-01-20 .. 2104-02-07) as the 4 octets of a Time AVP."""
    if unix_seconds >= _ERA1_UNIX:
        ntp = unix_seconds - _ERA1_UNIX
        if ntp >= 0x8000_0000:
            raise ValueError("after 2104-02-07: not representable")
    else:
        ntp = unix_seconds + _NTP_UNIX_OFFSET
        if ntp < 0x8000_0000:
            raise ValueError("before 1968-01-20: not representable")
    return struct.pack("!I", ntp)


def octets_to_time(octets: bytes) -> int:
    """The Unix seconds a Time AVP's 4 octets name."""
    if len(octets) != 4:
        raise ValueError("a Time AVP carries exactly 4 octets")
    (ntp,) = struct.unpack("!I", octets)
    if ntp & 0x8000_0000:
        return ntp - _NTP_UNIX_OFFSET
    return ntp + _ERA1_UNIX


def iso(unix_ms: int) -> str:
    t = datetime.datetime.fromtimestamp(unix_ms / 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{unix_ms % 1000:03d}Z"


def time_avp(code: int, unix_seconds: int, mandatory: bool) -> Avp:
    a = Avp.new(code, VENDOR_ID, is_mandatory=mandatory)
    a.payload = time_to_octets(unix_seconds)
    return a


# --------------------------------------------------------------------------- #
# The command (python-diameter's documented custom command registration).
# --------------------------------------------------------------------------- #
class E2mKeyPush(DefinedMessage):
    """E2M-Key-Push (SPEC.md "Messages")."""
    code: int = COMMAND_CODE
    name: str = "E2M-Key-Push"

    def __post_init__(self):
        self.header.command_code = self.code
        self.header.application_id = APPLICATION_ID
        super().__post_init__()

    @classmethod
    def type_factory(cls, header: MessageHeader):
        return E2mKeyPushRequest if header.is_request else E2mKeyPushAnswer


class E2mKeyPushRequest(E2mKeyPush):
    name = "E2M-Key-Push-Request"
    avp_def = (
        AvpGenDef("session_id", AVP_SESSION_ID, is_required=True),
        AvpGenDef("auth_session_state", AVP_AUTH_SESSION_STATE, is_required=True),
        AvpGenDef("origin_host", AVP_ORIGIN_HOST, is_required=True),
        AvpGenDef("origin_realm", AVP_ORIGIN_REALM, is_required=True),
        AvpGenDef("destination_realm", AVP_DESTINATION_REALM, is_required=True),
        AvpGenDef("destination_host", AVP_DESTINATION_HOST),
        AvpGenDef("user_name", AVP_USER_NAME, is_required=True),
        AvpGenDef("e2m_key_id_scheme", AVP_E2M_KEY_ID_SCHEME, VENDOR_ID, is_required=True),
        AvpGenDef("e2m_key_id", AVP_E2M_KEY_ID, VENDOR_ID),
        AvpGenDef("e2m_int_key", AVP_E2M_INT_KEY, VENDOR_ID, is_required=True),
        # E2M-Creation-Time (and its fraction, after it) are appended as raw AVPs
        # (see build_request): AvpTime's setter wants a datetime, and its getter
        # answers in local time.
        AvpGenDef("origin_state_id", AVP_ORIGIN_STATE_ID),
        AvpGenDef("proxy_info", AVP_PROXY_INFO, type_class=ProxyInfo),
        AvpGenDef("route_record", AVP_ROUTE_RECORD),
    )

    def __post_init__(self):
        super().__post_init__()
        self.header.is_request = True
        self.header.is_proxyable = True
        assign_attr_from_defs(self, self._avps)
        self._avps = []


class E2mKeyPushAnswer(E2mKeyPush):
    name = "E2M-Key-Push-Answer"
    avp_def = (
        AvpGenDef("session_id", AVP_SESSION_ID, is_required=True),
        AvpGenDef("auth_session_state", AVP_AUTH_SESSION_STATE),
        AvpGenDef("origin_host", AVP_ORIGIN_HOST, is_required=True),
        AvpGenDef("origin_realm", AVP_ORIGIN_REALM, is_required=True),
        AvpGenDef("result_code", AVP_RESULT_CODE),
        AvpGenDef("experimental_result", AVP_EXPERIMENTAL_RESULT,
                  type_class=ExperimentalResult),
        AvpGenDef("error_message", AVP_ERROR_MESSAGE, is_mandatory=False),
        AvpGenDef("error_reporting_host", AVP_ERROR_REPORTING_HOST, is_mandatory=False),
        AvpGenDef("failed_avp", AVP_FAILED_AVP, type_class=FailedAvp),
        AvpGenDef("origin_state_id", AVP_ORIGIN_STATE_ID),
        AvpGenDef("proxy_info", AVP_PROXY_INFO, type_class=ProxyInfo),
    )

    def __post_init__(self):
        super().__post_init__()
        self.header.is_request = False
        self.header.is_proxyable = True
        assign_attr_from_defs(self, self._avps)
        self._avps = []

    def __getattr__(self, name):
        # An answer that carries Experimental-Result has no Result-Code. python-diameter
        # 0.9.0 counts the Result-Code of every answer it sends whenever
        # `hasattr(answer, "result_code")`, and DefinedMessage answers None for an unset
        # defined AVP: int(None / 1000) then raises in the sending thread, which stops
        # all later answers of the application. Unset, it is absent here.
        if name == "result_code":
            raise AttributeError(name)
        return super().__getattr__(name)


register_command(E2mKeyPush)


def build_request(*, session_id: str, origin_host: str, origin_realm: str,
                  destination_realm: str, imsi: str, int_key: bytes,
                  created_ms: int, key_id: int | None = None,
                  destination_host: str | None = None) -> E2mKeyPushRequest:
    """An E2M-Key-Push-Request; `key_id` None means "EMKS computes the short hash"."""
    r = E2mKeyPushRequest()
    r.session_id = session_id
    r.auth_session_state = NO_STATE_MAINTAINED
    r.origin_host = origin_host.encode()
    r.origin_realm = origin_realm.encode()
    r.destination_realm = destination_realm.encode()
    if destination_host:
        r.destination_host = destination_host.encode()
    r.user_name = imsi
    if key_id is None:
        r.e2m_key_id_scheme = SCHEME_SHORT_HASH
    else:
        r.e2m_key_id_scheme = SCHEME_RAND_LSB32
        r.e2m_key_id = key_id
    r.e2m_int_key = int_key
    r.append_avp(time_avp(AVP_E2M_CREATION_TIME, created_ms // 1000, True))
    if created_ms % 1000:
        frac = Avp.new(AVP_E2M_CREATION_TIME_FRACTION, VENDOR_ID, is_mandatory=False)
        frac.payload = struct.pack("!I", created_ms % 1000)
        r.append_avp(frac)
    return r


def _avps_of(msg) -> list[Avp]:
    return list(msg.avps)


def find(msg, code: int, vendor: int = 0) -> list[Avp]:
    return [a for a in _avps_of(msg) if a.code == code and a.vendor_id == vendor]


class PushError(Exception):
    """A request that the spec says to refuse: result code, text, failed AVP."""

    def __init__(self, result_code: int, text: str, failed: Avp | None):
        super().__init__(text)
        self.result_code = result_code
        self.failed = failed


def parse_request(msg) -> dict[str, Any]:
    """The push's fields as SPEC.md reads them, or PushError with the refusal."""
    def one(code, vendor=0, required=True):
        found = find(msg, code, vendor)
        if len(found) > 1:
            raise PushError(DIAMETER_AVP_OCCURS_TOO_MANY_TIMES,
                            "AVP occurs more than once", found[1])
        if not found:
            if required:
                missing = Avp.new(code, vendor)
                missing.payload = b"\x00\x00\x00\x00"
                raise PushError(DIAMETER_MISSING_AVP, "missing AVP", missing)
            return None
        return found[0]

    # An unknown AVP with the M bit set (SPEC.md: 5001 DIAMETER_AVP_UNSUPPORTED).
    known = {(c, VENDOR_ID) for c in AVP_CODES.values()}
    for a in _avps_of(msg):
        if a.vendor_id == VENDOR_ID and (a.code, a.vendor_id) not in known and a.is_mandatory:
            raise PushError(DIAMETER_AVP_UNSUPPORTED, "unknown mandatory AVP", a)
    if find(msg, AVP_E2M_KEY_EXPIRY_TIME, VENDOR_ID):
        raise PushError(DIAMETER_AVP_NOT_ALLOWED, "E2M-Key-Expiry-Time in a request",
                        find(msg, AVP_E2M_KEY_EXPIRY_TIME, VENDOR_ID)[0])

    state = one(AVP_AUTH_SESSION_STATE)
    if state.payload != struct.pack("!I", NO_STATE_MAINTAINED):
        raise PushError(DIAMETER_INVALID_AVP_VALUE,
                        "Auth-Session-State is not NO_STATE_MAINTAINED", state)
    user = one(AVP_USER_NAME)
    imsi = user.payload.decode("ascii", "replace")
    if not (6 <= len(imsi) <= 15 and imsi.isdigit() and imsi.isascii()):
        raise PushError(DIAMETER_INVALID_AVP_VALUE, "User-Name is not an IMSI", user)
    scheme_avp = one(AVP_E2M_KEY_ID_SCHEME, VENDOR_ID)
    (scheme,) = struct.unpack("!i", scheme_avp.payload)
    key_id_avp = one(AVP_E2M_KEY_ID, VENDOR_ID, required=False)
    if scheme == SCHEME_RAND_LSB32:
        if key_id_avp is None:
            missing = Avp.new(AVP_E2M_KEY_ID, VENDOR_ID)
            missing.payload = b"\x00\x00\x00\x00"
            raise PushError(DIAMETER_MISSING_AVP, "E2M-Key-Id missing", missing)
        (key_id,) = struct.unpack("!I", key_id_avp.payload)
    elif scheme == SCHEME_SHORT_HASH:
        if key_id_avp is not None:
            raise PushError(DIAMETER_AVP_NOT_ALLOWED, "E2M-Key-Id with SHORT_HASH", key_id_avp)
        key_id = None
    else:
        raise PushError(DIAMETER_INVALID_AVP_VALUE, "unknown key id scheme", scheme_avp)
    key_avp = one(AVP_E2M_INT_KEY, VENDOR_ID)
    if len(key_avp.payload) != 32:
        raise PushError(DIAMETER_INVALID_AVP_VALUE, "E2M-Int-Key is not 32 octets", key_avp)
    created_avp = one(AVP_E2M_CREATION_TIME, VENDOR_ID)
    created_ms = octets_to_time(created_avp.payload) * 1000
    frac_avp = one(AVP_E2M_CREATION_TIME_FRACTION, VENDOR_ID, required=False)
    if frac_avp is not None:
        (frac,) = struct.unpack("!I", frac_avp.payload)
        if frac > 999:
            raise PushError(DIAMETER_INVALID_AVP_VALUE, "fraction over 999 ms", frac_avp)
        created_ms += frac
    return {
        "session_id": one(AVP_SESSION_ID).payload.decode(),
        "origin_host": one(AVP_ORIGIN_HOST).payload.decode(),
        "origin_realm": one(AVP_ORIGIN_REALM).payload.decode(),
        "destination_realm": one(AVP_DESTINATION_REALM).payload.decode(),
        "imsi": imsi,
        "key_id_scheme": "RAND_LSB32" if key_id is not None else "SHORT_HASH",
        "key_id": None if key_id is None else f"{key_id:08x}",
        "int_key": key_avp.payload.hex(),
        "created": iso(created_ms),
        "created_ms": created_ms,
    }


def build_answer(request, *, origin_host: str, origin_realm: str,
                 result_code: int | None = DIAMETER_SUCCESS,
                 experimental_code: int | None = None,
                 expiry_unix: int | None = None,
                 error_message: str | None = None,
                 failed: Avp | None = None) -> E2mKeyPushAnswer:
    """The answer to `request` (same hop-by-hop and end-to-end ids)."""
    a = E2mKeyPushAnswer()
    a.header.hop_by_hop_identifier = request.header.hop_by_hop_identifier
    a.header.end_to_end_identifier = request.header.end_to_end_identifier
    a.header.application_id = request.header.application_id
    a.session_id = request.session_id
    a.auth_session_state = NO_STATE_MAINTAINED
    a.origin_host = origin_host.encode()
    a.origin_realm = origin_realm.encode()
    if experimental_code is not None:
        a.experimental_result = ExperimentalResult(
            vendor_id=VENDOR_ID, experimental_result_code=experimental_code)
    else:
        a.result_code = result_code
        if 3000 <= result_code < 4000:
            a.header.is_error = True
    if error_message:
        a.error_message = error_message
    if failed is not None:
        a.failed_avp = FailedAvp(additional_avps=[failed])
    if request.proxy_info:
        a.proxy_info = request.proxy_info
    if expiry_unix is not None:
        a.append_avp(time_avp(AVP_E2M_KEY_EXPIRY_TIME, expiry_unix, False))
    return a


def answer_summary(answer) -> dict[str, Any]:
    """What an answer says, as JSON-friendly values."""
    out: dict[str, Any] = {
        "command": answer.header.command_code,
        "application_id": answer.header.application_id,
        "end_to_end": f"{answer.header.end_to_end_identifier:08x}",
        "hop_by_hop": f"{answer.header.hop_by_hop_identifier:08x}",
        "e_bit": bool(answer.header.is_error),
    }
    rc = find(answer, AVP_RESULT_CODE)
    if rc:
        out["result_code"] = struct.unpack("!I", rc[0].payload)[0]
    er = find(answer, AVP_EXPERIMENTAL_RESULT)
    if er:
        inner = er[0].value
        out["experimental_result"] = {
            ("vendor_id" if i.code == 266 else "code"): struct.unpack("!I", i.payload)[0]
            for i in inner}
    for code, key in ((AVP_ORIGIN_HOST, "origin_host"), (AVP_SESSION_ID, "session_id"),
                      (AVP_ERROR_MESSAGE, "error_message")):
        f = find(answer, code)
        if f:
            out[key] = f[0].payload.decode(errors="replace")
    exp = find(answer, AVP_E2M_KEY_EXPIRY_TIME, VENDOR_ID)
    if exp:
        out["key_expiry"] = iso(octets_to_time(exp[0].payload) * 1000)
    return out
