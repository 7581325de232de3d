"""GOCL data loader and training command (tiny config, tiny simulated dataset, seconds)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_torchrun, torchrun_failure
from ocgs_ros.ocl import GoclConfig, load_checkpoint
from ocgs_ros.ocl.data import GoclViewDataset, ensure_gocl_dataset, gocl_tabletop_config
from ocgs_ros.ocl.codebook_warmup import kmeans_prototypes
from ocgs_ros.ocl.train import GoclTrainConfig, main as train_main
from ocgs_ros.training import capture_rng_state, restore_rng_state
from ocgs_ros.training.cli import config_to_argv, parse_config
from ocgs_ros.sim.dataset import TabletopDataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gocl") / "train"
    return ensure_gocl_dataset(root, num_scenes=4, seed=0, width=32, height=32, views_per_scene=2, progress=False)


def tiny_args(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--preset", "tiny", "--steps", str(steps), "--batch", "4",
            "--seed", "3", "--log-every", "2", "--checkpoint-every", "3", "--threads", "1", "--no-progress",
            *extra]


# ----- data -------------------------------------------------------------------------------
def test_dataset_shapes_dtypes_and_ranges(tiny_dataset):
    dataset = GoclViewDataset(tiny_dataset)
    assert len(dataset) == 4 * 2 and dataset.num_scenes == 4 and dataset.image_size == (32, 32)
    item = dataset[3]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 32, 32)
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["instance"].dtype == torch.int64 and item["instance"].shape == (32, 32)
    assert item["kind"].dtype == torch.int64
    assert (item["scene"], item["view"]) == (1, 1)
    # Stored once as uint8, and it is the simulator's image (scene 1, view 1).
    assert dataset.rgb.dtype == torch.uint8
    source = TabletopDataset(tiny_dataset).scene(1)
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), source["rgb"][1] / 255.0, atol=1e-6)
    # Background pixels have kind -1 exactly where instance is 0.
    assert torch.equal(item["kind"] < 0, item["instance"] == 0)


def test_dataset_resizes_to_requested_size(tiny_dataset):
    dataset = GoclViewDataset(tiny_dataset, size=(16, 16), max_scenes=2)
    assert len(dataset) == 4 and dataset[0]["image"].shape == (3, 16, 16)
    labels = dataset[0]["instance"].unique()
    original = GoclViewDataset(tiny_dataset, max_scenes=1)[0]["instance"].unique()
    assert set(labels.tolist()) <= set(original.tolist())  # nearest: no invented label values


def test_hflip_mirrors_image_and_labels_together(tiny_dataset):
    plain = GoclViewDataset(tiny_dataset, max_scenes=1)
    flipping = GoclViewDataset(tiny_dataset, max_scenes=1, hflip=True)
    torch.manual_seed(0)
    seen_flip = seen_plain = False
    for _ in range(20):
        item, reference = flipping[0], plain[0]
        if torch.equal(item["image"], reference["image"]):
            seen_plain = True
            assert torch.equal(item["instance"], reference["instance"])
        else:
            seen_flip = True
            assert torch.equal(item["image"], reference["image"].flip(-1))
            assert torch.equal(item["instance"], reference["instance"].flip(-1))
            assert torch.equal(item["kind"], reference["kind"].flip(-1))
    assert seen_flip and seen_plain


def test_gocl_world_keeps_every_kind_and_few_objects():
    config = gocl_tabletop_config()
    assert config.kinds == () and 2 <= config.min_objects <= config.max_objects <= 5


def test_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        GoclViewDataset(tmp_path / "missing")
    with pytest.raises(ValueError):
        ensure_gocl_dataset(tmp_path / "x", num_scenes=0, seed=0)


# ----- config / RNG helpers ---------------------------------------------------------------
def test_model_config_applies_overrides_and_baseline_switch():
    run = GoclTrainConfig(data="d", out="o", steps=1, preset="cpu", no_codebook=True,
                          overrides=("lr_encoder=2e-4", "encoder_channels=16,16,16"))
    config = run.model_config()
    assert config.lr_encoder == pytest.approx(2e-4) and config.encoder_channels == (16, 16, 16)
    assert config.codebook_warmup_steps == GoclConfig.cpu().codebook_warmup_steps
    assert config.use_codebook is False and config.image_height == GoclConfig.cpu().image_height
    with pytest.raises(ValueError, match="unknown GoclConfig keys"):
        GoclTrainConfig(data="d", out="o", steps=1, overrides=("no_such_field=1",))
    with pytest.raises(ValueError, match="expected an integer"):
        GoclTrainConfig(data="d", out="o", steps=1, overrides=("num_object_slots=2.5",))


def test_config_round_trip_from_argv(tmp_path):
    """The documented command line parses to the config it says; the config prints back to argv."""
    argv = ["--data", "data/gocl_train", "--out", "runs/wh_kl1e3", "--preset", "cpu", "--steps", "4000",
            "--batch", "8", "--seed", "0", "--threads", "1", "--snapshot-every", "1000", "--log-every", "50",
            "--no-progress", "--set", "kl_pi_weight=0.001", "--set", "encoder_channels=16,16,16"]
    config = parse_config(GoclTrainConfig, argv, "gocl_train", "")
    assert (config.steps, config.batch, config.log_every, config.snapshot_every) == (4000, 8, 50, 1000)
    assert config.checkpoint_every == 500 and config.resume is False and config.init_from is None  # defaults
    assert config.overrides == ("kl_pi_weight=0.001", "encoder_channels=16,16,16")
    assert config.model_config().kl_pi_weight == pytest.approx(1e-3)
    assert parse_config(GoclTrainConfig, config_to_argv(config), "gocl_train", "") == config
    other = GoclTrainConfig(data="d", out="o", steps=3, resume=True, no_codebook=True, init_from="x.pt", stop_after=2)
    assert parse_config(GoclTrainConfig, config_to_argv(other), "gocl_train", "") == other
    assert GoclTrainConfig(**{**config.to_dict(), "overrides": tuple(config.to_dict()["overrides"])}) == config
    with pytest.raises(ValueError, match="--data must be of type str"):
        GoclTrainConfig(data=tmp_path, out="o", steps=1)  # a Path would make the checkpoints unloadable


def test_bad_command_lines_exit_2_with_one_line(tiny_dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_main(tiny_args(tiny_dataset, tmp_path / "x", 0))
    assert exc.value.code == 2 and "--steps must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        train_main(tiny_args(tiny_dataset, tmp_path / "x", 2, "--set", "no_such=1"))
    assert exc.value.code == 2 and "unknown GoclConfig keys ['no_such']" in capsys.readouterr().err
    assert train_main(tiny_args(tiny_dataset, tmp_path / "none", 2, "--resume")) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_cpu_preset_is_what_the_brief_asks_for():
    config = GoclConfig.cpu()
    assert 48 <= config.image_height <= 64 and config.codebook_size >= 24
    assert GoclConfig.from_dict(config.to_dict()) == config


def test_rng_state_round_trip():
    state = capture_rng_state()
    first = (torch.rand(3), np.random.rand(3), __import__("random").random())
    restore_rng_state(state)
    second = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


# ----- train command ----------------------------------------------------------------------
def test_train_command_writes_checkpoint_log_plot_and_snapshots(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(tiny_args(tiny_dataset, out, 6, "--snapshot-every", "3")) == 0
    model, config, meta = load_checkpoint(out / "checkpoint.pt")
    assert meta["step"] == 6 and config == GoclConfig.tiny()
    assert meta["optimizer"] is not None and len(meta["extra"]["rng_states"]) == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4, 6]
    for key in ("reconstruction", "kl_ext", "kl_bck", "kl_codebook_usage", "total", "tau", "lr_encoder",
                "codebook_perplexity", "codebook_active", "revived"):
        assert all(np.isfinite(row[key]) for row in rows), key
    assert rows[0]["tau"] > rows[-1]["tau"]  # annealing
    assert 1.0 <= rows[-1]["codebook_perplexity"] <= config.codebook_size
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "snapshots").glob("*.pt")) == ["step_0000003.pt", "step_0000006.pt"]
    # Training changed the weights.
    fresh = torch.load(out / "snapshots" / "step_0000003.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(fresh[k], v) for k, v in model.state_dict().items())
    # A second run into the same folder must not silently overwrite it.
    assert train_main(tiny_args(tiny_dataset, out, 6)) == 2
    assert "exists: pass --resume" in capsys.readouterr().err


def test_resume_is_identical_to_an_uninterrupted_run(tiny_dataset, tmp_path, capsys):
    # Aggressive revival (fast usage decay, high threshold) so the resumed part revives prototypes
    # from the restored feature buffer: that must match too.
    revive = ["--set", "revive_every=2", "--set", "usage_ema_decay=0.3", "--set", "dead_usage_fraction=0.9"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_main(tiny_args(tiny_dataset, straight, 9, *revive))
    train_main(tiny_args(tiny_dataset, split, 4, *revive))  # stops at a step between checkpoints
    assert train_main(tiny_args(tiny_dataset, split, 9, "--resume")) == 2  # other config than the checkpoint
    assert "its config differs" in capsys.readouterr().err
    train_main(tiny_args(tiny_dataset, split, 9, "--resume", *revive))
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(split / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 9
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    assert torch.equal(a["extra"]["codebook_recent_features"], b["extra"]["codebook_recent_features"])
    revived = sum(json.loads(line)["revived"] for line in (straight / "metrics.jsonl").read_text().splitlines())
    assert revived > 0  # the scenario really exercised revival
    rows = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == sorted({row["step"] for row in rows})  # no duplicated steps


def test_codebook_warmup_switches_on_with_kmeans_prototypes_and_resumes_exactly(tiny_dataset, tmp_path):
    warm = ["--set", "codebook_warmup_steps=4"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_main(tiny_args(tiny_dataset, straight, 7, *warm))
    train_main(tiny_args(tiny_dataset, split, 7, "--stop-after", "3", *warm))  # checkpoint inside the warm-up
    _, during, meta = load_checkpoint(split / "checkpoint.pt")
    assert during.use_codebook is False and meta["extra"]["target_config"]["use_codebook"] is True
    train_main(tiny_args(tiny_dataset, split, 7, "--resume", *warm))
    model, config, _ = load_checkpoint(split / "checkpoint.pt")
    assert config.use_codebook is True and config.codebook_warmup_steps == 4
    a = torch.load(straight / "checkpoint.pt", weights_only=True)["state_dict"]
    b = torch.load(split / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [row["codebook_on"] for row in rows] == [False, False, True, True]
    # The prototypes left their random initialisation (k-means centres + a few updates).
    torch.manual_seed(3)
    from ocgs_ros.ocl import GoclModel
    initial = GoclModel(config).codebook.prototypes.detach()
    assert not torch.allclose(model.codebook.prototypes, initial, atol=1e-3)


def test_init_from_a_baseline_run_switches_the_codebook_on(tiny_dataset, tmp_path, capsys):
    base, forked = tmp_path / "base", tmp_path / "forked"
    train_main(tiny_args(tiny_dataset, base, 4, "--no-codebook"))
    train_main(tiny_args(tiny_dataset, forked, 6, "--init-from", str(base / "checkpoint.pt"),
                         "--set", "lr_encoder=1e-4", "--set", "lr_decoder=1e-4"))
    model, config, meta = load_checkpoint(forked / "checkpoint.pt")
    assert meta["step"] == 6 and config.use_codebook and config.lr_encoder == pytest.approx(1e-4)
    assert [group["base_lr"] for group in meta["optimizer"]["param_groups"]] == pytest.approx([1e-4, 1e-4])
    rows = [json.loads(line) for line in (forked / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [6] and rows[0]["codebook_on"] is True
    assert train_main(tiny_args(tiny_dataset, tmp_path / "bad", 6, "--init-from", str(base / "checkpoint.pt"),
                                "--set", "intrinsic_dim=16")) == 2
    assert "weights do not fit the requested config" in capsys.readouterr().err


def test_single_run_with_warmup_equals_baseline_then_init_from(tiny_dataset, tmp_path):
    """The recipe's one-command form (warm-up + lr scale) computes exactly what the two-command
    form does (no-codebook run, then --init-from it at the scaled rate)."""
    single, base, forked = tmp_path / "single", tmp_path / "base", tmp_path / "forked"
    train_main(tiny_args(tiny_dataset, single, 7, "--set", "codebook_warmup_steps=4", "--set", "codebook_lr_scale=0.5"))
    train_main(tiny_args(tiny_dataset, base, 4, "--no-codebook"))
    tiny_lr = GoclConfig.tiny().lr_encoder
    train_main(tiny_args(tiny_dataset, forked, 7, "--init-from", str(base / "checkpoint.pt"),
                         "--set", f"lr_encoder={tiny_lr * 0.5}", "--set", f"lr_decoder={tiny_lr * 0.5}"))
    a = torch.load(single / "checkpoint.pt", weights_only=True)
    b = torch.load(forked / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert [g["base_lr"] for g in a["optimizer"]["param_groups"]] == pytest.approx([tiny_lr * 0.5] * 2)


def test_kmeans_prototypes_recover_separated_clusters():
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    points = torch.cat([c + 0.1 * torch.randn(50, 2, generator=torch.Generator().manual_seed(i))
                        for i, c in enumerate(centres)])
    found = kmeans_prototypes(points, 3)
    distances = torch.cdist(centres, found)
    assert float(distances.min(dim=1).values.max()) < 0.2  # every true centre has a prototype on it
    with pytest.raises(ValueError, match="k-means needs"):
        kmeans_prototypes(points[:2], 3)


def test_no_codebook_baseline_trains_with_slot_index_identity(tiny_dataset, tmp_path):
    out = tmp_path / "baseline"
    train_main(tiny_args(tiny_dataset, out, 4, "--no-codebook"))
    model, config, meta = load_checkpoint(out / "checkpoint.pt")
    assert config.use_codebook is False
    start = torch.load(out / "checkpoint.pt", weights_only=True)
    # The codebook takes no part: its prototypes never receive a gradient (only the init remains).
    torch.manual_seed(3)
    from ocgs_ros.ocl import GoclModel
    initial = GoclModel(config).codebook.prototypes
    assert torch.equal(start["state_dict"]["codebook.prototypes"], initial.detach())
    output = model(GoclViewDataset(tiny_dataset, max_scenes=1)[0]["image"][None])
    expected = torch.arange(config.num_object_slots)
    assert torch.equal(output.codebook_weights.argmax(-1)[0], expected)


@pytest.mark.skipif(not hasattr(torch.distributed, "is_available") or not torch.distributed.is_available(),
                    reason="torch.distributed unavailable")
def test_torchrun_two_processes_gloo(tiny_dataset, tmp_path):
    out, logs = tmp_path / "ddp", tmp_path / "torchrun_logs"
    done = run_torchrun("ocgs_ros.ocl.train", tiny_args(tiny_dataset, out, 4, "--batch", "2", "--device", "cpu"), logs)
    assert done.returncode == 0, torchrun_failure(done, logs)
    _, _, meta = load_checkpoint(out / "checkpoint.pt")
    assert meta["step"] == 4 and meta["extra"]["world_size"] == 2
    assert len(meta["extra"]["rng_states"]) == 2  # every rank's RNG state, for an exact resume
    # The two ranks draw different noise (seed + rank) and hence had different RNG states.
    assert not torch.equal(meta["extra"]["rng_states"][0]["torch"], meta["extra"]["rng_states"][1]["torch"])
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [2, 4]  # written once (rank 0), not per rank
