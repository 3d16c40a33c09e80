#!/usr/bin/env bash
# tshark with the e2m push dictionary: reads a capture on standard input and passes
# every argument to tshark, e.g.
#   tests/diameter/tshark_e2m.sh -O diameter -d tcp.port==3868,diameter < cap.pcap
#   tests/diameter/tshark_e2m.sh -T ek -d tcp.port==40001,diameter < cap.pcap
#
# Wireshark reads its Diameter dictionary from <data dir>/diameter/ only, and ignores
# WIRESHARK_DATA_DIR when it runs with special privileges -- root counts (wsutil's
# started_with_special_privs()). So, when run as root, tshark runs here as `nobody`
# (setpriv), with a throwaway HOME, and the capture comes on stdin so that `nobody`
# needs no read access to it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v tshark >/dev/null || { echo "tshark is not installed (Debian package tshark)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$here/wireshark_env.sh" "$work/data" >/dev/null
mkdir -p "$work/home"
chmod -R a+rX "$work"
env_args=(HOME="$work/home" XDG_CONFIG_HOME="$work/home" WIRESHARK_DATA_DIR="$work/data")
if [ "$(id -u)" -eq 0 ]; then
  env "${env_args[@]}" setpriv --reuid=65534 --regid=65534 --clear-groups \
    tshark -Q -r - "$@"
else
  env "${env_args[@]}" tshark -Q -r - "$@"
fi
