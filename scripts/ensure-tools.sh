#!/usr/bin/env bash
# System tools the test suite uses beyond Python packages: docker-compose (to
# validate docker-compose.yml statically, as no Docker engine runs in CI).
set -euo pipefail
if command -v docker-compose >/dev/null; then exit 0; fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "installing Debian's docker-compose (static compose validation)"
  apt-get install -y -q docker-compose >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && apt-get install -y -q docker-compose >/dev/null
  }
  exit 0
fi
echo "docker-compose is missing: install it (apt-get install docker-compose) to validate the compose file" >&2
exit 1
