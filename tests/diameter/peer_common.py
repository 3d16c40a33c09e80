"""What the two python-diameter peers share: JSON-line output and base-message events."""
from __future__ import annotations

import json
import sys
import threading
import time

_BASE = {257: ("CER", "CEA"), 280: ("DWR", "DWA"), 282: ("DPR", "DPA")}
_lock = threading.Lock()
_record = None


def record_to(path: str | None) -> None:
    """Also append every event to `path` (JSON lines)."""
    global _record
    if path:
        _record = open(path, "a", encoding="utf-8")


def emit(event: str, **fields) -> None:
    """One JSON line on stdout (and in the record file), flushed at once."""
    line = json.dumps({"t": round(time.time(), 3), "event": event, **fields},
                      sort_keys=True)
    with _lock:
        print(line, flush=True)
        if _record:
            _record.write(line + "\n")
            _record.flush()


def watch_base_messages(node) -> None:
    """Report every CER/CEA, DWR/DWA, DPR/DPA the node sends or receives.

    python-diameter answers these itself; wrapping the node's own send and receive
    methods (instance attributes shadow the class's) lets the peers report them.
    """
    send, receive = node.send_message, node._receive_message

    def report(direction, conn, msg):
        names = _BASE.get(msg.header.command_code)
        if names:
            fields = {"dir": direction, "command": names[0 if msg.header.is_request else 1],
                      "peer": getattr(conn, "host_identity", None) or str(conn)}
            rc = getattr(msg, "result_code", None)
            if rc is not None and not msg.header.is_request:
                fields["result_code"] = rc
            emit("base", **fields)

    def sending(conn, msg):
        report("out", conn, msg)
        return send(conn, msg)

    def receiving(conn, msg):
        report("in", conn, msg)
        return receive(conn, msg)

    node.send_message = sending
    node._receive_message = receiving


def fail(message: str) -> None:
    emit("error", message=message)
    sys.exit(2)
