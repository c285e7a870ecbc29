#!/usr/bin/env bash
# The README's demo (as root on a fresh Debian machine): installs and builds (scripts/setup.sh), then runs a
# WireGuard tunnel between two wgts endpoints in two network namespaces it creates: handshake, ping over IPv4
# and IPv6, a 3 s iperf3, `wg show` of both sides. It removes everything it made; the root namespace is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

section() { printf '\n\033[1m==== %s ====\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run as root (it creates network namespaces and TUN devices)" >&2
  exit 1
fi

section "setup: Debian and npm packages, build"
bash scripts/setup.sh

# Per-run names (pid suffix) so parallel runs never collide; /var/run/wireguard is shared by all namespaces.
S=$$
NSA=wgdemoA$S NSB=wgdemoB$S
IFA=wgdA$S IFB=wgdB$S
VA=vdA$S VB=vdB$S
made_ns=()

cleanup() {
  set +e
  trap - EXIT INT TERM
  section "cleanup"
  for ns in "${made_ns[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
  done
  for _ in $(seq 1 30); do # at most 3 s for the daemons to exit by themselves
    left=""
    for ns in "${made_ns[@]}"; do left+=$(ip netns pids "$ns" 2>/dev/null); done
    [ -z "$left" ] && break
    sleep 0.1
  done
  for ns in "${made_ns[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null && echo "deleted namespace $ns"
  done
  rm -f "/var/run/wireguard/$IFA.sock" "/var/run/wireguard/$IFB.sock"
  echo "done"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inA() { ip netns exec "$NSA" "$@"; }
inB() { ip netns exec "$NSB" "$@"; }

section "namespaces $NSA and $NSB, joined by a veth pair (underlay 198.51.100.0/24)"
ip netns add "$NSA"; made_ns+=("$NSA")
ip netns add "$NSB"; made_ns+=("$NSB")
ip link add "$VA" netns "$NSA" type veth peer name "$VB" netns "$NSB"
ip -n "$NSA" address add 198.51.100.1/24 dev "$VA"
ip -n "$NSB" address add 198.51.100.2/24 dev "$VB"
for ns in "$NSA" "$NSB"; do ip -n "$ns" link set lo up; done
ip -n "$NSA" link set "$VA" up
ip -n "$NSB" link set "$VB" up
echo "A: $VA 198.51.100.1    B: $VB 198.51.100.2"

section "start wgts in each namespace ($IFA, $IFB)"
inA "$root/bin/wgts" "$IFA"
inB "$root/bin/wgts" "$IFB"
echo "A: daemon pid $(ip netns pids "$NSA" | tr '\n' ' ')   B: daemon pid $(ip netns pids "$NSB" | tr '\n' ' ')"

section "keys and peers (wg set), tunnel addresses 203.0.113.0/24 and 2001:db8:1::/64"
KA=$(wg genkey); KB=$(wg genkey)
PA=$(wg pubkey <<<"$KA"); PB=$(wg pubkey <<<"$KB")
inA wg set "$IFA" private-key <(echo "$KA") listen-port 51820 \
  peer "$PB" endpoint 198.51.100.2:51821 allowed-ips 203.0.113.2/32,2001:db8:1::2/128
inB wg set "$IFB" private-key <(echo "$KB") listen-port 51821 \
  peer "$PA" endpoint 198.51.100.1:51820 allowed-ips 203.0.113.1/32,2001:db8:1::1/128
ip -n "$NSA" address add 203.0.113.1/24 dev "$IFA"
ip -n "$NSA" address add 2001:db8:1::1/64 dev "$IFA" nodad
ip -n "$NSB" address add 203.0.113.2/24 dev "$IFB"
ip -n "$NSB" address add 2001:db8:1::2/64 dev "$IFB" nodad
ip -n "$NSA" link set "$IFA" up
ip -n "$NSB" link set "$IFB" up
echo "A public key: $PA"
echo "B public key: $PB"

section "handshake (the first packet from A starts it)"
inA ping -c 1 -W 3 203.0.113.2 >/dev/null || true
hs=0
for _ in $(seq 1 50); do # at most 5 s
  hs=$(inA wg show "$IFA" latest-handshakes | awk '{print $2}')
  [ "${hs:-0}" != 0 ] && break
  sleep 0.1
done
if [ "${hs:-0}" = 0 ]; then echo "no handshake within 5 s" >&2; exit 1; fi
echo "handshake completed at $(date -d "@$hs" '+%H:%M:%S') (A: wg show $IFA latest-handshakes)"

section "ping over IPv4 through the tunnel: A 203.0.113.1 -> B 203.0.113.2"
inA ping -c 5 -i 0.2 -W 2 203.0.113.2

section "ping over IPv6 through the tunnel: B 2001:db8:1::2 -> A 2001:db8:1::1"
inB ping -6 -c 5 -i 0.2 -W 2 2001:db8:1::1

section "iperf3, 3 s, one TCP stream B -> A through the tunnel"
inA timeout 20 iperf3 -s -1 >/dev/null 2>&1 &
for _ in $(seq 1 50); do # at most 5 s for the server to listen
  inA ss -ltnH 'sport = :5201' | grep -q . && break
  sleep 0.1
done
inB timeout 20 iperf3 -c 203.0.113.1 -t 3 -f m | grep -E 'sender|receiver|error' || true
wait || true

section "wg show, side A ($NSA)"
inA wg show "$IFA"
section "wg show, side B ($NSB)"
inB wg show "$IFB"
