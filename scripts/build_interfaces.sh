#!/usr/bin/env bash
# Build the interface packages a pip-only install lacks (the tf2_msgs and vision_msgs stand-ins and
# ocgs_ros_interfaces), with cmake + rosidl from the ROS 2 wheels, installing into the venv prefix
# so rclpy imports them with nothing sourced.
# Idempotent: a package that already imports is skipped. In a normal ROS 2 install use colcon instead
# (README "Building in a ROS 2 workspace").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$root/scripts/ros_env.sh"
prefix="$(python -c 'import sys; print(sys.prefix)')"

python "$root/scripts/fix_wheel_cmake.py"

build_one() {  # $1 = python module proving the package is present, $2 = source folder
  local probe="$1" src="$2" name digest stamp
  name="$(basename "$src")"
  # Rebuild when the sources change, not only when the package is missing.
  digest="$(cd "$src" && find . -type f -not -name COLCON_IGNORE | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
  stamp="$prefix/share/$name/.ocgs_source_digest"
  local location
  location="$(python -c "import ${probe%%.*} as m; print(m.__path__[0])" 2>/dev/null || true)"
  if [ -n "$location" ] && [[ "$location" != "$prefix"/* ]]; then
    echo "build_interfaces: $name comes from the ROS installation ($location), skipping"
    return 0
  fi
  if [ -n "$location" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    echo "build_interfaces: $name up to date, skipping"
    return 0
  fi
  echo "build_interfaces: building $name into $prefix"
  local build_dir="$root/build/$name"
  rm -rf "$build_dir"; mkdir -p "$build_dir"
  cmake -S "$src" -B "$build_dir" -G Ninja \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DPython3_EXECUTABLE="$(command -v python)" -DBUILD_TESTING=OFF >"$build_dir/cmake.log" 2>&1 \
    || { cat "$build_dir/cmake.log"; exit 1; }
  cmake --build "$build_dir" --target install >"$build_dir/build.log" 2>&1 \
    || { tail -50 "$build_dir/build.log"; exit 1; }
  python -c "import $probe" || { echo "build_interfaces: $name built but does not import" >&2; exit 1; }
  echo "$digest" > "$stamp"
}

build_one "tf2_msgs.msg" "$root/interfaces/pip_compat/tf2_msgs"
build_one "vision_msgs.msg" "$root/interfaces/pip_compat/vision_msgs"
build_one "ocgs_ros_interfaces.srv" "$root/interfaces/ocgs_ros_interfaces"
