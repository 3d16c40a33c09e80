#!/usr/bin/env bash
# Builds a Wireshark data directory that is the system's plus the e2m push dictionary
# (crates/e2m-diameter-push/dictionary/wireshark-e2m.xml as diameter/Custom.xml, the
# include Wireshark's dictionary.xml keeps for local additions) and prints its path.
# Use:  WIRESHARK_DATA_DIR=$(tests/diameter/wireshark_env.sh DIR) tshark ...
# Wireshark reads the Diameter dictionary from <data dir>/diameter/ only (there is no
# per-user Diameter dictionary), so this overlay is how tshark learns our AVPs without
# writing to /usr/share. DIR is created (or refreshed) and kept; remove it when done.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dict="$here/../../crates/e2m-diameter-push/dictionary/wireshark-e2m.xml"
out="${1:?usage: wireshark_env.sh DIR}"
sys="${WIRESHARK_SYSTEM_DATA_DIR:-/usr/share/wireshark}"
[ -f "$sys/diameter/dictionary.xml" ] || { echo "no $sys/diameter/dictionary.xml (is tshark installed?)" >&2; exit 2; }
mkdir -p "$out/diameter"
for entry in "$sys"/*; do
  name="$(basename "$entry")"
  [ "$name" = diameter ] && continue
  ln -sfn "$entry" "$out/$name"
done
for entry in "$sys"/diameter/*; do
  name="$(basename "$entry")"
  [ "$name" = Custom.xml ] && continue
  ln -sfn "$entry" "$out/diameter/$name"
done
rm -f "$out/diameter/Custom.xml"
cp "$dict" "$out/diameter/Custom.xml"
echo "$out"
