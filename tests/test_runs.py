"""Model export/import: identical predictions after a round trip; clear errors on bad files."""

import json
from contextlib import contextmanager

import pytest
import torch
from conftest import HEAD_VARIANTS, build_variant

from npkit.data import make_sampler
from npkit.models import MODELS, NeuralProcess, build_model
from npkit.runs import CheckpointError, load_model, save_model


@pytest.fixture
def batch():
    return make_sampler("gp1d").sample(3, torch.Generator().manual_seed(0))


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("np", hidden_dim=16, r_dim=8, z_dim=4)
    save_model(model, tmp_path / "m")
    return model, tmp_path / "m"


# every registered Neural Process (the statistician and the VAE: their own tests), and TNP-D with a mixture head
NEURAL_PROCESSES = [n for n in sorted(MODELS) if issubclass(MODELS[n], NeuralProcess)] + list(HEAD_VARIANTS)


@pytest.mark.parametrize("name", NEURAL_PROCESSES)
def test_round_trip_gives_identical_predictions(tmp_path, batch, name):
    torch.manual_seed(0)
    options = dict(hidden_dim=16, r_dim=16, z_dim=4, num_heads=2, min_sigma=0.05, init="xavier_normal")
    model = build_variant(name, **options)
    loaded = load_model(save_model(model, tmp_path / name))
    assert loaded.config == model.config and type(loaded) is type(model)
    model.eval(), loaded.eval()
    torch.manual_seed(1)
    a = model(batch.xc, batch.yc, batch.xt, num_samples=3)
    torch.manual_seed(1)
    b = loaded(batch.xc, batch.yc, batch.xt, num_samples=3)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.stddev, b.stddev)


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_truncated_weights_are_reported_as_corrupt(saved):
    _, folder = saved
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt safetensors"):
        load_model(folder)


def test_corrupt_config_is_reported(saved):
    _, folder = saved
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        load_model(folder)


def test_foreign_json_is_rejected(saved):
    _, folder = saved
    (folder / "config.json").write_text(json.dumps({"model": "np"}))
    with pytest.raises(CheckpointError, match="not an npkit checkpoint"):
        load_model(folder)


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        (None, "model", "transformer", "unknown model 'transformer'"),
        ("config", "hidden_dim", 32, "has shape"),
        ("config", "min_sigma", 2.0, "min_sigma"),
    ],
)
def test_edited_config_is_rejected_with_the_reason(saved, section, key, value, message):
    _, folder = saved
    meta = json.loads((folder / "config.json").read_text())
    (meta[section] if section else meta)[key] = value
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=message):
        load_model(folder)


def test_a_newly_registered_family_saves_and_loads_without_changes_to_npkit(tmp_path):
    """A model family defined outside npkit (one class on the base's seams) round-trips."""
    from dataclasses import dataclass

    from npkit.models import NeuralProcess, register_model
    from npkit.models.base import MeanPath, ModelConfig

    @dataclass
    class WideConfig(ModelConfig):
        extra_width: int = 3

    class TwoPathCNP(NeuralProcess):
        name = "two-path-test"
        is_latent = False
        config_class = WideConfig

        def build_deterministic(self, cfg):
            return MeanPath(cfg)

    register_model(TwoPathCNP)
    try:
        torch.manual_seed(0)
        model = build_model("two-path-test", hidden_dim=8, r_dim=8, extra_width=5)
        loaded = load_model(save_model(model, tmp_path / "m"))
        assert type(loaded) is TwoPathCNP and loaded.config.extra_width == 5
        x = torch.randn(2, 3, 1)
        torch.testing.assert_close(loaded(x, x, x).mean, model(x, x, x).mean)
    finally:
        MODELS.pop("two-path-test")


def test_non_finite_weights_are_refused_on_load(saved):
    model, folder = saved
    state = {k: v.clone() for k, v in model.state_dict().items()}
    key = next(iter(state))
    state[key].view(-1)[0] = float("nan")
    from safetensors.torch import save_file

    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"{key} holds NaN or inf"):
        load_model(folder)


# --- one writer per run folder; pruning never loses the latest checkpoint


@contextmanager
def _holder(run_dir):
    """A subprocess that takes the run folder's lock and keeps it until SIGKILLed on exit."""
    import subprocess
    import sys

    code = (
        "import time\nfrom npkit.runs import run_lock\n"
        f"with run_lock({str(run_dir)!r}):\n    print('LOCKED', flush=True)\n    time.sleep(120)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout.readline().strip() == "LOCKED"
            yield process
        finally:
            process.kill()  # SIGKILL: no cleanup code runs in the holder


def test_a_second_writer_is_refused_naming_the_folder_and_the_holders_pid(tmp_path):
    from npkit.runs import RunLockedError, run_lock

    with _holder(tmp_path / "run") as holder:
        message = rf"{tmp_path / 'run'} is in use by another npkit run \(pid {holder.pid}\)"
        with pytest.raises(RunLockedError, match=message):
            with run_lock(tmp_path / "run"):
                pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    from npkit.runs import run_lock

    with _holder(tmp_path / "run"):
        pass
    with run_lock(tmp_path / "run"):
        with run_lock(tmp_path / "run"):  # re-entrant in one process
            pass


def test_run_dir_that_is_a_file_is_reported(tmp_path):
    from npkit.runs import run_lock

    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file; give a folder"):
        with run_lock(tmp_path / "file"):
            pass


def test_pruning_keeps_the_latest_target_and_removes_stale_newer_folders(tmp_path):
    """keep_checkpoints=1, a half-written higher-numbered folder left by a kill and a changed
    checkpoint interval on resume: the folder latest.json points at survives every prune."""
    from npkit.runs import checkpoints_dir, latest_checkpoint
    from npkit.train import fit

    options = dict(keep_checkpoints=1, progress=False, schedule_steps=20)
    fit(
        build_model("cnp", hidden_dim=8, r_dim=8),
        make_sampler("gp1d"),
        steps=4,
        checkpoint_every=2,
        run_dir=tmp_path,
        **options,
    )
    root = checkpoints_dir(tmp_path)
    (root / "step-00000009").mkdir()  # half-written by a killed run: no files
    (root / ".step-00000006.partial999").mkdir()  # a staging folder of a killed run
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        ".step-00000006.partial999",
        "step-00000004",
        "step-00000009",
    ]
    fit(
        build_model("cnp", hidden_dim=8, r_dim=8),
        make_sampler("gp1d"),
        steps=7,
        checkpoint_every=3,
        run_dir=tmp_path,
        resume=True,
        **options,
    )
    assert latest_checkpoint(tmp_path).name == "step-00000007"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step-00000007"]
