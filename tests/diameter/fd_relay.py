#!/usr/bin/env python3
"""Starts and stops freeDiameterd (Debian package freediameterd, 1.2.1) as a relay agent
on loopback, from the templates in tests/diameter/freediameter/.

    fd_relay.py start --workdir W --mode tcp --port 3868 \
        --peer emks.emks.test=127.0.0.1:3870 --allow '*.hss.test'
    fd_relay.py start --workdir W --mode tls --port 3868 --sec-port 5868 \
        --peer emks.emks.test=127.0.0.1:5870,tls --allow '*.hss.test' --cert-for hss.hss.test
    fd_relay.py restart --workdir W      # stop, then start again with the same files
    fd_relay.py stop --workdir W

`start` writes W/freeDiameter.conf (and W/acl_wl.conf), in TLS mode generates a test CA
and certificates in W/certs/ with openssl (ECDSA P-256; subjectAltName = the Diameter
identity; nothing is committed), starts freeDiameterd in its own session with its log
in W/freeDiameterd.log, waits until its listening sockets are open (read from
/proc/net/tcp, so that no probe connection reaches it), prints one JSON line
({"event": "listening", "pid", "port", "sec_port", "conf", "log", "certs"}) and
returns once every --peer connection is open too (freeDiameter's log shows it reach
STATE_OPEN; --no-wait-peers skips that), leaving the daemon running; `stop` ends it (SIGTERM, then SIGKILL after 10 s)
by the pid in W/freeDiameterd.pid. Exit status 2 when it did not come up (the log's
tail is printed).

--peer HOST=ADDR:PORT[,tls][,realm=R]: a ConnectPeer the relay connects to and keeps
connected (plain TCP unless ",tls"). --allow PATTERN: a peer the relay accepts
without knowing it in advance (acl_wl; "*.example" matches one leading label); in
tcp mode the pattern is whitelisted ALLOW_IPSEC, i.e. without TLS; in tls mode it
must use TLS (--allow-plain PATTERN whitelists without TLS in either mode).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "freediameter")
EXTDIR = "/usr/lib/freeDiameter"


def listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A":  # TCP_LISTEN
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_certs(certs: str, names: list[str]) -> None:
    """A throwaway CA and one certificate per Diameter identity (SAN DNS = identity)."""
    os.makedirs(certs, exist_ok=True)
    ca_key, ca = os.path.join(certs, "ca.key"), os.path.join(certs, "ca.pem")
    if not os.path.exists(ca):
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca_key)
        openssl("req", "-x509", "-new", "-key", ca_key, "-out", ca, "-days", "2",
                "-subj", "/CN=e2m interop test CA", "-addext",
                "basicConstraints=critical,CA:TRUE", "-addext",
                "keyUsage=critical,keyCertSign,cRLSign")
    for name in names:
        key, pem = os.path.join(certs, f"{name}.key"), os.path.join(certs, f"{name}.pem")
        if os.path.exists(pem):
            continue
        csr = os.path.join(certs, f"{name}.csr")
        ext = os.path.join(certs, f"{name}.ext")
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}")
        with open(ext, "w", encoding="ascii") as f:
            f.write(f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                "-CAcreateserial", "-out", pem, "-days", "2", "-extfile", ext)
        os.remove(csr)
        os.remove(ext)


def write_conf(a) -> dict:
    os.makedirs(a.workdir, exist_ok=True)
    certs = a.certs or os.path.join(a.workdir, "certs")
    acl = os.path.join(a.workdir, "acl_wl.conf")
    with open(acl, "w", encoding="ascii") as f:
        f.write("# written by fd_relay.py\n")
        for pattern in a.allow:
            f.write(("ALLOW_IPSEC " if a.mode == "tcp" else "") + pattern + "\n")
        for pattern in a.allow_plain:
            f.write("ALLOW_IPSEC " + pattern + "\n")
    peers = []
    for spec in a.peer:
        host, _, rest = spec.partition("=")
        parts = rest.split(",")
        addr, _, port = parts[0].rpartition(":")
        opts = [f'ConnectTo = "{addr}";', f"Port = {int(port)};", "No_SCTP;",
                "Prefer_TCP;", f"TcTimer = {a.tc};"]
        if "tls" not in parts[1:]:
            opts.append("No_TLS;")
        for p in parts[1:]:
            if p.startswith("realm="):
                opts.append(f'Realm = "{p[6:]}";')
        peers.append(f'ConnectPeer = "{host}" {{ {" ".join(opts)} }};')
    extensions = []
    if a.route:
        rt = os.path.join(a.workdir, "rt_default.conf")
        with open(rt, "w", encoding="ascii") as f:
            f.write("# written by fd_relay.py: Destination-Realm -> next hop\n")
            for spec in a.route:
                realm, _, host = spec.partition("=")
                f.write(f'dr="{realm}" : "{host}" += REALM ;\n')
        extensions.append(f'LoadExtension = "{EXTDIR}/rt_default.fdx" : "{rt}";')
    if a.dump_messages:
        extensions.append(f'LoadExtension = "{EXTDIR}/dbg_msg_dumps.fdx" : "0x0080";')
    values = {"IDENTITY": a.identity, "REALM": a.realm, "LISTEN": a.listen,
              "PORT": str(a.port), "SECPORT": str(a.sec_port), "TC": str(a.tc),
              "TW": str(a.tw), "EXTDIR": EXTDIR, "ACL_CONF": acl, "EXTENSIONS": "\n".join(extensions),
              "PEERS": "\n".join(peers), "TLS_PRIO": a.tls_prio,
              "CERT": os.path.join(certs, f"{a.identity}.pem"),
              "KEY": os.path.join(certs, f"{a.identity}.key"),
              "CA": os.path.join(certs, "ca.pem")}
    if a.mode == "tls":
        make_certs(certs, [a.identity] + a.cert_for)
    with open(os.path.join(TEMPLATES, f"relay-{a.mode}.conf.in"), encoding="ascii") as f:
        text = f.read()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    conf = os.path.join(a.workdir, "freeDiameter.conf")
    with open(conf, "w", encoding="ascii") as f:
        f.write(text)
    launch = {"conf": conf, "port": a.port,
              "peers": [] if a.no_wait_peers else [spec.partition("=")[0] for spec in a.peer],
              "sec_port": a.sec_port if a.mode == "tls" else None,
              "certs": certs if a.mode == "tls" else None, "timeout": a.timeout}
    with open(os.path.join(a.workdir, "launch.json"), "w", encoding="ascii") as f:
        json.dump(launch, f)
    return launch


def peers_open(log_path: str, offset: int, hosts: list[str]) -> bool:
    """Whether the log, from `offset`, shows every host's connection reach STATE_OPEN
    (freeDiameter logs each peer state change: "'STATE_WAITCEA' -> 'STATE_OPEN' 'host'")."""
    if not hosts:
        return True
    with open(log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    opened = {line.rsplit("'", 2)[-2] for line in text.splitlines()
              if "-> 'STATE_OPEN'" in line and line.count("'") >= 2}
    return all(h in opened for h in hosts)


def spawn(workdir: str, launch: dict) -> int:
    if not shutil.which("freeDiameterd"):
        print("freeDiameterd not found (Debian package freediameterd)", file=sys.stderr)
        return 2
    wanted = {launch["port"]} | ({launch["sec_port"]} if launch["sec_port"] else set())
    busy = wanted & listening_ports()
    if busy:
        print(f"port(s) {sorted(busy)} already in use", file=sys.stderr)
        return 2
    log_path = os.path.join(workdir, "freeDiameterd.log")
    log = open(log_path, "ab")
    offset = log.tell()
    proc = subprocess.Popen(["freeDiameterd", "-c", launch["conf"]], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    with open(os.path.join(workdir, "freeDiameterd.pid"), "w", encoding="ascii") as f:
        f.write(str(proc.pid))
    deadline = time.time() + launch["timeout"]
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        if wanted <= listening_ports() and peers_open(log_path, offset, launch["peers"]):
            print(json.dumps({"event": "listening", "pid": proc.pid, "port": launch["port"],
                              "sec_port": launch["sec_port"], "conf": launch["conf"],
                              "log": log_path, "certs": launch["certs"],
                              "peers_open": launch["peers"]}), flush=True)
            return 0
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    with open(log_path, "rb") as f:
        tail = f.read()[-3000:].decode(errors="replace")
    print(f"freeDiameterd did not come up (exit {proc.poll()}):\n{tail}", file=sys.stderr)
    return 2


def stop(workdir: str) -> int:
    pid_file = os.path.join(workdir, "freeDiameterd.pid")
    try:
        with open(pid_file, encoding="ascii") as f:
            pid = int(f.read())
    except FileNotFoundError:
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            os.kill(pid, 0)
            # Reap it if it is our child (it is not, after `start` returned).
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.remove(pid_file)
    print(json.dumps({"event": "stopped", "pid": pid}), flush=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("--workdir", required=True)
    s.add_argument("--mode", choices=("tcp", "tls"), default="tcp")
    s.add_argument("--identity", default="relay.relay.test")
    s.add_argument("--realm", default="relay.test")
    s.add_argument("--listen", default="127.0.0.1")
    s.add_argument("--port", type=int, default=3868)
    s.add_argument("--sec-port", type=int, default=5868)
    s.add_argument("--peer", action="append", default=[],
                   metavar="HOST=ADDR:PORT[,tls][,realm=R]")
    s.add_argument("--allow", action="append", default=[], metavar="PATTERN")
    s.add_argument("--route", action="append", default=[], metavar="REALM=HOST",
                   help="send requests for Destination-Realm REALM to peer HOST "
                        "(rt_default); needed when the next hop is not in REALM")
    s.add_argument("--allow-plain", action="append", default=[], metavar="PATTERN",
                   help="like --allow, but without TLS even in tls mode (ALLOW_IPSEC)")
    s.add_argument("--certs", default=None, metavar="DIR",
                   help="certificate directory (default W/certs); relays that share "
                        "one share its CA")
    s.add_argument("--cert-for", action="append", default=[], metavar="IDENTITY",
                   help="also make a certificate for this peer (TLS mode)")
    s.add_argument("--tls-prio", default="NORMAL")
    s.add_argument("--tw", type=int, default=6, help="TwTimer (freeDiameter: >= 6)")
    s.add_argument("--tc", type=int, default=2, help="TcTimer: seconds between reconnects")
    s.add_argument("--dump-messages", action="store_true",
                   help="log every message (dbg_msg_dumps.fdx 0x0080)")
    s.add_argument("--no-wait-peers", action="store_true",
                   help="return once listening, before the --peer connections are open")
    s.add_argument("--timeout", type=float, default=15)
    r = sub.add_parser("restart")
    r.add_argument("--workdir", required=True)
    t = sub.add_parser("stop")
    t.add_argument("--workdir", required=True)
    a = p.parse_args()
    if a.cmd == "start":
        return spawn(a.workdir, write_conf(a))
    if a.cmd == "stop":
        return stop(a.workdir)
    with open(os.path.join(a.workdir, "launch.json"), encoding="ascii") as f:
        launch = json.load(f)
    stop(a.workdir)
    return spawn(a.workdir, launch)


if __name__ == "__main__":
    sys.exit(main())
