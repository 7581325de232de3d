# Source this file (bash): puts the project's venv and a loopback-only ROS 2 environment in place.
# Every test, demo, benchmark and CI run goes through it, so DDS never leaves this machine.
_ocgs_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -f "$_ocgs_root/.venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "$_ocgs_root/.venv/bin/activate"
fi
_ocgs_prefix="$(python -c 'import sys; print(sys.prefix)')"
# The pip wheels' bootstrapper sets only LD_LIBRARY_PATH; rclpy also needs the ament index.
export AMENT_PREFIX_PATH="$_ocgs_prefix${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE="$_ocgs_root/config/fastdds_localhost.xml"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"
unset _ocgs_root _ocgs_prefix
