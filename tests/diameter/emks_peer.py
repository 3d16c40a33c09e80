#!/usr/bin/env python3
"""A python-diameter peer acting as the EMKS: receives e2m key pushes, answers them
as crates/e2m-diameter-push/SPEC.md says, and records what it received as JSON lines.

It listens on --listen:--port (TCP) and accepts CERs only from the peers named with
--peer (python-diameter answers DIAMETER_UNKNOWN_PEER to others); with --connect
ADDR:PORT it connects to the (first) --peer instead. It answers DWR/DPR itself.

Every push is checked as the spec says (missing, repeated, unknown-mandatory and
invalid AVPs are refused with the spec's Result-Code and a Failed-AVP), then "stored"
in memory by (IMSI, key id): a second push of a held key is answered success and not
stored again ("already held"), and a retransmission (T flag) of a request already
answered (same Origin-Host and end-to-end id) gets the same answer again and is not
stored twice ("duplicate"); one answered with a protocol error (3xxx, e.g.
DIAMETER_TOO_BUSY) was not processed and is processed again. python-diameter's own
duplicate check (which answers
DIAMETER_UNABLE_TO_COMPLY) is turned off so that this peer applies the spec's rule.

Refusals to order, for tests: --refuse IMSI=user-unknown|not-authorized|too-busy|CODE,
--busy-first N (DIAMETER_TOO_BUSY to the first N pushes), --allow-origin HOST (only
these Origin-Hosts may push; others get DIAMETER_AUTHORIZATION_REJECTED).

Output, one JSON object per line (field "event"): listening, base (as hss_peer.py),
push (imsi, key_id, key_id_scheme, int_key, created, origin_host, end_to_end,
retransmit, outcome: stored | already held | duplicate | refused, result), stopped.
Stops on SIGTERM/SIGINT (DPR to its peers first) or after --run-for seconds.

Example (behind the relay of tests/diameter/README.md):
    python3 emks_peer.py --port 3870 --peer relay.relay.test:relay.test --record emks.jsonl
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import time
import sys
import threading

from diameter.node import Node
from diameter.node.application import SimpleThreadingApplication

import e2m_push as e2m
from peer_common import emit, record_to, watch_base_messages

REFUSALS = {"user-unknown": ("experimental", e2m.E2M_ERROR_USER_UNKNOWN),
            "not-authorized": ("result", e2m.DIAMETER_AUTHORIZATION_REJECTED),
            "too-busy": ("result", e2m.DIAMETER_TOO_BUSY)}


class Emks:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.keys: dict[tuple[str, str | None, str], dict] = {}
        self.answered: dict[tuple[str, int], dict] = {}
        self.busy_left = args.busy_first
        self.refuse = {}
        for item in args.refuse:
            imsi, _, what = item.partition("=")
            self.refuse[imsi] = REFUSALS.get(what) or ("result", int(what))

    def handle(self, app, req):
        a = self.args
        origin = req.origin_host.decode() if req.origin_host else ""
        e2e = req.header.end_to_end_identifier
        base = {"end_to_end": f"{e2e:08x}", "origin_host": origin,
                "retransmit": bool(req.header.is_retransmit)}
        with self.lock:
            earlier = self.answered.get((origin, e2e))
            if earlier is not None and req.header.is_retransmit:
                emit("push", outcome="duplicate", **earlier["event"], **base)
                return e2m.build_answer(req, origin_host=a.origin_host,
                                        origin_realm=a.realm, **earlier["answer"])
            try:
                push = e2m.parse_request(req)
            except e2m.PushError as err:
                answer = {"result_code": err.result_code, "error_message": str(err),
                          "failed": err.failed}
                emit("push", outcome="refused", result=err.result_code,
                     reason=str(err), **base)
                self.answered[(origin, e2e)] = {"answer": answer,
                                                "event": {"result": err.result_code}}
                return e2m.build_answer(req, origin_host=a.origin_host,
                                        origin_realm=a.realm, **answer)
            fields = {k: push[k] for k in ("imsi", "key_id", "key_id_scheme", "int_key",
                                           "created")}
            answer, outcome = self.decide(origin, push)
            result = answer.get("experimental_code") or answer.get("result_code")
            # A protocol error (3xxx: DIAMETER_TOO_BUSY) means "not processed": its
            # retransmission is processed anew, not answered with the same error (SPEC.md,
            # "Semantics" 3; the e2m-diameter node does the same).
            if not (answer.get("result_code") or 0) // 1000 == 3:
                self.answered[(origin, e2e)] = {"answer": answer,
                                                "event": {**fields, "result": result}}
            emit("push", outcome=outcome, result=result, **fields, **base)
            return e2m.build_answer(req, origin_host=a.origin_host, origin_realm=a.realm,
                                    **answer)

    def decide(self, origin: str, push: dict) -> tuple[dict, str]:
        a = self.args
        if a.allow_origin and origin not in a.allow_origin:
            return {"result_code": e2m.DIAMETER_AUTHORIZATION_REJECTED}, "refused"
        if self.busy_left > 0:
            self.busy_left -= 1
            return {"result_code": e2m.DIAMETER_TOO_BUSY}, "refused"
        if push["imsi"] in self.refuse:
            kind, code = self.refuse[push["imsi"]]
            if kind == "experimental":
                return {"result_code": None, "experimental_code": code}, "refused"
            return {"result_code": code}, "refused"
        # The key id the EMKS files the key under: RAND-LSB32 as pushed; for SHORT_HASH
        # the real EMKS computes it from the key, this stand-in files it by the key.
        slot = (push["imsi"], push["key_id"], push["int_key"] if push["key_id"] is None else "")
        created_s = min(push["created_ms"], int(time.time() * 1000)) // 1000
        expiry = created_s + a.max_age
        ok = {"result_code": e2m.DIAMETER_SUCCESS, "expiry_unix": expiry}
        if slot in self.keys:
            return ok, "already held"
        self.keys[slot] = push
        return ok, "stored"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--origin-host", default="emks.emks.test")
    p.add_argument("--realm", default="emks.test")
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3868)
    p.add_argument("--peer", action="append", default=[], required=True,
                   metavar="HOST[:REALM]", help="a peer allowed to connect (repeatable)")
    p.add_argument("--connect", default=None, metavar="ADDR:PORT",
                   help="connect to the first --peer instead of waiting for it")
    p.add_argument("--serve-realm", action="append", default=[],
                   help="other Destination-Realms to accept pushes for")
    p.add_argument("--max-age", type=int, default=86400,
                   help="seconds a key is kept after its creation (E2M-Key-Expiry-Time)")
    p.add_argument("--refuse", action="append", default=[], metavar="IMSI=WHAT")
    p.add_argument("--busy-first", type=int, default=0, metavar="N")
    p.add_argument("--allow-origin", action="append", default=[], metavar="HOST")
    p.add_argument("--tw", type=int, default=30, help="watchdog: idle seconds before a DWR")
    p.add_argument("--run-for", type=float, default=0, help="stop after this many seconds")
    p.add_argument("--record", default=None, help="also append the events to this file")
    p.add_argument("--debug", action="store_true")
    a = p.parse_args()
    record_to(a.record)
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.WARNING,
                        stream=sys.stderr)

    node = Node(a.origin_host, a.realm, ip_addresses=[a.listen],
                tcp_port=None if a.connect else a.port, vendor_ids=[e2m.VENDOR_ID])
    node.vendor_id = e2m.VENDOR_ID
    node.product_name = "e2m interop EMKS (python-diameter)"
    node.idle_timeout = a.tw
    node.wakeup_interval = 1
    node.retransmit_queue_size = 0  # see the module docs: the spec's rule applies
    watch_base_messages(node)
    peers = []
    for i, spec in enumerate(a.peer):
        host, _, realm = spec.partition(":")
        if a.connect and i == 0:
            addr, _, port = a.connect.rpartition(":")
            peers.append(node.add_peer(f"aaa://{host}:{port};transport=tcp",
                                       realm or None, ip_addresses=[addr],
                                       is_persistent=True))
        else:
            peers.append(node.add_peer(f"aaa://{host}", realm or None))
    emks = Emks(a)
    app = SimpleThreadingApplication(e2m.APPLICATION_ID, is_auth_application=True,
                                     request_handler=emks.handle)
    node.add_application(app, peers, realms=[a.realm] + a.serve_realm)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    node.start()
    emit("listening", addr=a.listen, port=None if a.connect else a.port,
         origin_host=a.origin_host)
    stop.wait(a.run_for or None)
    # python-diameter's Node.stop sends DPR and waits for the DPAs, but it can hang
    # joining its threads when a peer went away first: bound it, then leave.
    stopper = threading.Thread(target=node.stop, kwargs={"wait_timeout": 5}, daemon=True)
    stopper.start()
    stopper.join(10)
    emit("stopped", keys=len(emks.keys), clean=not stopper.is_alive())
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
