#!/usr/bin/env bash
# Side-by-side fan-out: Syncline vs the seeds' Node stacks (../shared/peers), same machine, same
# run, same writer and receivers. Prints one JSON line per run (the receivers' own output).
#   usage: bash bench/peers.sh [CLIENTS] [SECONDS] [RATES...]
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-1000}; secs=${2:-10}; shift 2 || true
rates=("${@:-20 40 60 80}"); rates=(${rates[*]})
peers=${PEERS_DIR:-/tmp/syncline-peers}
if [ ! -d "$peers/node_modules" ]; then
  rm -rf "$peers" && cp -r ../shared/peers/node "$peers"
  (cd "$peers" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
work=$(mktemp -d /tmp/syncline-bench.XXXX); chmod 755 "$work"
export SYNCLINE_MAX_CONNECTIONS_PER_IP=100000 SYNCLINE_CONNECTS_PER_IP_PER_SECOND=100000
export SYNCLINE_LOG_LEVEL=warning
up() { ${PROFILE:-} .venv/bin/syncline up --data-dir "$work/data" --port 18100 --gateway-port 18101 >"$work/up.log" 2>&1 & pid=$!; }
wait_ready() { for _ in $(seq 1 200); do curl -sf localhost:18100/readyz >/dev/null && return 0; sleep 0.1; done; cat "$work/up.log"; return 1; }
up; wait_ready
url="postgresql://postgres:$(cat "$work/data/postgres.password")@127.0.0.1:$(cat "$work/data/postgres.port")/syncline"
.venv/bin/python - "$url" "$peers/schema.sql" <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as c:
    c.execute(open(sys.argv[2]).read())
PY
kill -INT "$pid"; wait "$pid" || true
up; wait_ready   # restart: capture now publishes the new orders table
token=$(.venv/bin/python -c "import jwt,time,sys; print(jwt.encode({'sub':'bench','exp':int(time.time())+3600}, open(sys.argv[1]).read().strip(), algorithm='HS256'))" "$work/data/jwt.key")
DATABASE_URL=$url PORT=18181 node "$peers/notify-ws-server.js" >/dev/null 2>&1 & wspid=$!
DATABASE_URL=$url PORT=18182 node "$peers/socketio-server.js" >/dev/null 2>&1 & siopid=$!
sleep 2
run() { # kind url rate
  TOKEN=$token node "$peers/receivers.js" "$1" "$2" "$clients" $((secs + 8)) > "$work/recv.json" 2>/dev/null &
  local r=$!; sleep 5
  DATABASE_URL=$url node "$peers/writer.js" "$3" "$secs" >/dev/null
  wait $r
  .venv/bin/python -c "import json,sys; d=json.load(open(sys.argv[1])); d.update(stack=sys.argv[2], rate=int(sys.argv[3])); print(json.dumps(d))" "$work/recv.json" "$1" "$3"
}
stacks=${STACKS:-centrifuge ws socketio}
for rate in "${rates[@]}"; do
  for stack in $stacks; do
    case $stack in
      centrifuge) run centrifuge ws://127.0.0.1:18101/connection/websocket "$rate" ;;
      ws) run ws ws://127.0.0.1:18181 "$rate" ;;
      socketio) run socketio http://127.0.0.1:18182 "$rate" ;;
    esac
  done
done
kill "$wspid" "$siopid" 2>/dev/null || true
kill -INT "$pid"; wait "$pid" || true
rm -rf "$work"
