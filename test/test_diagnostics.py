"""NodeDiagnostics: rates, latency, drops and the status level it reports."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus

from ocgs_ros.ros.diagnostics import NodeDiagnostics, RateMeter


def test_rate_meter_uses_a_sliding_window():
    now = [0.0]
    meter = RateMeter(window_s=1.0, clock=lambda: now[0])
    for k in range(11):
        now[0] = k * 0.1
        meter.tick()
    assert abs(meter.rate_hz() - 10.0) < 1e-6
    now[0] = 5.0
    assert meter.rate_hz() == 0.0 and meter.count == 11


def test_status_levels_and_values(ros_node):
    diag = NodeDiagnostics(ros_node, "mapping", period_s=60.0, expected_rates_hz={"camera": 10.0, "lidar": 10.0})
    for _ in range(3):
        diag.tick("camera")
    diag.frame(dropped=False)
    diag.latency(0.05)
    diag.latency(0.15)
    array = diag.publish()
    status = array.status[0]
    assert status.level == DiagnosticStatus.ERROR and "no lidar" in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert values["latency_ms_median"] == "100.0" and values["frames_in"] == "1"

    for _ in range(3):
        diag.frame(dropped=True)
    summary = diag.summary()
    assert summary["dropped_ratio"] == 0.75
    level, message = diag.level_and_message({**summary, "rate_hz/camera": 10.0, "rate_hz/lidar": 9.0})
    assert level == DiagnosticStatus.WARN and "dropping 75%" in message
    level, message = diag.level_and_message({**summary, "dropped_ratio": 0.0, "rate_hz/camera": 10.0,
                                             "rate_hz/lidar": 9.0})
    assert level == DiagnosticStatus.OK and message == "ok"


def test_status_can_go_from_ok_to_warn_and_back_without_raising(ros_node):
    """rclpy raises when one logging call site changes severity; publish() must survive OK -> WARN
    -> OK (it runs in the node's timer, so an exception there would stop the node)."""
    diag = NodeDiagnostics(ros_node, "flapping", period_s=60.0, expected_rates_hz={"camera": 1.0}, log_every_s=0.0)
    for _ in range(5):
        diag.tick("camera")
    levels = []
    for dropped, count in ((False, 2), (True, 6), (False, 10)):  # drop ratio 0 -> 0.75 -> 0.33
        for _ in range(count):
            diag.frame(dropped=dropped)
        levels.append(diag.publish().status[0].level)
    assert levels == [DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.OK]


def test_p90_is_never_below_the_median_and_the_window_is_bounded():
    from ocgs_ros.ros.diagnostics import LATENCY_WINDOW, latency_figures, latency_window

    assert latency_figures([]) == {"latency_ms_median": None, "latency_ms_p90": None}
    for samples in ([0.1, 0.2], [0.1, 0.2, 0.3], [0.05, 0.1, 0.9]):
        figures = latency_figures(samples)
        assert figures["latency_ms_p90"] >= figures["latency_ms_median"], samples
    assert latency_figures([0.1, 0.2]) == {"latency_ms_median": 150.0, "latency_ms_p90": 190.0}
    window = latency_window()
    window.extend(float(k) for k in range(3 * LATENCY_WINDOW))
    assert len(window) == LATENCY_WINDOW and window[0] == 2 * LATENCY_WINDOW


class _Logger:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def warning(self, text, **_):
        self.lines.append(("warning", text))

    def error(self, text, **_):
        self.lines.append(("error", text))


def test_rejects_are_counted_per_reason_and_each_reason_is_logged_at_least_once(ros_node):
    from ocgs_ros.ros.frame_rejects import FrameRejects
    from ocgs_ros.ros.sensor_frames import FrameError

    now = [0.0]
    logger = _Logger()
    diag = NodeDiagnostics(ros_node, "rejects", period_s=60.0)
    rejects = FrameRejects(logger, diag, log_interval_s=5.0, clock=lambda: now[0])
    for _ in range(50):  # a flood of one reason ...
        rejects.reject(FrameError("image_empty", "image has no pixels"))
    rejects.reject(FrameError("tf_extrapolation", "too old"))  # ... does not hide a new one
    rejects.on_worker_error(None, RuntimeError("boom"))
    assert rejects.counts == {"image_empty": 50, "tf_extrapolation": 1, "processing": 1}
    assert [level for level, _ in logger.lines] == ["warning", "warning", "error"]
    assert "[image_empty]" in logger.lines[0][1] and "[tf_extrapolation]" in logger.lines[1][1]
    assert "RuntimeError: boom" in logger.lines[2][1]
    now[0] = 6.0  # the interval has passed: one more line, saying how many were not logged
    rejects.reject(FrameError("image_empty", "image has no pixels"))
    assert len(logger.lines) == 4 and "50 'image_empty' frames since the last such line" in logger.lines[3][1]
    values = {kv.key: kv.value for kv in diag.publish().status[0].values}
    assert values["rejected/image_empty"] == "51" and values["rejected/tf_extrapolation"] == "1"
