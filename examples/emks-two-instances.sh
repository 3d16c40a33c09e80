#!/usr/bin/env bash
# Two EMKS instances on one PostgreSQL database (issue 8): any instance serves any request.
#
#   bash examples/emks-two-instances.sh
#
# On a fresh machine with Rust stable (Debian or Ubuntu): installs PostgreSQL's server
# binaries if missing (`.ci/postgres install`: apt-get, as root or with sudo; no cluster is
# created by the package), builds the `emks`, `hss`, `emse` and `ue` examples, starts a
# throwaway PostgreSQL cluster on 127.0.0.1 (`.ci/postgres start`; as root it runs as
# `nobody`), and two `emks --store postgres` processes on it, A and B, with the same
# certificates and KEK file. Then:
#
#   1. the `hss` example pushes a UE's e2m_int_key through A;
#   2. an EMSE registers through A (POST, with curl and its client certificate), fetches
#      the UE's key through B with that session (GET → 200), deregisters through B, and
#      finds the session gone through A (404);
#   3. the `emse` example registers with B and the `ue` example opens a DTLS-PSK session
#      with it: the key pushed through A is served by B to a real EMSE and handshake.
#
# Everything it started is stopped and removed at the end, also on failure or Ctrl-C.
# Needs curl and python3 (to pick free ports); exits non-zero if any step fails.
set -euo pipefail

cd "$(dirname "$0")/.."
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y $tool)" >&2; exit 1; }
done

bash .ci/postgres install
cargo build -q --example emks --example hss --example emse --example ue
target_dir=$(cargo metadata -q --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/debug/examples"

work=$(mktemp -d "${TMPDIR:-/tmp}/e2m-two-instances.XXXXXX")
# The cluster's directory beside it, not inside: as root the server runs as `nobody`, which
# may not enter the private (0700) work directory that holds the keys.
pg_dir="$work-pg"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -d "$pg_dir" ] && bash .ci/postgres stop "$pg_dir"
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

free_port() {
  python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_$1); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}

# Waits (at most 60 s) until file $1 holds a line starting with $2; prints the rest of it.
wait_line() {
  local file=$1 prefix=$2 pid=$3
  for _ in $(seq 600); do
    if line=$(grep -m1 "^$prefix" "$file" 2>/dev/null); then
      echo "${line#"$prefix"}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "process $pid ended; its log:" >&2; cat "$file".log >&2 || true; return 1; }
    sleep 0.1
  done
  echo "timed out waiting for '$prefix' in $file" >&2
  return 1
}

IMSI=001010123456789
APP=sensor-17@iot.example.com
K=465b5ce8b199b49faa5f0a2ee238a6bc
OPC=cd63cb71954a9f4e48a5994e37a02baf
RAND=23553cbe9637a89d218ae64dae47bf35
KEY_ID=ae47bf35 # RAND-LSB32: the last 4 octets of RAND

say "A throwaway PostgreSQL on loopback"
E2M_DATABASE_URL=$(bash .ci/postgres start "$pg_dir")
export E2M_DATABASE_URL
echo "PostgreSQL: $E2M_DATABASE_URL (data in $pg_dir)"

say "Certificates and a KEK file shared by both instances"
"$bin/emks" gen-pki --dir "$work/pki" --emse emse-a
"$bin/emks" gen-kek --out "$work/kek-1"

say "EMKS instances A and B on the same database (--store postgres)"
for name in a b; do
  "$bin/emks" --store postgres --kek-file "$work/kek-1" --certs "$work/pki" \
    --listen 127.0.0.1:0 --pool-size 4 \
    --provision "emse-a,$APP,$IMSI" >"$work/emks-$name" 2>"$work/emks-$name.log" &
  pids+=($!)
  url=$(wait_line "$work/emks-$name" "EMKS listening on " $!)
  printf -v "url_$name" '%s' "$url"
  echo "EMKS ${name^^}: $url"
done

say "1. The HSS pushes through A"
"$bin/hss" --emks "$url_a" --certs "$work/pki" --imsi "$IMSI" --k "$K" --opc "$OPC" --rand "$RAND"

say "2. An EMSE registers through A and fetches through B (curl with emse-a's certificate)"
# As a stock client checks the EMKS (crates/e2m-https/README.md): the e2m CA only, and the
# EMKS addressed by its own host name (emks.e2m.test, which no EMSE certificate carries),
# mapped to each instance's address.
port_a=${url_a##*:} port_b=${url_b##*:}
mtls=(--silent --show-error --max-time 10 --noproxy '*' --cacert "$work/pki/ca.pem"
  --cert "$work/pki/emse-emse-a.pem" --key "$work/pki/emse-emse-a.key"
  --resolve "emks.e2m.test:$port_a:127.0.0.1" --resolve "emks.e2m.test:$port_b:127.0.0.1")
url_a=https://emks.e2m.test:$port_a url_b_ip=$url_b url_b=https://emks.e2m.test:$port_b
registration='<?xml version="1.0" encoding="UTF-8"?><registration xmlns="urn:e2m:xml:ns:emse-emks:1"><emseId>emse-a</emseId></registration>'
answer=$(curl "${mtls[@]}" -H 'content-type: application/xml' --data-binary "$registration" \
  -w '\n%{http_code}' "$url_a/e2m/v1/sessions")
status=${answer##*$'\n'}
session=$(sed -n 's:.*<sessionId>\([^<]*\)</sessionId>.*:\1:p' <<<"$answer")
[ "$status" = 201 ] && [ -n "$session" ] || { echo "registration through A: HTTP $status" >&2; exit 1; }
echo "EMSE: POST $url_a/e2m/v1/sessions → 201 Created (session established on A)"
fetch="/e2m/v1/sessions/$session/keys?appIdentity=sensor-17%40iot.example.com&keyId=$KEY_ID"
answer=$(curl "${mtls[@]}" -w '\n%{http_code}' "$url_b$fetch")
status=${answer##*$'\n'}
served_id=$(sed -n 's:.*<keyId>\([^<]*\)</keyId>.*:\1:p' <<<"$answer")
[ "$status" = 200 ] && [ "$served_id" = "$KEY_ID" ] || { echo "fetch through B: HTTP $status" >&2; exit 1; }
echo "EMSE: GET $url_b/e2m/v1/sessions/…/keys → 200, e2m_key for key id $served_id (session of A, served by B; key not shown)"
status=$(curl "${mtls[@]}" -o /dev/null -w '%{http_code}' -X DELETE "$url_b/e2m/v1/sessions/$session")
[ "$status" = 204 ] || { echo "deregistration through B: HTTP $status" >&2; exit 1; }
echo "EMSE: DELETE through B → 204"
status=$(curl "${mtls[@]}" -o /dev/null -w '%{http_code}' "$url_a$fetch")
[ "$status" = 404 ] || { echo "fetch through A after deregistration: HTTP $status" >&2; exit 1; }
echo "EMSE: GET through A on that session → 404 (deregistered through B: gone for A too)"

say "3. The emse example on B, a UE on the key pushed through A"
port=$(free_port DGRAM)
"$bin/emse" --listen "127.0.0.1:$port" --emks "$url_b_ip" --certs "$work/pki" --emse-id emse-a \
  >"$work/emse" 2>"$work/emse.log" &
pids+=($!)
wait_line "$work/emse" "EMSE: registered" $! >/dev/null
echo "EMSE: registered with B, DTLS-PSK on 127.0.0.1:$port"
"$bin/ue" --connect "127.0.0.1:$port" --identity "$APP" --k "$K" --opc "$OPC" --rand "$RAND" --emse-id emse-a
echo "EMSE's side:"
sed 's/^/  /' "$work/emse"

say "Done: a key pushed through instance A was served by instance B (cleaning up)"
