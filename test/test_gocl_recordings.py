"""Training the codebook on one's own recordings: gocl_data (bag, image folder) -> gocl_train ->
export -> the mapping pipeline and object_mapping_node load it and map; the frozen-ViT feature
option from a local weight file."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_node_object_mapping import feed_tf, make_node, parts, submit

from ocgs_ros.mapping.config import MappingConfig
from ocgs_ros.mapping.evaluate import EvalConfig, make_world_config, mapping_frame
from ocgs_ros.mapping.pipeline import ObjectMappingPipeline
from ocgs_ros.ocl import GoclConfig, load_checkpoint
from ocgs_ros.ocl.data import GoclViewDataset
from ocgs_ros.ocl.evaluate import main as evaluate_main
from ocgs_ros.ocl.export import export_checkpoint
from ocgs_ros.ocl.model import GoclModel
from ocgs_ros.ocl.recordings import RecordingWriter, centre_square
from ocgs_ros.ocl.train import main as train_main
from ocgs_ros.ocl.vit import VisionTransformer, ViTWeightsError, load_frozen_vit, vit_from_state_dict
from ocgs_ros.ros.bags import BagReader, BagWriter
from ocgs_ros.ros.conversions import get_cv_bridge
from ocgs_ros.ros.gocl_data import main as gocl_data_main
from ocgs_ros.ros.sim_to_bag import write_sim_bag
from ocgs_ros.settings import from_flat
from ocgs_ros.sim.dataset import scene_seed
from ocgs_ros.sim.tabletop import TabletopWorld

torch.set_num_threads(1)
FRAMES = 6
RATE_HZ = 5.0
RAW, COMPRESSED = "/cam/image", "/cam/image/compressed"


@pytest.fixture(scope="module")
def recording_bag(tmp_path_factory) -> Path:
    """A simulated camera recorded twice per frame (the robot stood still: near-duplicates), one
    truncated message (a bad frame), and the same frames as PNG CompressedImages."""
    root = tmp_path_factory.mktemp("recording")
    sim = write_sim_bag(root / "sim", frames=FRAMES, rate_hz=RATE_HZ, image_width=160, image_height=90,
                        lidar_beams=2, lidar_azimuth_steps=16, ground_truth=False)
    with BagReader(sim) as reader:
        images = [m.deserialize() for m in reader.messages(["/camera/image_raw"])]
    assert len(images) == FRAMES
    bridge = get_cv_bridge()
    with BagWriter(root / "recording", storage="sqlite3") as writer:
        for msg in images:
            stamp_ns = msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec
            writer.write(RAW, msg, stamp_ns)
            msg.header.stamp.nanosec += 1_000_000  # 1 ms later, same picture
            writer.write(RAW, msg, stamp_ns + 1_000_000)
            rgb = bridge.imgmsg_to_cv2(msg, "bgr8")
            compressed = bridge.cv2_to_compressed_imgmsg(rgb, "png")
            compressed.header = msg.header
            writer.write(COMPRESSED, compressed, stamp_ns)
        broken = images[0]
        broken.data = broken.data[: len(broken.data) // 2]
        writer.write(RAW, broken, stamp_ns + 2_000_000)
    return root / "recording"


@pytest.fixture(scope="module")
def bag_dataset(recording_bag, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "from_bag"
    assert gocl_data_main(["--bag", str(recording_bag), "--image-topic", RAW, "--out", str(out), "--size", "32",
                           "--no-progress"]) == 0
    return out


def test_bag_frames_kept_duplicates_and_bad_counted(bag_dataset):
    summary = json.loads((bag_dataset / "summary.json").read_text())
    assert summary["frames_read"] == 2 * FRAMES + 1
    assert summary["frames_kept"] == summary["frames_in_dataset"] == FRAMES
    assert summary["skipped_duplicates"] == FRAMES
    assert summary["bad_frames"] == 1 and summary["bad_reasons"] == {"image_data_length": 1}
    dataset = GoclViewDataset(bag_dataset)
    assert not dataset.has_labels and len(dataset) == FRAMES and dataset.image_size == (32, 32)
    assert set(dataset[0]) == {"image", "scene", "view"}


def test_bag_time_subsampling_and_compressed_topic(recording_bag, tmp_path):
    out = tmp_path / "every"
    # Frames are 0.2 s apart: at most one per 0.3 s keeps frames 0, 2, 4.
    assert gocl_data_main(["--bag", str(recording_bag), "--image-topic", RAW, "--out", str(out), "--size", "32",
                           "--every-s", "0.3", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_kept"] == 3 and summary["skipped_too_soon"] == 2 * FRAMES - 3
    compressed = tmp_path / "compressed"
    assert gocl_data_main(["--bag", str(recording_bag), "--image-topic", COMPRESSED, "--out", str(compressed),
                           "--size", "32", "--no-progress"]) == 0
    from_png = GoclViewDataset(compressed)
    from_raw = GoclViewDataset(out)
    assert len(from_png) == FRAMES
    assert torch.equal(from_png.rgb[0], from_raw.rgb[0])  # lossless PNG: the same stored frame


def test_bad_inputs_are_one_line_and_exit_2(recording_bag, tmp_path, capsys):
    cases = [
        ["--bag", str(tmp_path / "missing"), "--image-topic", RAW],
        ["--bag", str(recording_bag), "--image-topic", "/no/such/topic"],
        ["--images", str(tmp_path / "empty_dir")],
    ]
    (tmp_path / "empty_dir").mkdir()
    for index, args in enumerate(cases):
        assert gocl_data_main([*args, "--out", str(tmp_path / f"out{index}"), "--no-progress"]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("gocl_data: error:") and "\n" not in error
        assert not (tmp_path / f"out{index}").exists() and not (tmp_path / f".out{index}.partial").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert gocl_data_main(["--bag", str(recording_bag), "--image-topic", RAW, "--out", str(tmp_path / "taken")]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_image_folder_centre_crop_duplicates_and_bad_files(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    wide = np.zeros((90, 160, 3), np.uint8)
    wide[:, :35] = (255, 0, 0)  # red bars outside the centred 90x90 square
    wide[:, -35:] = (255, 0, 0)
    wide[20:70, 55:105] = (0, 200, 0)
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "b.png"), cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))  # duplicate of a
    other = np.full((64, 48, 3), 30, np.uint8)
    cv2.imwrite(str(folder / "c.jpg"), other)
    (folder / "d.png").write_bytes(b"not a png")
    out = tmp_path / "ds"
    assert gocl_data_main(["--images", str(folder), "--out", str(out), "--size", "30", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames_read"], summary["frames_kept"], summary["skipped_duplicates"], summary["bad_frames"]) \
        == (4, 2, 1, 1)
    stored = GoclViewDataset(out).rgb[0].numpy()
    assert stored.shape == (30, 30, 3)
    assert stored[..., 0].max() < 20  # the red bars were cropped away, not squashed in
    np.testing.assert_array_equal(stored, centre_square(wide, 30))


def test_max_frames_is_a_seeded_sample(tmp_path):
    def sample(seed: int, name: str) -> list[int]:
        writer = RecordingWriter(tmp_path / name, size=8, duplicate_threshold=0.0, max_frames=3, seed=seed)
        for index in range(10):
            writer.add(np.full((8, 8, 3), index * 20, np.uint8), {"index": index})
        summary = writer.close()
        assert summary["frames_in_dataset"] == 3 and summary["skipped_over_max_frames"] == 7
        views = json.loads((tmp_path / name / "scene_00000" / "scene.json").read_text())["views"]
        return [v["index"] for v in views]

    first = sample(1, "a")
    assert first == sample(1, "b") and first == sorted(first)


def test_train_on_bag_export_and_the_pipeline_and_node_map_with_it(bag_dataset, tmp_path, ros_context, sim_frames):
    run = tmp_path / "run"
    assert train_main(["--data", str(bag_dataset), "--out", str(run), "--preset", "tiny", "--steps", "4",
                       "--batch", "3", "--seed", "0", "--log-every", "2", "--threads", "1", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(math.isfinite(row["total"]) for row in rows)
    shipped = tmp_path / "my_robot.pt"
    export_checkpoint(run / "checkpoint.pt", shipped)
    assert evaluate_main(["--checkpoint", str(shipped), "--data", str(bag_dataset),
                          "--out", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["labels"] is False and math.isfinite(result["reconstruction_mse"])

    config = from_flat(MappingConfig, {"gocl.checkpoint": str(shipped), "view.process_width": 64,
                                       "view.process_height": 48, "view.max_points": 2000})
    pipeline = ObjectMappingPipeline(config)
    model_config = load_checkpoint(shipped)[1]
    assert pipeline.num_entries == model_config.codebook_size
    world = TabletopWorld(make_world_config(EvalConfig(camera_width=128, camera_height=96)), seed=scene_seed(7, 0))
    update = None
    for index in (0, 10):
        update = pipeline.process(mapping_frame(world, index))
    logits = pipeline.identity.pixel_logits(update.rgb)
    assert logits.shape == (model_config.codebook_size + 1, 48, 64) and torch.isfinite(logits).all()
    assert update.frames_integrated == 2 and update.num_gaussians > 0
    assert isinstance(update.objects, list)

    # the node, given the checkpoint as a user gives it (gocl.checkpoint:=PATH), maps and publishes
    static, frames = sim_frames
    node = make_node(ros_context, shipped, pipeline_process=True)  # as users run it: the pipeline's own process
    try:
        assert node.pipeline.num_entries == model_config.codebook_size
        for frame in frames[:2]:
            feed_tf(node, static, frame)
            submit(node, *parts(frame))
        assert node.published == 2 and not node.rejected, node.rejected
        assert node.pipeline.stats()["gaussians"] > 0
    finally:
        node.destroy_node()


# ----- frozen ViT features ----------------------------------------------------------------
def random_vit(dinov2: bool, patch: int = 8, grid: int = 2) -> VisionTransformer:
    """A small random ViT in the DINO (or DINOv2: registers, layer scale, mask token) layout."""
    torch.manual_seed(0)
    vit = VisionTransformer(embed_dim=32, depth=2, patch_size=patch, num_positions=1 + grid * grid, mlp_hidden=64,
                            num_register_tokens=4 if dinov2 else 0, layer_scale=dinov2, mask_token=dinov2)
    with torch.no_grad():
        for parameter in vit.parameters():
            parameter.normal_(0.0, 0.2)
    return vit


@pytest.mark.parametrize("dinov2", [False, True])
def test_vit_layouts_load_and_interpolate_positions(dinov2, tmp_path):
    vit = random_vit(dinov2)
    prefixed = {f"module.{k}": v for k, v in vit.state_dict().items()}  # as a DDP checkpoint stores it
    torch.save(prefixed, tmp_path / "vit.pt")
    loaded = load_frozen_vit(tmp_path / "vit.pt")
    assert (loaded.register_tokens is not None) == dinov2 and not any(p.requires_grad for p in loaded.parameters())
    images = torch.rand(2, 3, 32, 48)  # 4x6 patches; the weights were made for 2x2
    features = loaded.patch_features(images)
    assert features.shape == (2, 32, 4, 6)
    torch.testing.assert_close(features, vit.patch_features(images))


def test_vit_wrong_key_is_one_clear_error(tmp_path, capsys):
    state = random_vit(True).state_dict()
    state["blocks.0.attn.qkv_typo.weight"] = state.pop("blocks.0.attn.qkv.weight")
    with pytest.raises(ViTWeightsError, match=r"missing keys \['blocks.0.attn.qkv.weight'\].*qkv_typo"):
        vit_from_state_dict(state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data", "unused", "--out", str(tmp_path / "run"), "--preset", "tiny", "--steps", "1",
                    "--set", "target=vit_features", "--set", f"vit_weights={path}"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "qkv_typo" in error and str(path) in error
    with pytest.raises(ValueError, match="needs vit_weights"):
        GoclConfig.tiny(target="vit_features")


def test_vit_feature_target_trains_from_local_weights(bag_dataset, tmp_path):
    weights = tmp_path / "dinov2_small_random.pt"
    torch.save(random_vit(True).state_dict(), weights)
    run = tmp_path / "vit_run"
    assert train_main(["--data", str(bag_dataset), "--out", str(run), "--preset", "tiny", "--steps", "6",
                       "--batch", "3", "--seed", "0", "--log-every", "1", "--threads", "1", "--no-progress",
                       "--set", "target=vit_features", "--set", "encoder_input=vit_features",
                       "--set", f"vit_weights={weights}"]) == 0
    totals = [json.loads(line)["total"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(totals) == 6 and all(math.isfinite(t) for t in totals)
    assert totals[-1] < totals[0]
    model, config, _ = load_checkpoint(run / "checkpoint.pt")
    assert config.target == "vit_features" and not any(k.startswith("vit") for k in model.state_dict())
    output = model(GoclViewDataset(bag_dataset)[0]["image"][None])
    assert output.reconstruction.shape == output.target.shape == (1, 32, 4, 4)
    assert output.masks.shape == (1, config.num_slots, 32, 32)  # upsampled from the 4x4 patch grid
    # ViT features as encoder input only: pixels stay the target.
    features_in = GoclModel(GoclConfig.tiny(encoder_input="vit_features", vit_weights=str(weights))).eval()
    assert features_in(GoclViewDataset(bag_dataset)[0]["image"][None]).reconstruction.shape == (1, 3, 32, 32)
    # The pixel model's layout is unchanged by the option.
    assert GoclModel(GoclConfig.tiny()).object_decoder.mlp[-1].out_features == 4
