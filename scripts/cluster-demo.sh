#!/usr/bin/env bash
# Two Weft nodes on one machine, for a first look at cross-node traffic (README,
# "Walk-through: two nodes on one machine"). As root, from the repository:
#
#   scripts/cluster-demo.sh up                     the API, two nodes, a client and a web workload
#   scripts/cluster-demo.sh exec client CMD...     runs CMD in a workload (its namespace and its node's cgroup)
#   scripts/cluster-demo.sh down                   removes everything up made
#
# Everything lives in network namespaces (weft-fabric, weft-node-1, weft-node-2,
# weft-client, weft-web) with addresses from 198.18.0.0/15; the host gets one
# veth (weft-demo0, 198.18.250.254) onto the fabric, where the API listens.
# Files, mounts and logs are under /run/weft-demo.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO=/run/weft-demo
FABRIC=198.18.250        # the fabric's /24: node-N is .N, the host .254
API=http://$FABRIC.254:8080
VIP=198.18.128.10        # from WEFT_SERVICE_CIDR below
NAMESPACES="weft-client weft-web weft-node-1 weft-node-2 weft-fabric"

die() { echo "cluster-demo: $*" >&2; exit 1; }
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

# The cgroup v2 mount: /sys/fs/cgroup/unified on hybrid hosts, /sys/fs/cgroup on pure v2 ones.
cgroup_root() {
  for d in /sys/fs/cgroup/unified /sys/fs/cgroup; do
    if [ "$(stat -fc %T "$d" 2>/dev/null)" = cgroup2fs ]; then echo "$d"; return; fi
  done
  die "no cgroup v2 mount under /sys/fs/cgroup"
}
CGROUP=$(cgroup_root)/weft-demo

# Bounded wait: "until_ok WHAT CMD..." retries CMD every 0.5 s for 60 s.
until_ok() {
  local what=$1; shift
  for _ in $(seq 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "timed out waiting for $what"
}

# A workload's process runs in the workload's namespace and in its node's cgroup,
# where the agent's socket load balancer (cgroup/connect4) sees its connect().
in_workload() {
  local name=$1 node=$2; shift 2
  sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CGROUP/$node" ip netns exec "weft-$name" "$@"
}
node_of() { case $1 in client) echo node-1 ;; web) echo node-2 ;; *) die "no workload $1 (client, web)" ;; esac; }

op() { curl -sSf -H "authorization: Bearer $(cat $DEMO/operator-token)" -H 'content-type: application/json' "$@"; }
put() { curl -sSf -o /dev/null -X PUT -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' "$API/v1/tenants/demo/$1" -d "$2"; }

add_node() { # N: namespace weft-node-N on the fabric at .N, its agent registering as node-N in zone z1
  local n=$1 ns=weft-node-$1 name=node-$1
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add fab0 type veth peer name "n-$name" netns weft-fabric
  ip -n "$ns" addr add "$FABRIC.$n/24" dev fab0
  ip -n "$ns" link set fab0 up
  ip -n weft-fabric link set "n-$name" master br0 up
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  mkdir "$CGROUP/$name"
  local join
  join=$(op -X POST "$API/v1/join-tokens" -d "{\"name\":\"$name\",\"zone\":\"z1\"}" | jq -r .token)
  # Pins and cgroup outside /sys: `ip netns exec` mounts a fresh /sys for the namespace.
  # The join token through the environment: on the command line ps would show it.
  WEFT_JOIN_TOKEN="$join" nohup ip netns exec "$ns" sh scripts/node.sh bin/weft-agent.mjs --api "$API" \
    --name "$name" --zone z1 --pin-dir "$DEMO/bpf/$name" --cgroup "$DEMO/cgroup/$name" \
    --state-dir "$DEMO/state/$name" --metrics-port 9469 > "$DEMO/agent-$name.log" 2>&1 &
  echo $! > "$DEMO/agent-$name.pid"
}

add_workload() { # NAME NODE ADDRESS: namespace weft-NAME, eth0 a veth into weft-NODE (there: w-NAME)
  local name=$1 node=$2 addr=$3 gw=$FABRIC.${2#node-}
  ip netns add "weft-$name"
  ip -n "weft-$name" link set lo up
  ip -n "weft-$node" link add "w-$name" type veth peer name eth0 netns "weft-$name"
  ip -n "weft-$node" link set "w-$name" up
  ip -n "weft-$node" route add "$addr/32" dev "w-$name"
  ip -n "weft-$name" addr add "$addr/32" dev eth0
  ip -n "weft-$name" link set eth0 up
  ip -n "weft-$name" route add "$gw" dev eth0 scope link
  ip -n "weft-$name" route add default via "$gw" dev eth0
}

up() {
  [ "$(id -u)" = 0 ] || die "run as root"
  for c in ip jq curl node mount; do command -v $c >/dev/null || die "$c is not installed"; done
  [ -e $DEMO ] && die "$DEMO exists: already up? ($0 down)"
  ip -4 -o addr show | grep -q " $FABRIC\." && die "$FABRIC.0/24 is in use on this host"
  # Any failure from here on (set -e) exits through this: remove what up made.
  trap 'echo "cluster-demo: up failed; removing what it made" >&2; down' EXIT

  say "fabric: namespace weft-fabric, bridge br0, host veth weft-demo0 at $FABRIC.254"
  mkdir -p $DEMO/bpf $DEMO/cgroup $DEMO/data $DEMO/state
  chmod 700 $DEMO
  mount -t bpf bpf $DEMO/bpf
  mkdir "$CGROUP"
  mount --bind "$CGROUP" $DEMO/cgroup
  ip netns add weft-fabric
  ip -n weft-fabric link add br0 type bridge
  ip -n weft-fabric link set br0 up
  ip link add weft-demo0 type veth peer name host0 netns weft-fabric
  ip addr add $FABRIC.254/24 dev weft-demo0
  ip link set weft-demo0 up
  ip -n weft-fabric link set host0 master br0 up

  say "API: $API (what npm start runs, on the embedded database in $DEMO/data)"
  echo "weft_op_demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" > $DEMO/operator-token
  # Plain HTTP on the fabric address: only the simulated nodes on this machine can reach it.
  HOST=$FABRIC.254 PORT=8080 WEFT_ALLOW_PLAINTEXT=1 WEFT_DATA_DIR=$DEMO/data WEFT_OPERATOR_TOKEN=$(cat $DEMO/operator-token) \
    WEFT_POD_CIDR=198.19.0.0/16 WEFT_POD_CIDR_NODE_PREFIX=24 WEFT_SERVICE_CIDR=198.18.128.0/24 LOG_LEVEL=warn \
    nohup sh scripts/node.sh --import tsx api/src/server.ts > $DEMO/api.log 2>&1 &
  echo $! > $DEMO/api.pid
  until_ok "the API" curl -sf $API/readyz

  say "nodes: weft-node-1 ($FABRIC.1) and weft-node-2 ($FABRIC.2), one agent each"
  add_node 1
  add_node 2
  local block1 block2
  until_ok "node-1 to register" op $API/v1/nodes/node-1
  until_ok "node-2 to register" op $API/v1/nodes/node-2
  block1=$(op $API/v1/nodes/node-1 | jq -r .podCidr)
  block2=$(op $API/v1/nodes/node-2 | jq -r .podCidr)
  echo "pod blocks from the API: node-1 $block1, node-2 $block2"
  ip -n weft-node-1 route add "$block2" via $FABRIC.2 dev fab0
  ip -n weft-node-2 route add "$block1" via $FABRIC.1 dev fab0
  CLIENT=${block1%.0/24}.10
  WEB=${block2%.0/24}.10

  say "workloads: client ($CLIENT) on node-1, web ($WEB) on node-2"
  add_workload client node-1 "$CLIENT"
  add_workload web node-2 "$WEB"
  nohup sh -c 'echo $$ > "$0/cgroup.procs" && exec ip netns exec weft-web node -e "$1"' "$CGROUP/node-2" \
    'require("node:http").createServer((q,s)=>s.end(`hello from web on node-2; you are ${q.socket.remoteAddress}\n`)).listen(8080,"0.0.0.0")' \
    > $DEMO/web.log 2>&1 &
  echo $! > $DEMO/web.pid

  say "tenant demo: identities client and web, their workloads, service web ($VIP:80), policy web-in"
  op -o /dev/null -X POST $API/v1/tenants -d '{"name":"demo"}'
  TOKEN=$(op -X POST $API/v1/tenants/demo/tokens -d '{"name":"demo","scopes":["admin"],"ttlSeconds":86400}' | jq -r .token)
  put identities/client '{"path":"/ns/demo/sa/client"}'
  put identities/web '{"path":"/ns/demo/sa/web"}'
  put workloads/client "{\"identity\":\"client\",\"node\":\"node-1\",\"addresses\":[\"$CLIENT\"]}"
  put workloads/web "{\"identity\":\"web\",\"node\":\"node-2\",\"addresses\":[\"$WEB\"]}"
  put services/web "{\"vip\":\"$VIP\",\"ports\":[{\"port\":80,\"protocol\":\"tcp\",\"targetPort\":8080}],\"backends\":{\"selector\":{\"identity\":\"web\"}}}"
  put policies/web-in '{"subject":{"identity":"web"},"ingress":[{"peers":[{"identity":"client"}],"ports":[{"port":8080,"protocol":"tcp"}],"action":"allow"}]}'
  printf 'API=%s\nOP=%s\nTOKEN=%s\nVIP=%s\nCLIENT=%s\nWEB=%s\n' "$API" "$(cat $DEMO/operator-token)" "$TOKEN" "$VIP" "$CLIENT" "$WEB" > $DEMO/env
  converged() { [ "$(op $API/v1/nodes/node-1 | jq .converged)$(op $API/v1/nodes/node-2 | jq .converged)" = truetrue ]; }
  until_ok "both nodes to converge" converged

  say "cross-node traffic, from client on node-1"
  echo "+ curl http://$VIP/        (the VIP: node-1's socket LB picks web on node-2)"
  in_workload client node-1 curl -sS --max-time 3 "http://$VIP/"
  echo "+ curl http://$WEB:8080/   (web's own address)"
  in_workload client node-1 curl -sS --max-time 3 "http://$WEB:8080/"
  trap - EXIT

  cat <<NEXT

Up. What to try next (as root; ". $DEMO/env" sets API, OP, TOKEN, VIP, CLIENT, WEB):
  $0 exec client curl -s http://$VIP/
  # deny at the receiving node: replace the policy, then watch node-2's drop counter
  curl -s -X PUT \$API/v1/tenants/demo/policies/web-in -H "authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
       -d '{"subject":{"identity":"web"},"ingress":[{"peers":[{"identity":"client"}],"action":"deny"}]}'
  $0 exec client curl -s --max-time 2 http://$VIP/     # times out now
  ip netns exec weft-node-2 curl -s 127.0.0.1:9469/metrics | grep weft_datapath_packets_total
  curl -s \$API/v1/nodes/node-2 -H "authorization: Bearer \$OP" | jq '{podCidr, desired, applied, converged}'
  tail $DEMO/agent-node-2.log
  $0 down
NEXT
}

down() {
  [ "$(id -u)" = 0 ] || die "run as root"
  trap - EXIT
  set +e
  for f in $DEMO/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null && for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    rm -f "$f"
  done
  # Every program detached and every pin removed, as `npm run agent -- cleanup` does.
  for d in $DEMO/bpf/node-*; do [ -d "$d" ] && sh scripts/node.sh bin/weft-agent.mjs cleanup --pin-dir "$d" >/dev/null; done
  for ns in $NAMESPACES; do
    ip netns list | grep -qw "^$ns" || continue
    ip netns pids "$ns" | xargs -r kill -KILL
    ip netns del "$ns"
  done
  ip link del weft-demo0 2>/dev/null
  for d in "$CGROUP"/node-* "$CGROUP"; do
    [ -d "$d" ] || continue
    while read -r pid; do echo "$pid" > "$(dirname "$CGROUP")/cgroup.procs"; done < "$d/cgroup.procs"
    rmdir "$d"
  done
  for m in $DEMO/cgroup $DEMO/bpf; do mountpoint -q "$m" && umount "$m"; done
  # Never a recursive removal through a mount that failed to go.
  if [ -e $DEMO ] && ! grep -q " $DEMO[/ ]" /proc/self/mountinfo; then rm -rf $DEMO; fi
  echo "cluster-demo: down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  exec) [ $# -ge 3 ] || die "usage: $0 exec client|web CMD..."; w=$2; shift 2; in_workload "$w" "$(node_of "$w")" "$@" ;;
  *) die "usage: $0 up | down | exec client|web CMD..." ;;
esac
