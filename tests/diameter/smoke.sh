#!/usr/bin/env bash
# The by-hand proof of tests/diameter/README.md as one script: the python-diameter HSS
# pushes through freeDiameter to the python-diameter EMKS, over TCP and over TLS
# (two relays, GnuTLS between them), freeDiameter refuses peers it does not know, and
# a restart of the relay mid-run loses no acknowledged push.
# Everything listens on 127.0.0.1 from PORT_BASE (default 38800) up; everything it
# starts is stopped on exit. Exit status 0 only if every check passed.
#   bash tests/diameter/smoke.sh [WORKDIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$(mktemp -d)}"
base="${PORT_BASE:-38800}"
mkdir -p "$work"
pids=()
cleanup() {
  for w in tcp tls-a tls-b probe restart; do
    python3 "$here/fd_relay.py" stop --workdir "$work/$w" >/dev/null 2>&1 || true
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
fail=0
check() { # check NAME PYTHON-EXPRESSION-OVER hss, emks (lists of events)
  if python3 - "$work/$2-hss.jsonl" "$work/$2-emks.jsonl" "$3" <<'EOF'
import json, sys
hss = [json.loads(l) for l in open(sys.argv[1])]
emks = [json.loads(l) for l in open(sys.argv[2])]
sys.exit(0 if eval(sys.argv[3]) else 1)
EOF
  then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}
answers='[d for d in hss if d["event"] == "answer"]'
pushes='[d for d in emks if d["event"] == "push"]'

# 1. TCP: HSS -> relay (acl_wl ALLOW_IPSEC *.hss.test) -> EMKS (relay's ConnectPeer).
python3 "$here/emks_peer.py" --port $((base + 2)) --peer relay.relay.test:relay.test \
  --run-for 60 --record "$work/tcp-emks.jsonl" >/dev/null 2>"$work/tcp-emks.err" &
pids+=($!)
sleep 1
python3 "$here/fd_relay.py" start --workdir "$work/tcp" --mode tcp --port $((base + 1)) \
  --peer emks.emks.test=127.0.0.1:$((base + 2)) --allow '*.hss.test' >/dev/null
python3 "$here/hss_peer.py" --peer-host relay.relay.test --peer-realm relay.test \
  --peer-port $((base + 1)) --dest-realm emks.test --generate 3 --retransmit --tw 6 \
  --hold 14 --record "$work/tcp-hss.jsonl" >/dev/null 2>"$work/tcp-hss.err"
check "tcp: 6 answers, all 2001, from the EMKS" tcp \
  "len($answers) == 6 and all(d.get('result_code') == 2001 and d['origin_host'] == 'emks.emks.test' for d in $answers)"
check "tcp: 3 stored once, 3 retransmissions seen with the T flag" tcp \
  "sorted(d['outcome'] for d in $pushes) == ['duplicate'] * 3 + ['stored'] * 3 and all(d['retransmit'] for d in $pushes if d['outcome'] == 'duplicate')"
check "tcp: watchdog both ways (DWR/DWA) and DPR/DPA" tcp \
  "{d['command'] for d in hss if d['event'] == 'base'} >= {'DWR', 'DWA', 'DPR', 'DPA'}"

# 2. TLS: HSS -> relay A (plain, ALLOW_IPSEC) ==TLS==> relay B -> EMKS; A routes the
#    EMKS realm to B with rt_default. Certificates made now, in $work/certs.
python3 "$here/emks_peer.py" --port $((base + 5)) --peer relayb.relay.test:relay.test \
  --run-for 60 --record "$work/tls-emks.jsonl" >/dev/null 2>"$work/tls-emks.err" &
pids+=($!)
sleep 1
python3 "$here/fd_relay.py" start --workdir "$work/tls-b" --mode tls \
  --identity relayb.relay.test --port $((base + 6)) --sec-port $((base + 7)) \
  --certs "$work/certs" --peer emks.emks.test=127.0.0.1:$((base + 5)) \
  --allow relaya.relay.test --cert-for relaya.relay.test --cert-for hss.hss.test >/dev/null
python3 "$here/fd_relay.py" start --workdir "$work/tls-a" --mode tls \
  --identity relaya.relay.test --port $((base + 3)) --sec-port $((base + 4)) \
  --certs "$work/certs" --peer relayb.relay.test=127.0.0.1:$((base + 7)),tls \
  --allow-plain '*.hss.test' --route emks.test=relayb.relay.test >/dev/null
python3 "$here/hss_peer.py" --peer-host relaya.relay.test --peer-realm relay.test \
  --peer-port $((base + 3)) --dest-realm emks.test --generate 3 --tw 6 --stdin \
  --record "$work/tls-hss.jsonl" >/dev/null 2>"$work/tls-hss.err" <<'PUSH'
{"imsi": "001010123456789", "key_id": null, "int_key": "9b3e5a7c1d2f4860a1b2c3d4e5f60718293a4b5c6d7e8f9010213243546576f8", "created_ms": 1795771800017}
PUSH
check "tls: 4 answers 2001 through two relays and a TLS hop" tls \
  "len($answers) == 4 and all(d.get('result_code') == 2001 for d in $answers)"
check "tls: keys arrived unchanged; the SHORT_HASH one with its creation ms" tls \
  "sorted(d['int_key'] for d in $pushes if d['key_id']) == sorted(__import__('hashlib').sha256(f'e2m-test-{i}'.encode()).hexdigest() for i in (1, 2, 3)) and [(d['key_id_scheme'], d['created']) for d in $pushes if not d['key_id']] == [('SHORT_HASH', '2026-11-27T09:30:00.017Z')]"

# 3. Peers freeDiameter does not know.
python3 "$here/fd_relay.py" start --workdir "$work/probe" --mode tls \
  --identity relayc.relay.test --port $((base + 8)) --sec-port $((base + 9)) \
  --certs "$work/certs" --allow '*.hss.test' --cert-for other.elsewhere.test >/dev/null
probe() { python3 "$here/cer_probe.py" "$@"; }
c="$work/certs"
unknown=$(probe --port $((base + 8)) --origin-host stranger.other.test --origin-realm other.test)
if echo "$unknown" | grep -q '"result_code": 3010'; then echo "ok   unknown peer: DIAMETER_UNKNOWN_PEER";
else echo "FAIL unknown peer: $unknown"; fail=1; fi
known=$(probe --port $((base + 9)) --tls --ca "$c/ca.pem" --cert "$c/hss.hss.test.pem" \
  --key "$c/hss.hss.test.key" --server-name relayc.relay.test --origin-host hss.hss.test \
  --origin-realm hss.test --timeout 2)
if echo "$known" | grep -q '"result_code": 2001'; then echo "ok   whitelisted TLS peer: CEA 2001";
else echo "FAIL whitelisted TLS peer: $known"; fail=1; fi

# 4. The relay restarted mid-run: every push the HSS saw acknowledged is held by the
#    EMKS, none twice (the HSS resends with the T flag after no answer, 3002 or 3004).
python3 "$here/emks_peer.py" --port $((base + 11)) --peer relay.relay.test:relay.test \
  --run-for 60 --record "$work/restart-emks.jsonl" >/dev/null 2>"$work/restart-emks.err" &
pids+=($!)
sleep 1
python3 "$here/fd_relay.py" start --workdir "$work/restart" --mode tcp --port $((base + 10)) \
  --peer emks.emks.test=127.0.0.1:$((base + 11)) --allow '*.hss.test' >/dev/null
python3 "$here/hss_peer.py" --peer-host relay.relay.test --peer-realm relay.test \
  --peer-port $((base + 10)) --dest-realm emks.test --generate 12 --interval 0.5 \
  --retries 20 --answer-timeout 3 --record "$work/restart-hss.jsonl" \
  >/dev/null 2>"$work/restart-hss.err" &
hss_pid=$!
sleep 3
python3 "$here/fd_relay.py" restart --workdir "$work/restart" >/dev/null
wait "$hss_pid" || true
check "restart: 12 acknowledged, all held by the EMKS, none stored twice" restart \
  "(lambda ok, held, stored: len(ok) == 12 and ok <= held and len(stored) == len(set(stored)))({d['imsi'] for d in $answers if d.get('result_code') == 2001}, {d['imsi'] for d in $pushes if d['outcome'] in ('stored', 'already held', 'duplicate')}, [d['imsi'] for d in $pushes if d['outcome'] == 'stored'])"
exit $fail
