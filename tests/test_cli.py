"""The npkit command line: train -> eval -> plot, overrides, errors, resume after a kill."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields

import pytest
import torch
import yaml

from npkit.cli import main
from npkit.config import apply_overrides, load_config, presets, section_config
from npkit.data import KERNELS
from npkit.files import FileError
from npkit.models import MODELS
from npkit.runs import RUN_CONFIG, load_model
from npkit.settings import EvalConfig, PlotConfig, TrainConfig

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
        try:
            sampler = _sampler(config)
        except (FileError, ValueError):  # no MNIST / CelebA files here: tests/test_images.py fakes them
            if config["data"]["name"] in ("mnist", "mnist-bnp", "celeba", "celeba-bnp", "spatial-mnist"):
                continue
            raise
        sampler.sample(2, torch.Generator().manual_seed(0))


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
    assert {"anp [rbf]", "GP oracle [rbf]"} <= set(metrics)
    assert metrics["GP oracle [rbf]"]["tar_ll"] > metrics["anp [rbf]"]["tar_ll"]
    no_fit = ("eval.num_batches=2", "eval.gp_fitted=false", "eval.kernels=[rbf]")
    assert cli("eval", run, "--cache-dir", cache, sets=no_fit) == 0
    again = json.loads((run / "metrics.json").read_text())["results"]
    assert again["anp [rbf]"] == metrics["anp [rbf]"]  # evaluation is reproducible
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


def _keys(cls) -> list[str]:
    return sorted(f.name for f in fields(cls))


# --set values that every command must refuse before it starts work, with the one line it prints.
BAD_SETS = [
    (
        "eval.num_batchs=2",
        f"unknown eval option(s) ['num_batchs'] (did you mean 'num_batches'?); expected some of {_keys(EvalConfig)}",
    ),
    (
        "plot.num_task=2",
        f"unknown plot option(s) ['num_task'] (did you mean 'num_tasks'?); expected some of {_keys(PlotConfig)}",
    ),
    ("train.nonsense=1", f"unknown train option(s) ['nonsense']; expected some of {_keys(TrainConfig)}"),
    (
        "model.hiden_dim=16",
        "unknown model option(s) ['hiden_dim'] (did you mean 'hidden_dim'?); "
        f"expected some of {_keys(MODELS['anp'].config_class)}",
    ),
    ("data.noise_std=abc", "data.noise_std must be a float, got 'abc'"),
    ("train.lr=abc", "train.lr must be a float, got 'abc'"),
    ("train.steps=2.5", "train.steps must be an integer, got 2.5"),
    ("train.progress=1", "train.progress must be a bool, got 1"),
    ("model.hidden_dim=true", "model.hidden_dim must be an integer, got True"),
    ("model.hidden_dim=0", "model.hidden_dim must be a positive integer, got 0"),
    ("plot.num_tasks=0", "plot.num_tasks must be a positive integer, got 0"),
    ("eval.num_batches=0", "eval.num_batches must be a positive integer, got 0"),
    (
        "eval.kernels=rbf",
        "eval.kernels must be a list of strings/None or None, got 'rbf' (a one-element list is written [rbf])",
    ),
    (
        "eval.kernels=[rbf, cosine]",
        f"eval.kernels has unknown kernel(s) ['cosine']; expected some of {sorted(KERNELS)}",
    ),
]


@pytest.fixture
def run_folder(tmp_path):
    """A run folder with its config but no model: commands must stop at the config."""
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_CONFIG).write_text(yaml.safe_dump(load_config("quickstart"), sort_keys=False))
    return run


@pytest.mark.parametrize("setting, message", BAD_SETS)
@pytest.mark.parametrize("command", ["train", "eval", "plot"])
def test_a_bad_set_stops_every_command_with_one_line(tmp_path, capsys, run_folder, command, setting, message):
    new_run = tmp_path / "new-run"
    if command == "train":
        argv = ["train", "quickstart", "--run-dir", new_run, "--set=train.steps=1", "--set=train.progress=false", *TINY]
    else:
        argv = [command, run_folder]
    assert main([str(a) for a in argv] + [f"--set={setting}"]) == 2
    assert capsys.readouterr().err == f"npkit {command}: error: {message}\n"  # one line, no traceback
    assert not new_run.exists()  # train stopped before it made the run folder


def test_a_config_file_with_an_unknown_key_is_named(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("model: {name: cnp}\ndata: {name: sine}\nplot: {num_task: 2}\n")
    assert main(["train", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    expected = f"unknown plot option(s) ['num_task'] (did you mean 'num_tasks'?); expected some of {_keys(PlotConfig)}"
    assert capsys.readouterr().err == f"npkit train: error: {path}: {expected}\n"
    assert not (tmp_path / "run").exists()


def test_overrides_are_checked_when_applied():
    with pytest.raises(ValueError, match=r"^unknown eval option\(s\) \['num_batchs'\]"):
        apply_overrides(load_config("quickstart"), ["eval.num_batchs=2"])
    with pytest.raises(ValueError, match=r"^plot\.num_tasks must be a positive integer, got 0$"):
        apply_overrides(load_config("quickstart"), ["plot.num_tasks=0"])
    with pytest.raises(ValueError, match=r"^train\.lr must be a float, got 'abc'$"):
        apply_overrides(load_config("quickstart"), ["train.lr=abc"])


def test_section_config_gives_the_settings_dataclasses():
    config = apply_overrides(load_config("quickstart"), ["eval.num_batches=3", "plot.seed=5", "train.lr=1"])
    evaluation = section_config(config, "eval")
    assert isinstance(evaluation, EvalConfig) and evaluation.num_batches == 3
    assert evaluation.kernels == ["rbf", "matern52", "periodic"]
    assert section_config(config, "plot") == PlotConfig(seed=5)
    assert section_config(config, "train").lr == 1  # an int is a float
    assert section_config(load_config("sine-cnp"), "eval").kernels == [None]  # the preset's own tasks


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
        ("eval", ["GP oracle", "--cache-dir", "95% coverage"]),
        ("plot", ["oracle", "training curves"]),
    ],
)
def test_every_subcommand_explains_itself(capsys, command, expected):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(word in text for word in expected)
    assert "%%" not in text  # argparse does not %-format descriptions


def test_eval_uses_the_runs_data_options(tmp_path):
    run = tmp_path / "noisy"
    train = ("data.noise_std=0.3", "train.steps=2", "train.progress=false", "train.eval_every=null", *TINY_SETS)
    assert cli("train", "quickstart", "--run-dir", run, sets=train) == 0
    evaluation = ("eval.num_batches=4", "eval.gp_fitted=false", "eval.kernels=[rbf]")
    assert cli("eval", run, "--cache-dir", tmp_path / "cache", sets=evaluation) == 0
    oracle = json.loads((run / "metrics.json").read_text())["results"]["GP oracle [rbf]"]
    # Context points under noise 0.3 cannot be predicted better than N(y; f, 0.3^2) allows.
    assert oracle["ctx_ll"] < -math.log(0.3 * math.sqrt(2 * math.pi)) + 0.1


# --- runs you can trust


def _train_process(run_dir, *sets):
    """``npkit train quickstart`` on ``run_dir`` in a subprocess (tiny model, no progress bar)."""
    argv = [sys.executable, "-m", "npkit.cli", "train", "quickstart", "--run-dir", str(run_dir)]
    argv += [f"--set={s}" for s in ("train.progress=false", "train.eval_every=null", *sets)] + TINY
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, timeout=120.0):
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_a_second_train_on_the_same_folder_is_refused_with_the_holders_pid(tmp_path):
    run = tmp_path / "run"
    with _train_process(run, "train.steps=100000", "train.checkpoint_every=50") as first:
        try:
            _wait_for(run / "checkpoints" / "latest.json")
            with _train_process(run, "train.steps=10") as second:
                _, err = second.communicate(timeout=120)
            assert second.returncode == 2
            assert err.strip().splitlines() == [
                f"npkit train: error: {run} is in use by another npkit run (pid {first.pid}); "
                "wait for it to finish or pick another --run-dir"
            ]
            resumed = subprocess.run(
                [sys.executable, "-m", "npkit.cli", "train", "--resume", "--run-dir", str(run)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert resumed.returncode == 2 and "is in use by another npkit run" in resumed.stderr
        finally:
            first.kill()
            first.communicate()


def test_a_refused_resume_leaves_the_run_config_untouched(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli("train", "quickstart", "--run-dir", run, sets=("train.steps=4", "train.progress=false", *TINY_SETS)) == 0
    before = (run / RUN_CONFIG).read_text()
    capsys.readouterr()
    for change, named in (
        ("model.hidden_dim=32", "model.hidden_dim: saved 16, now 32"),
        ("train.seed=5", "train.seed"),
    ):
        assert cli("train", "--resume", "--run-dir", run, sets=(change,)) == 2
        assert named in capsys.readouterr().err
        assert (run / RUN_CONFIG).read_text() == before
    assert cli("train", "--resume", "--run-dir", run) == 0  # a plain resume still works


def test_extend_on_the_command_line_trains_longer(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli("train", "quickstart", "--run-dir", run, sets=("train.steps=4", "train.progress=false", *TINY_SETS)) == 0
    assert cli("train", "--resume", "--run-dir", run, sets=("train.steps=6",)) == 2
    assert "--extend" in capsys.readouterr().err
    assert cli("train", "--resume", "--extend", "--run-dir", run, sets=("train.steps=6",)) == 0
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 6


def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(tmp_path):
    run = tmp_path / "run"
    with _train_process(run, "train.steps=100000", "train.checkpoint_every=20") as process:
        _wait_for(run / "checkpoints" / "latest.json")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1].endswith(f"; resume with: npkit train --resume --run-dir {run}")
    assert "checkpoint saved" in err and "Traceback" not in err
    step = json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    assert step >= 20


def test_file_system_problems_are_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    sets = ("train.steps=1", "train.progress=false", *TINY_SETS)
    assert cli("train", "quickstart", "--run-dir", tmp_path / "file", sets=sets) == 2
    assert (
        capsys.readouterr().err
        == f"npkit train: error: --run-dir {tmp_path / 'file'}: {tmp_path / 'file'} is a file, not a folder\n"
    )
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions, so read-only folders cannot be tested here")
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert cli("train", "quickstart", "--run-dir", locked / "run", sets=sets) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.startswith("npkit ")


def _eval_tiny_cnp(tmp_path, *evaluation: str) -> dict:
    """metrics.json of ``npkit eval`` (2 batches, no fitted GP, the ``evaluation`` settings) on a
    gp1d CNP trained for 2 steps."""
    run = tmp_path / "cnp"
    train = ("train.steps=2", "train.progress=false", "train.eval_every=null", *TINY_SETS[:2])
    assert cli("train", "gp1d-cnp", "--run-dir", run, sets=train) == 0
    evaluation = ("eval.num_batches=2", "eval.gp_fitted=false", *evaluation)
    assert cli("eval", run, "--cache-dir", tmp_path / "cache", sets=evaluation) == 0
    return json.loads((run / "metrics.json").read_text())


def test_eval_adds_the_autoregressive_joint_on_request(tmp_path):
    saved = _eval_tiny_cnp(tmp_path, "eval.kernels=[rbf]", "eval.autoregressive=true")
    assert "tar_ll_ar = autoregressive joint" in saved["protocol"]
    cnp = saved["results"]["cnp [rbf]"]
    assert math.isfinite(cnp["tar_ll_ar"]) and cnp["tar_ll_ar"] != cnp["tar_ll"]


def test_eval_adds_the_bayes_optimal_gp_on_request(tmp_path):
    saved = _eval_tiny_cnp(tmp_path, "eval.kernels=[rbf, periodic]", "eval.gp_bayes=true")
    assert "GP Bayes = hyper-parameters integrated" in saved["protocol"]
    bayes, oracle = saved["results"]["GP Bayes [rbf]"], saved["results"]["GP oracle [rbf]"]
    assert math.isfinite(bayes["tar_ll_gaussian"]) and bayes["tar_ll_gaussian"] != bayes["tar_ll"]
    assert bayes["tar_ll"] != oracle["tar_ll"] and bayes["num_tasks"] == oracle["num_tasks"]
    assert "GP Bayes [periodic]" not in saved["results"]  # no converged quadrature for periodic kernels


def test_python_dash_m_npkit_is_the_npkit_command():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "npkit", "train", "no-such-preset", "--run-dir", "X"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "npkit train: error: no config file or preset named 'no-such-preset'" in result.stderr
