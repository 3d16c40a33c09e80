#!/usr/bin/env python3
"""A python-diameter peer acting as the HSS: pushes e2m keys to a peer (an EMKS, or a
relay agent in front of one) and reports every answer as a JSON line on stdout.

It connects over TCP to --peer-addr:--peer-port, expecting the peer's CEA to carry
Origin-Host --peer-host (python-diameter checks it), exchanges CER/CEA, answers and
sends DWR/DWA (every --tw seconds of silence), sends the pushes, waits --hold seconds,
then leaves with DPR/DPA. Pushes come from --generate N (deterministic test values)
or, with --stdin, one JSON object per line:
    {"imsi": "001010000000001", "key_id": "00000001" | null, "int_key": "<64 hex>",
     "created_ms": 1795771800017}
(key_id null: the SHORT_HASH scheme, the EMKS computes the key id).

Output, one JSON object per line (field "event"):
    base      a CER/CEA/DWR/DWA/DPR/DPA sent ("dir": "out") or received ("in")
    ready     the application has a peer that finished CER/CEA
    answer    one push's answer: result_code or experimental_result, e_bit, key_expiry,
              plus the push's imsi, key_id, end_to_end, retransmit (T flag sent)
    timeout   no answer within --answer-timeout seconds (or no peer to send to)
    error     something failed before any push (exit status 2)
    done      the counts; exit status 0 if every push got a final answer, 1 otherwise
With --retries N, a push that got no answer, DIAMETER_UNABLE_TO_DELIVER (3002) or
DIAMETER_TOO_BUSY (3004) is sent again, with the T flag and the same end-to-end id,
up to N times.

Example (the relay of tests/diameter/README.md listening on 3868):
    python3 hss_peer.py --peer-host relay.relay.test --peer-realm relay.test \
        --peer-port 3868 --dest-realm emks.test --generate 3
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time

from diameter.node import Node
from diameter.node.application import SimpleThreadingApplication

import e2m_push as e2m
from peer_common import emit, fail, record_to, watch_base_messages


# Protocol errors after which the push is sent again (with --retries): not delivered
# (e.g. a relay without its next hop yet) and too busy (the EMKS's backpressure).
RETRYABLE = {3002, 3004}


def generated(n: int, base_ms: int) -> list[dict]:
    """Deterministic test pushes: IMSI 00101000000000i, key id i, key = SHA-256("e2m-test-i")."""
    return [{"imsi": f"00101{i:010d}", "key_id": f"{i:08x}",
             "int_key": hashlib.sha256(f"e2m-test-{i}".encode()).hexdigest(),
             "created_ms": base_ms + i} for i in range(1, n + 1)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--origin-host", default="hss.hss.test")
    p.add_argument("--realm", default="hss.test")
    p.add_argument("--peer-host", required=True, help="the peer's Diameter identity")
    p.add_argument("--peer-realm", required=True)
    p.add_argument("--peer-addr", default="127.0.0.1")
    p.add_argument("--peer-port", type=int, required=True)
    p.add_argument("--dest-realm", default="emks.test")
    p.add_argument("--dest-host", default=None)
    p.add_argument("--generate", type=int, default=0, metavar="N")
    p.add_argument("--stdin", action="store_true", help="read pushes as JSON lines")
    p.add_argument("--retransmit", action="store_true",
                   help="send every push a second time, with the T flag and the same "
                        "end-to-end id (RFC 6733 section 5.5.4)")
    p.add_argument("--retries", type=int, default=0,
                   help="resend a push that got no answer (T flag, same end-to-end id) "
                        "up to this many times")
    p.add_argument("--retry-delay", type=float, default=1.0)
    p.add_argument("--reconnect", type=int, default=2,
                   help="seconds before reconnecting a lost peer connection")
    p.add_argument("--tw", type=int, default=30, help="watchdog: idle seconds before a DWR")
    p.add_argument("--ready-timeout", type=float, default=20)
    p.add_argument("--answer-timeout", type=int, default=10)
    p.add_argument("--interval", type=float, default=0, help="seconds between pushes")
    p.add_argument("--hold", type=float, default=0,
                   help="seconds to stay connected after the last answer (watchdog)")
    p.add_argument("--record", default=None, help="also append the events to this file")
    p.add_argument("--debug", action="store_true")
    a = p.parse_args()
    record_to(a.record)
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.WARNING,
                        stream=sys.stderr)

    pushes = generated(a.generate, int(time.time() * 1000))
    if a.stdin:
        pushes += [json.loads(line) for line in sys.stdin if line.strip()]
    if not pushes:
        fail("no pushes: give --generate N or --stdin")

    node = Node(a.origin_host, a.realm, vendor_ids=[e2m.VENDOR_ID])
    node.vendor_id = e2m.VENDOR_ID
    node.product_name = "e2m interop HSS (python-diameter)"
    node.idle_timeout = a.tw
    node.wakeup_interval = 1
    watch_base_messages(node)
    peer = node.add_peer(f"aaa://{a.peer_host}:{a.peer_port};transport=tcp",
                         a.peer_realm, ip_addresses=[a.peer_addr], is_persistent=True)
    # Reconnect soon, and also after the peer's DPR: freeDiameter sends DPR with
    # Disconnect-Cause REBOOTING when stopped, and python-diameter's default is to wait
    # 30 s and never to reconnect after a DPR.
    peer.reconnect_wait = a.reconnect
    peer.always_reconnect = True
    app = SimpleThreadingApplication(e2m.APPLICATION_ID, is_auth_application=True,
                                     request_handler=lambda app, msg: None)
    node.add_application(app, [peer], realms=[a.dest_realm])
    node.start()
    answered = 0
    succeeded = 0
    try:
        try:
            app.wait_for_ready(timeout=a.ready_timeout)
        except Exception as e:  # noqa: BLE001 -- reported, then exit 2
            fail(f"no peer ready within {a.ready_timeout}s: {e}")
        emit("ready", peer=a.peer_host)
        for push in pushes:
            key_id = push.get("key_id")
            req = e2m.build_request(
                session_id=node.session_generator.next_id(),
                origin_host=a.origin_host, origin_realm=a.realm,
                destination_realm=a.dest_realm, destination_host=a.dest_host,
                imsi=push["imsi"], int_key=bytes.fromhex(push["int_key"]),
                created_ms=int(push["created_ms"]),
                key_id=None if key_id is None else int(key_id, 16))
            e2e = node.end_to_end_seq.next_sequence()
            tries = 0
            t_flag = False
            sends_left = 2 if a.retransmit else 1
            while sends_left > 0:
                req.header.end_to_end_identifier = e2e
                req.header.hop_by_hop_identifier = 0  # a new one per sending
                req.header.is_retransmit = t_flag
                try:
                    ans = app.send_request(req, timeout=a.answer_timeout)
                except Exception as e:  # noqa: BLE001 -- no answer is an outcome here
                    emit("timeout", imsi=push["imsi"], key_id=key_id,
                         end_to_end=f"{e2e:08x}", retransmit=t_flag,
                         reason=f"{type(e).__name__}: {e}")
                    tries += 1
                    if tries > a.retries:
                        break
                    # RFC 6733 section 5.5.4: resent after a failover with the T flag
                    # and the same end-to-end id, so that the receiver can see it.
                    t_flag = True
                    time.sleep(a.retry_delay)
                    try:
                        app.wait_for_ready(timeout=a.ready_timeout)
                    except Exception:  # noqa: BLE001 -- the next send reports it
                        pass
                    continue
                summary = e2m.answer_summary(ans)
                emit("answer", imsi=push["imsi"], key_id=key_id, retransmit=t_flag,
                     **summary)
                if summary.get("result_code") in RETRYABLE and tries < a.retries:
                    # Not delivered, or the EMKS is busy: try again later (T flag).
                    tries += 1
                    t_flag = True
                    time.sleep(a.retry_delay)
                    continue
                answered += 1
                if summary.get("result_code") == e2m.DIAMETER_SUCCESS:
                    succeeded += 1
                sends_left -= 1
                t_flag = True
            if a.interval:
                time.sleep(a.interval)
        if a.hold:
            time.sleep(a.hold)
    finally:
        node.stop(wait_timeout=10)
    expected = len(pushes) * (2 if a.retransmit else 1)
    emit("done", pushes=len(pushes), answers=answered, successes=succeeded,
         expected=expected)
    return 0 if answered == expected else 1


if __name__ == "__main__":
    sys.exit(main())
