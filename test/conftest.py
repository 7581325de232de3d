"""Test-wide setup: every test process talks DDS on loopback only, in its own ROS domain.

The environment is fixed here, before anything imports rclpy, so a test run is safe even when the
caller forgot ``scripts/ros_env.sh``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LOOPBACK_PROFILE = REPO / "config" / "fastdds_localhost.xml"

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(LOOPBACK_PROFILE)
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(
    p for p in [sys.prefix, os.environ.get("AMENT_PREFIX_PATH", "")] if p
)
# One domain per test process (pytest-xdist workers or parallel CI jobs must not hear each other).
os.environ["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def ros_node(request):
    """An rclpy node in its own context, torn down after the test."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"test_{request.node.name[:40].replace('[', '_').replace(']', '_').replace('-', '_')}",
                             context=context)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def spin_until(node, predicate, timeout_s: float, step_s: float = 0.05, processes=()) -> bool:
    """Spin ``node`` until ``predicate()`` holds or ``timeout_s`` passes; returns the predicate.
    Gives up early when one of ``processes`` (NodeProcess) has exited."""
    import rclpy

    executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if predicate():
                return True
            if any(not p.alive() for p in processes):
                break
            executor.spin_once(timeout_sec=step_s)
        return bool(predicate())
    finally:
        executor.remove_node(node)


#: which input a rejected frame's reason names (reasons are ``<input>_<what is wrong>``)
REJECT_FAMILIES = ("camera_info", "pointcloud", "image", "depth", "tf", "stale")


def reject_families(counts: dict[str, int]) -> dict[str, int]:
    """A node's reject counts by input family: node tests check which input was at fault, the
    converters' tests check the exact reasons."""
    out: dict[str, int] = {}
    for reason, count in counts.items():
        family = next((f for f in REJECT_FAMILIES if reason == f or reason.startswith(f"{f}_")), reason)
        out[family] = out.get(family, 0) + count
    return out


class NodeProcess:
    """A node (or any ocgs_ros command) in a separate Python process, stopped with SIGINT."""

    def __init__(self, module: str, args: list[str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "w")
        target = [str(REPO / module)] if module.endswith(".py") else ["-m", module]
        self.proc = subprocess.Popen(
            [sys.executable, *target, *args], stdout=self._log, stderr=subprocess.STDOUT,
            env=dict(os.environ), cwd=REPO,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self._log.close()

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@pytest.fixture
def node_process(tmp_path):
    """Factory: ``node_process(module, *args)`` starts a process; all are stopped after the test."""
    started: list[NodeProcess] = []

    def start(module: str, *args: str) -> NodeProcess:
        name = Path(module).stem if module.endswith(".py") else module.rsplit(".", 1)[-1]
        proc = NodeProcess(module, list(args), tmp_path / f"{name}_{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def tiny_gocl_train_data(tmp_path_factory) -> Path:
    """A 3-scene GOCL tabletop training set (seed 0, 32x32, 2 views), made once per session.
    Read-only for the tests that share it: runs write their output elsewhere."""
    from ocgs_ros.ocl.data import ensure_gocl_dataset

    return ensure_gocl_dataset(tmp_path_factory.mktemp("gocl_tiny") / "train", 3, seed=0, width=32, height=32,
                               views_per_scene=2, progress=False)


@pytest.fixture(scope="session")
def tiny_driving_data(tmp_path_factory) -> Path:
    """A 1-scene, 4-frame driving dataset (64x32 camera, 16-beam LiDAR, seed 3), made once per
    session for the BEV trainer and ablation tests. Read-only for them: runs write elsewhere."""
    from ocgs_ros.sim.dataset import write_driving_dataset
    from ocgs_ros.sim.types import CameraConfig, DrivingConfig, LidarConfig

    config = DrivingConfig(cameras=[CameraConfig(width=64, height=32, hfov_deg=70.0)],
                           lidar=LidarConfig(beams=16, azimuth_steps=256))
    return write_driving_dataset(tmp_path_factory.mktemp("bev_tiny_data"), num_scenes=1, frames_per_scene=4, seed=3,
                                 config=config, progress=False)


def run_torchrun(module: str, args: list[str], log_dir: Path, nproc: int = 2,
                 timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    """``module`` under torchrun with ``nproc`` CPU ranks, all traffic on 127.0.0.1.

    The rendezvous store takes a free port itself (port 0), so no port is picked and then lost to
    a race; gloo is pinned to the loopback interface instead of whatever the host name resolves
    to. Every rank's stdout/stderr goes to its own file under ``log_dir`` (with Python's fault
    handler on, so a rank killed by a signal leaves its traceback), and on failure
    :func:`torchrun_failure` shows them: torchrun's own summary names only the signal.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={nproc}",
               "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0", f"--rdzv-id={uuid.uuid4()}",
               f"--log-dir={log_dir}", "--redirects=3", "-m", module, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONFAULTHANDLER": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s, cwd=log_dir.parent)


def torchrun_failure(done: subprocess.CompletedProcess, log_dir: Path) -> str:
    """torchrun's exit code and stderr tail, then the tail of every rank's own log files."""
    parts = [f"torchrun exit {done.returncode}", done.stderr[-1500:]]
    for log in sorted(log_dir.rglob("*.log")):
        parts.append(f"--- {log.relative_to(log_dir)}\n{log.read_text(errors='replace')[-2500:]}")
    return "\n".join(parts)


@pytest.fixture
def ros_context():
    """An rclpy context of the test's own: nodes built in-process on it, shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture(scope="module")
def sim_frames():
    """Messages of a few tabletop frames, 0.2 s apart: (static /tf_static, [{topic: msg}] per frame,
    ground truth included), for nodes fed in-process."""
    from ocgs_ros.ros import conversions
    from ocgs_ros.ros.sim_messages import SimStream, make_world

    start_ns, ns = 1_700_000_000 * 10 ** 9, 10 ** 9
    stream = SimStream(make_world("tabletop", 3, 64, 48, 16, 256))
    static = dict(stream.static_messages(conversions.ns_to_stamp(start_ns)))
    frames = []
    for i in range(4):
        stamp = conversions.ns_to_stamp(start_ns + i * ns // 5)
        frames.append(dict(stream.frame_messages(i * 6, stamp).all()))
    return static, frames
