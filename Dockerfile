# wgts in a container: the daemon runs in the foreground as the container's main process; it creates the TUN
# device wg0 and the UAPI socket /var/run/wireguard/wg0.sock, and the usual tools configure it from outside.
#
# Build and run (the container needs NET_ADMIN and the TUN character device):
#   docker build -t wgts .
#   docker run -d --name wgts --cap-add NET_ADMIN --device /dev/net/tun -p 51820:51820/udp wgts        # wg0
#   docker run -d --name wgts1 --cap-add NET_ADMIN --device /dev/net/tun wgts wg1                      # another name
#   LOG_LEVEL=verbose (docker run -e LOG_LEVEL=verbose ...) logs handshakes to `docker logs`.
#
# Configure it with wg (a wg(8) config file, not a wg-quick one) and ip, through docker exec:
#   docker cp wg0.conf wgts:/etc/wireguard/wg0.conf
#   docker exec wgts wg setconf wg0 /etc/wireguard/wg0.conf
#   docker exec wgts ip address add 203.0.113.1/24 dev wg0
#   docker exec wgts ip link set wg0 up
#   docker exec wgts wg show
# or, key by key:
#   docker exec wgts wg set wg0 listen-port 51820 private-key /etc/wireguard/private.key \
#       peer <PUBKEY> endpoint 198.51.100.2:51820 allowed-ips 203.0.113.2/32
#
# With wg-quick instead (it starts the daemon itself through WG_QUICK_USERSPACE_IMPLEMENTATION, set below),
# replace the entrypoint and keep the container alive after wg-quick returns:
#   docker run -d --name wgts --cap-add NET_ADMIN --device /dev/net/tun -v $PWD/wg0.conf:/etc/wireguard/wg0.conf \
#       --sysctl net.ipv4.conf.all.src_valid_mark=1 --entrypoint sh wgts -c 'wg-quick up wg0 && exec sleep infinity'
# (AllowedIPs = 0.0.0.0/0 needs that sysctl; DNS = lines need resolvconf, which this image does not include.)
# `docker stop` sends SIGTERM; wgts exits on it and removes its socket.

FROM node:20-bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends wireguard-tools iproute2 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, so a source change does not reinstall them.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

ENV WG_QUICK_USERSPACE_IMPLEMENTATION=/app/bin/wgts
ENTRYPOINT ["bin/wgts", "-f"]
CMD ["wg0"]
