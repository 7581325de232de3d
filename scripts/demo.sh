#!/usr/bin/env bash
# README command 1: set up (idempotent) and run the main job on the built-in simulated world for a
# bounded time. Outputs land in runs/<timestamp>/. Extra key:=value arguments go to the bring-up.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
# shellcheck disable=SC1091
. scripts/ros_env.sh   # venv + loopback-only DDS
out="runs/$(date +%Y%m%d_%H%M%S)"
exec python -m ocgs_ros.demo output:="$out" "$@"
