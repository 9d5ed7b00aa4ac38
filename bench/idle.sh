#!/usr/bin/env bash
# Idle connections: RSS of `syncline up` before and after N Centrifuge clients connect and
# subscribe (the peers' receivers, centrifuge mode), and the connect rate.
#   usage: bash bench/idle.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
peers=${PEERS_DIR:-/tmp/syncline-peers}
if [ ! -d "$peers/node_modules" ]; then
  rm -rf "$peers" && cp -r ../shared/peers/node "$peers"
  (cd "$peers" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
work=$(mktemp -d /tmp/syncline-idle.XXXX); chmod 755 "$work"
export SYNCLINE_MAX_CONNECTIONS_PER_IP=1000000 SYNCLINE_CONNECTS_PER_IP_PER_SECOND=1000000
export SYNCLINE_LOG_LEVEL=warning
.venv/bin/syncline up --data-dir "$work/data" --port 18200 --gateway-port 18201 >"$work/up.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do curl -sf localhost:18200/readyz >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
before=$(rss)
token=$(.venv/bin/python -c "import jwt,time,sys; print(jwt.encode({'sub':'idle','exp':int(time.time())+3600}, open(sys.argv[1]).read().strip(), algorithm='HS256'))" "$work/data/jwt.key")
# Clients arrive in waves of 2,000 (one receivers process each), not in one 10,000-SYN burst.
start=$(date +%s.%N)
chunk=2000; waves=$(( (n + chunk - 1) / chunk )); rpids=()
for w in $(seq 1 "$waves"); do
  size=$(( w < waves ? chunk : n - chunk * (waves - 1) ))
  TOKEN=$token node "$peers/receivers.js" centrifuge ws://127.0.0.1:18201/connection/websocket "$size" 60 >/dev/null 2>"$work/recv.$w.err" &
  rpids+=($!)
  for _ in $(seq 1 300); do grep -q "open $size" "$work/recv.$w.err" 2>/dev/null && break; sleep 0.1; done
done
opened=$(date +%s.%N)
sleep 5
after=$(rss)
conns=$(curl -s localhost:18200/metrics | awk '/^syncline_gateway_connections / {print $2}')
kill "${rpids[@]}" 2>/dev/null || true
kill -INT "$pid"; wait "$pid" || true
.venv/bin/python -c "
import json,sys
b,a,n,c,s,o=int(sys.argv[1]),int(sys.argv[2]),int(sys.argv[3]),float(sys.argv[4]),float(sys.argv[5]),float(sys.argv[6])
print(json.dumps({'connections':n,'gateway_connections':c,'rss_before_mb':round(b/1024,1),'rss_after_mb':round(a/1024,1),'kib_per_connection':round((a-b)/n,1),'connect_seconds':round(o-s,2),'connects_per_s':round(n/(o-s))}))
" "$before" "$after" "$n" "$conns" "$start" "$opened"
rm -rf "$work"
