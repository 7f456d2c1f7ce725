#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers for the tests: RABBITMQ_URL's host when
# set, else 127.0.0.1:5672, starting the machine's own broker when it is
# installed but stopped. Fails with instructions otherwise.
set -euo pipefail

host=127.0.0.1
port=5672
if [[ -n "${RABBITMQ_URL:-}" ]]; then
  hostport=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(f"{p.hostname} {p.port or 5672}")' "$RABBITMQ_URL")
  read -r host port <<<"$hostport"
fi

answers() { timeout 1 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; }

if answers; then
  echo "RabbitMQ answers at $host:$port"
  exit 0
fi
if [[ "$host" == "127.0.0.1" || "$host" == "localhost" ]] && command -v rabbitmq-server >/dev/null; then
  echo "RabbitMQ installed but stopped: starting it"
  rabbitmq-server -detached
  rabbitmqctl await_startup --timeout 90 >/dev/null
  for _ in $(seq 1 60); do answers && { echo "RabbitMQ started at $host:$port"; exit 0; }; sleep 1; done
fi
echo "No RabbitMQ at $host:$port. Start one (rabbitmq-server -detached, apt-get install rabbitmq-server)," >&2
echo "or set RABBITMQ_URL to a broker the tests may use." >&2
exit 1
