#!/usr/bin/env bash
# README command 2: set up (idempotent) and run the test suite. .ci/run calls exactly this.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k bags -x`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
# shellcheck disable=SC1091
. scripts/ros_env.sh   # venv + loopback-only DDS (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST + profile)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec python -m pytest -q -p no:cacheprovider "$@" test
