#!/usr/bin/env bash
# System tools the test suite uses beyond Python packages:
# - docker-compose, to validate docker-compose.yml statically (no Docker engine runs in CI);
# - Debian's chromium, the headless browser of the console's browser tests
#   (driven by the playwright package with executable_path; no browser download).
set -euo pipefail

install_debian_package() {  # package, why
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing Debian's $1 ($2)"
    apt-get install -y -q "$1" >/dev/null 2>&1 || {
      apt-get update -q >/dev/null && apt-get install -y -q "$1" >/dev/null
    }
    return 0
  fi
  echo "$1 is missing: install it (apt-get install $1) for $2" >&2
  return 1
}

command -v docker-compose >/dev/null || install_debian_package docker-compose "static compose validation"
command -v chromium >/dev/null || install_debian_package chromium "the console's browser tests"
