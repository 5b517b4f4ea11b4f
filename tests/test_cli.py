"""The npkit command line: train -> eval -> plot, overrides, errors, resume after a kill."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from npkit.cli import main
from npkit.config import apply_overrides, load_config, presets
from npkit.runs import load_model

TINY_SETS = ("model.hidden_dim=16", "model.r_dim=16", "model.z_dim=4")
TINY = [f"--set={s}" for s in TINY_SETS]


def test_every_preset_loads_and_builds():
    from npkit.cli import _sampler
    from npkit.models import build_model

    assert {"quickstart", "gp1d-cnp", "gp1d-lnp", "gp1d-np", "gp1d-anp"} <= set(presets())
    for name in presets():
        config = load_config(name)
        options = dict(config["model"])
        build_model(options.pop("name"), **options)
        _sampler(config).sample(2, torch.Generator().manual_seed(0))


def cli(*args, sets: tuple[str, ...] = ()) -> int:
    """Run ``npkit`` in-process with ``--set`` for each of ``sets``; return the exit code."""
    return main([str(a) for a in args] + [f"--set={s}" for s in sets])


def test_train_eval_plot_write_the_run_folder(tmp_path, capsys):
    run, cache = tmp_path / "run", tmp_path / "cache"
    train = ("train.steps=30", "train.eval_every=15", "train.progress=false", *TINY_SETS)
    assert cli("train", "quickstart", "--run-dir", run, sets=train) == 0
    quick = ("eval.num_batches=2", "eval.fit_steps=5", "eval.kernels=[rbf]")
    assert cli("eval", run, "--cache-dir", cache, sets=quick) == 0
    printed = capsys.readouterr().out
    assert "GP oracle [rbf]" in printed and "GP fitted [rbf]" in printed
    metrics = json.loads((run / "metrics.json").read_text())["results"]
    assert {"np [rbf]", "GP oracle [rbf]"} <= set(metrics)
    assert metrics["GP oracle [rbf]"]["tar_ll"] > metrics["np [rbf]"]["tar_ll"]
    no_fit = ("eval.num_batches=2", "eval.gp_fitted=false", "eval.kernels=[rbf]")
    assert cli("eval", run, "--cache-dir", cache, sets=no_fit) == 0
    again = json.loads((run / "metrics.json").read_text())["results"]
    assert again["np [rbf]"] == metrics["np [rbf]"]  # evaluation is reproducible
    assert cli("plot", run, sets=("eval.kernels=[rbf]",)) == 0
    figures = sorted(p.name for p in (run / "figures").glob("*.png"))
    assert figures == ["predictions-rbf.png", "prior-trained.png", "prior-untrained.png", "training-curves.png"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "no-such-preset", "--run-dir", "X"], "no config file or preset named 'no-such-preset'"),
        (["train", "quickstart", "--run-dir", "X", "--set", "steps=3"], "--set expects section.key=value"),
        (["train", "quickstart", "--run-dir", "X", "--set", "model.name=gpt"], "unknown model 'gpt'"),
        (["train", "quickstart", "--run-dir", "X", "--set", "data.kernel=cosine"], "unknown kernel 'cosine'"),
        (["train", "quickstart", "--run-dir", "X", "--set", "train.stepz=3"], "unknown train option"),
        (["eval", "X"], "not an npkit run folder"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_overrides_parse_yaml_values():
    config = apply_overrides(
        load_config("quickstart"),
        ["train.lr=1e-3", "eval.kernels=[rbf, periodic]", "train.grad_clip=0.5", "train.grad_clip=null"],
    )
    assert config["train"]["lr"] == 1e-3 and config["eval"]["kernels"] == ["rbf", "periodic"]
    assert "grad_clip" not in config["train"]


def test_null_override_restores_the_default():
    config = apply_overrides(
        load_config("quickstart"), ["model.name=cnp", "objective.name=auto", "objective.num_samples=null"]
    )
    assert config["objective"] == {"name": "auto"}


def test_training_killed_mid_run_resumes_to_the_same_model(tmp_path):
    sets = ("train.steps=400", "train.checkpoint_every=20", "train.progress=false", "train.eval_every=null")
    steps = [f"--set={s}" for s in sets] + TINY
    cli = [sys.executable, "-m", "npkit.cli", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [*cli, "quickstart", "--run-dir", str(tmp_path / "straight"), *steps],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    killed = subprocess.Popen(
        [*cli, "quickstart", "--run-dir", str(tmp_path / "killed"), *steps],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pointer = tmp_path / "killed" / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (pointer.exists() and json.loads(pointer.read_text())["step"] >= 60):
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "model").exists(), "the run finished before it could be killed"
    subprocess.run(
        [*cli, "--resume", "--run-dir", str(tmp_path / "killed")], check=True, env=env, capture_output=True, timeout=300
    )
    a, b = load_model(tmp_path / "straight" / "model"), load_model(tmp_path / "killed" / "model")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(
    "command, expected",
    [
        ("train", ["Presets:", "quickstart", "--resume", "--set"]),
        ("eval", ["GP oracle", "--cache-dir"]),
        ("plot", ["oracle", "training curves"]),
    ],
)
def test_every_subcommand_explains_itself(capsys, command, expected):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(word in text for word in expected)


def test_eval_uses_the_runs_data_options(tmp_path):
    run = tmp_path / "noisy"
    train = ("data.noise_std=0.3", "train.steps=2", "train.progress=false", "train.eval_every=null", *TINY_SETS)
    assert cli("train", "quickstart", "--run-dir", run, sets=train) == 0
    evaluation = ("eval.num_batches=4", "eval.gp_fitted=false", "eval.kernels=[rbf]")
    assert cli("eval", run, "--cache-dir", tmp_path / "cache", sets=evaluation) == 0
    oracle = json.loads((run / "metrics.json").read_text())["results"]["GP oracle [rbf]"]
    # Context points under noise 0.3 cannot be predicted better than N(y; f, 0.3^2) allows.
    assert oracle["ctx_ll"] < -math.log(0.3 * math.sqrt(2 * math.pi)) + 0.1
