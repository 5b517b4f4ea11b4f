"""fit(): learning, logs, checkpoints, exact resume, DDP."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from npkit.data import make_sampler
from npkit.models import build_model
from npkit.runs import CheckpointError, latest_checkpoint, load_model, metrics_csv
from npkit.train import fit

SMALL = dict(hidden_dim=16, r_dim=16)


def small(name="np"):
    torch.manual_seed(0)
    return build_model(name, **SMALL, **({} if name == "cnp" else {"z_dim": 8}))


def params_equal(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_fit_lowers_the_loss_on_the_sine_family():
    model = small("cnp")
    history = fit(model, make_sampler("sine"), steps=300, batch_size=16, lr=1e-3, log_every=25, progress=False)
    losses = [row["train/loss"] for row in history]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3


def test_fit_is_deterministic_for_a_seed():
    a, b = small(), small()
    for model in (a, b):
        fit(model, make_sampler("gp1d"), steps=5, progress=False, seed=3)
    assert params_equal(a, b)


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    options = dict(
        log_every=2,
        checkpoint_every=4,
        schedule_steps=12,
        progress=False,
        grad_clip=1.0,
        objective_options={"num_samples": 2},
    )
    straight = small()
    fit(straight, make_sampler("gp1d"), steps=12, run_dir=tmp_path / "a", **options)
    interrupted = small()
    fit(interrupted, make_sampler("gp1d"), steps=8, run_dir=tmp_path / "b", **options)
    resumed = small()
    fit(resumed, make_sampler("gp1d"), steps=12, run_dir=tmp_path / "b", resume=True, **options)
    assert params_equal(straight, resumed)
    assert not params_equal(straight, interrupted)
    a = metrics_csv(tmp_path / "a").read_text()
    b = metrics_csv(tmp_path / "b").read_text()
    assert a == b  # the log of the resumed run holds every row, once


def test_run_folder_holds_logs_checkpoints_and_final_model(tmp_path):
    model = small()
    fit(
        model,
        make_sampler("gp1d"),
        steps=6,
        checkpoint_every=2,
        keep_checkpoints=2,
        eval_every=3,
        eval_batches=2,
        log_every=3,
        run_dir=tmp_path,
        progress=False,
    )
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-00000004", "step-00000006"]
    assert latest_checkpoint(tmp_path).name == "step-00000006"
    assert params_equal(load_model(tmp_path / "model"), model)
    header = metrics_csv(tmp_path).read_text().splitlines()[0].split(",")
    assert {"step", "train/loss", "train/log_lik", "train/kl", "eval/tar_ll", "eval/ctx_ll", "lr"} <= set(header)


def test_resume_refuses_changed_settings(tmp_path):
    fit(small(), make_sampler("gp1d"), steps=2, checkpoint_every=2, run_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="lr"):
        fit(small(), make_sampler("gp1d"), steps=4, lr=1e-2, run_dir=tmp_path, resume=True, progress=False)


def test_resume_refuses_another_model(tmp_path):
    fit(small(), make_sampler("gp1d"), steps=2, checkpoint_every=2, run_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="model: saved 'np', now 'anp'"):
        fit(small("anp"), make_sampler("gp1d"), steps=4, run_dir=tmp_path, resume=True, progress=False)


def test_resume_without_checkpoint_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing file .*latest\.json"):
        fit(small(), make_sampler("gp1d"), steps=2, run_dir=tmp_path, resume=True, progress=False)


@pytest.mark.parametrize("option, value", [("steps", 0), ("schedule", "linear"), ("lr", -1.0), ("nonsense", 1)])
def test_bad_train_options_are_reported(option, value):
    with pytest.raises(ValueError, match=option):
        fit(small(), make_sampler("gp1d"), progress=False, **{option: value})


def test_ddp_on_two_cpu_processes_keeps_ranks_in_sync_on_different_batches():
    """Ranks end with equal parameters; catches ranks seeded alike (drawing the same batches)."""
    script = Path(__file__).with_name("ddp_check.py")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT")]
    assert lines, f"no result line; stderr:\n{result.stderr[-2000:]}"
    diff, _, world, draws, same = lines[0].split()[1:]
    assert float(diff) == 0.0 and int(world) == 2
    assert int(draws) == 5  # every rank drew one batch per step (and no more)
    assert int(same) == 0, f"the ranks drew the same batch at {same} of 5 steps"


def test_bf16_mixed_precision_trains_with_float32_likelihoods():
    model = small("anp")
    history = fit(model, make_sampler("gp1d"), steps=4, log_every=2, precision="bf16-mixed", progress=False)
    assert all(math.isfinite(row["train/loss"]) for row in history)
    for row in history:  # a likelihood computed in bf16 would be exactly representable in bf16
        loss = torch.tensor(row["train/loss"])
        assert loss.to(torch.bfloat16).float() != loss


def test_tensorboard_events_are_written_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    fit(small("cnp"), make_sampler("gp1d"), steps=4, log_every=2, run_dir=tmp_path, progress=False)
    assert list((tmp_path / "tensorboard" / "version_0").glob("events.out.tfevents.*"))


# ----------------------------------------------------------------------------- gradient clipping
# Adam's first step moves each parameter by lr * g / (|g| + eps): it ignores the scale of g unless
# the gradient is comparable to eps (1e-8). Clipping the total norm to ~eps makes it visible.

CLIP_LR = 1e-2


def _one_step_of_fit(grad_clip):
    """(parameters before, raw gradients, parameters after) of one constant-lr CPU step of fit on
    a tiny CNP; the gradients are recorded as backward leaves them, before any clipping."""
    torch.manual_seed(0)
    model = build_model("cnp", hidden_dim=16, r_dim=16)
    before = [p.detach().clone() for p in model.parameters()]
    grads = {}
    for i, p in enumerate(model.parameters()):
        p.register_post_accumulate_grad_hook(lambda p, i=i: grads.__setitem__(i, p.grad.detach().clone()))
    options = dict(grad_clip=grad_clip) if grad_clip is not None else {}
    fit(model, make_sampler("gp1d"), steps=1, batch_size=4, lr=CLIP_LR, schedule="constant", seed=5,
        accelerator="cpu", progress=False, **options)  # fmt: skip
    return before, [grads[i] for i in range(len(before))], [p.detach().clone() for p in model.parameters()]


def _clipped_adam_step(params, grads, grad_clip):
    """One plain torch Adam step from ``params`` with ``grads`` clipped by clip_grad_norm_."""
    params = [torch.nn.Parameter(p.clone()) for p in params]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, max_norm=grad_clip)
    torch.optim.Adam(params, lr=CLIP_LR).step()
    return [p.detach() for p in params]


def largest_change(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def test_tiny_grad_clip_shrinks_the_first_adam_step():
    """Catches gradient clipping turned into a no-op (or max_norm ignored) in fit."""
    before, _, clipped = _one_step_of_fit(grad_clip=1e-12)
    _, _, free = _one_step_of_fit(grad_clip=None)
    assert largest_change(free, before) > 0.5 * CLIP_LR  # unclipped: ~lr * sign(g)
    assert largest_change(clipped, before) < 1e-3 * CLIP_LR  # |g| <= 1e-12 << eps: |step| <= 1e-4 lr


def test_grad_clip_step_equals_a_manual_clip_grad_norm_adam_step():
    """Catches gradient clipping dropped or applied with another max_norm than grad_clip."""
    clip = 3e-8  # total norm comparable to Adam's eps, so the clipped step depends on the exact max_norm
    before, grads, trained = _one_step_of_fit(grad_clip=clip)
    assert torch.cat([g.flatten() for g in grads]).norm() > 1e3 * clip  # clipping is active
    reference = _clipped_adam_step(before, grads, clip)
    for got, want in zip(trained, reference):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    for other in (None, 2 * clip):  # the check tells the right clipping from none or another norm
        assert largest_change(_clipped_adam_step(before, grads, other), reference) > 1e-2 * CLIP_LR


# --- objectives and callbacks


def test_fit_calls_a_step_objective_with_each_step_and_logs_callback_values():
    """A step-dependent objective and a logged diagnostic need no edit of fit."""
    from npkit.objectives import nll

    model = small("cnp")
    steps_seen = []

    def objective(m, batch, step):
        steps_seen.append(step)
        return nll(m, batch)

    def callback(step, m, out):
        return {"diag/step_squared": float(step**2)} if step % 2 == 0 else None

    history = fit(model, make_sampler("sine"), objective, steps=5, log_every=100, progress=False, callbacks=[callback])
    assert steps_seen == [0, 1, 2, 3, 4]
    logged = {row["step"]: row.get("diag/step_squared") for row in history}
    assert logged[2] == 4.0 and logged[4] == 16.0
    assert 1 not in logged and 3 not in logged  # nothing else to log at odd steps


def test_fit_with_kl_annealing_starts_from_the_pure_likelihood():
    from npkit.objectives import KLAnnealing

    model = small("np")
    history = fit(model, make_sampler("sine"), KLAnnealing(1000), steps=1, log_every=1, progress=False)
    assert history[0]["train/loss"] == pytest.approx(-history[0]["train/log_lik"], rel=1e-6)


# --- runs you can trust: resume checks, extension, signals


def test_sigint_saves_a_checkpoint_and_the_resumed_run_is_exact(tmp_path):
    import os
    import signal

    from npkit.train import TrainingInterrupted

    options = dict(steps=8, checkpoint_every=100, log_every=1, progress=False)
    straight = small()
    fit(straight, make_sampler("gp1d"), run_dir=tmp_path / "a", **options)

    def interrupt(step, model, out):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = small()
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(TrainingInterrupted, match="at step 3; checkpoint saved"):
        fit(stopped, make_sampler("gp1d"), run_dir=tmp_path / "b", callbacks=[interrupt], **options)
    assert latest_checkpoint(tmp_path / "b").name == "step-00000003"
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    resumed = small()
    fit(resumed, make_sampler("gp1d"), run_dir=tmp_path / "b", resume=True, **options)
    assert params_equal(straight, resumed)


def test_more_steps_on_resume_is_refused_unless_extended_or_the_horizon_is_kept(tmp_path):
    fit(small(), make_sampler("gp1d"), steps=4, checkpoint_every=2, run_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"cosine horizon .*saved 4, now 8.*--extend"):
        fit(small(), make_sampler("gp1d"), steps=8, run_dir=tmp_path, resume=True, progress=False)
    kept = fit(small(), make_sampler("gp1d"), steps=6, schedule_steps=4, run_dir=tmp_path, resume=True, progress=False)
    assert kept[-1]["lr"] == 0.0  # the old schedule ended at step 4: lr stays at 0
    extended = fit(
        small(), make_sampler("gp1d"), steps=10, log_every=1, run_dir=tmp_path, resume=True, extend=True, progress=False
    )
    assert extended[0]["step"] == 7 and extended[0]["lr"] == pytest.approx(5e-4)  # restarted from lr
    assert extended[-1]["lr"] < extended[0]["lr"]
    # a plain resume of the extended run keeps its schedule (ending at 10); more steps need --extend
    assert fit(small(), make_sampler("gp1d"), steps=10, run_dir=tmp_path, resume=True, progress=False) == []
    with pytest.raises(CheckpointError, match=r"cosine horizon .*saved 10, now 12"):
        fit(small(), make_sampler("gp1d"), steps=12, run_dir=tmp_path, resume=True, progress=False)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(objective="ml"), "objective: saved 'iwae', now 'ml'"),
        (dict(objective_options={"num_samples": 3}), "objective_options"),
        (dict(data=make_sampler("gp1d", kernel="matern52")), "data: saved"),
        (dict(seed=1), "train.seed: saved 0, now 1"),
    ],
)
def test_resume_refuses_a_changed_objective_data_or_seed(tmp_path, change, message):
    base = dict(objective="iwae", objective_options={"num_samples": 2}, data=make_sampler("gp1d"))
    fit(small(), steps=2, run_dir=tmp_path, progress=False, **base)
    with pytest.raises(CheckpointError, match=message):
        fit(small(), steps=2, run_dir=tmp_path, resume=True, progress=False, **{**base, **change})


def test_a_checkpoint_without_optimizer_state_is_reported_naming_the_file(tmp_path):
    import json

    fit(small(), make_sampler("gp1d"), steps=2, run_dir=tmp_path, progress=False)
    state = latest_checkpoint(tmp_path) / "state.json"
    values = json.loads(state.read_text())
    del values["optimizer"]
    state.write_text(json.dumps(values))
    with pytest.raises(CheckpointError, match=r"state\.json lacks \['optimizer'\]"):
        fit(small(), make_sampler("gp1d"), steps=2, run_dir=tmp_path, resume=True, progress=False)


def test_unavailable_accelerator_is_one_clear_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="train.accelerator=gpu but no CUDA GPU is available here"):
        fit(small(), make_sampler("gp1d"), steps=1, accelerator="gpu", progress=False)


def test_a_corrupt_training_log_is_named_on_resume(tmp_path):
    fit(small(), make_sampler("gp1d"), steps=2, run_dir=tmp_path, progress=False)
    metrics_csv(tmp_path).write_text("step,train/loss\n1,abc\n")
    with pytest.raises(ValueError, match=rf"cannot read the training log {metrics_csv(tmp_path)}"):
        fit(small(), make_sampler("gp1d"), steps=4, schedule_steps=2, run_dir=tmp_path, resume=True, progress=False)


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")  # dynamo's own
def test_compiled_training_follows_the_eager_trajectory_and_saves_the_same_parameter_names(tmp_path):
    """train.compile: torch.compile (inductor) of model + objective; the same losses to float
    round-off over steps of different task sizes, the same parameters, plain parameter names."""
    eager, compiled = small("cnp"), small("cnp")
    from torch._dynamo.utils import counters

    runs, graphs = {}, {}
    for label, model, compile_ in (("eager", eager, False), ("compiled", compiled, True)):
        counters.clear()
        history = fit(model, make_sampler("gp1d"), steps=4, log_every=1, seed=2, progress=False, compile=compile_)
        runs[label], graphs[label] = [row["train/loss"] for row in history], counters["stats"]["unique_graphs"]
    assert graphs["eager"] == 0 and graphs["compiled"] > 0  # the compiled run did run compiled graphs
    assert runs["compiled"] == pytest.approx(runs["eager"], rel=1e-4, abs=1e-5)
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(eager.parameters(), compiled.parameters()))
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no "_orig_mod." prefixes in checkpoints
    with pytest.raises(ValueError, match="train.compile must be a bool, got 'yes'"):
        fit(small("cnp"), make_sampler("gp1d"), steps=1, progress=False, compile="yes")
