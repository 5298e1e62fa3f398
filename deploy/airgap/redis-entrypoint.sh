#!/bin/sh
# `redis-server ARGS…` runs with protected mode off (bound inside the container network); anything else is exec'd.
set -eu
if [ "${1:-}" = "redis-server" ]; then
  exec "$@" --protected-mode no
fi
exec "$@"
