"""Posterior collapse and `npkit diagnose`: the same 95-parameter latent NP trained three ways,
on one function (it collapses: the decoder ignores z), on a family of sines with the ELBO (z is
used, but its posterior is too narrow) and on the family with maximum likelihood (healthy); the
collapse diagnostics tell the three apart, from the command line and from Python.

    python docs/tutorials/collapse.py [--steps N] [--out DIR]

The defaults (9,000 steps of one task for each of the three models) take about four minutes on
one CPU core.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import npkit
from npkit.cli import main as npkit_command  # the `npkit` command line, run in this process

FIGURES = Path(__file__).resolve().parent.parent / "figures" / "tutorials"
# The model of the sine5-critique preset (npkit/configs/sine5-critique.yaml): a latent-only NP
# with z_dim 2, encoder (x, y) 2 -> 8 -> 2, decoder (x, z) 3 -> 8 -> 1 with a sigmoid hidden layer,
# a fixed output std of 0.005, N(0, 1) initial weights.
CRITIQUE = dict(
    hidden_dim=8,
    r_dim=2,
    z_dim=2,
    encoder_layers=2,
    decoder_layers=2,
    latent_head_layers=1,
    latent_sigma="softplus",
    latent_min_sigma=0.0,
    decoder_activation="sigmoid",
    fixed_sigma=0.005,
    init="normal",
    init_std=1.0,
)
# A family of sines y = A sin(x - phase), seen as the critique's five points are: x in [-2, 2],
# 1-3 context points and 2-4 targets, at most 5 points per task.
FAMILY = dict(
    x_range=(-2, 2), amplitude=(0.5, 1.5), phase=(-0.5, 0.5), num_context=(1, 3), num_target=(2, 4), max_points=5
)
NUMBERS = {  # the columns of the printed table: Diagnosis attributes and their headings
    "std_context": "std z|C",
    "std_full": "std z|C+T",
    "kl": "KL",
    "active_units": "active",
    "mutual_information": "MI",
    "z_effect": "z effect",
    "target_spread": "spread T",
    "far_spread": "spread far",
}
CURVES = ("z_effect", "target_spread", "std_context", "kl")  # the panels of the training-curves figure
DRAWS, SHOWN = 100, 30  # function samples drawn, and shown, per panel


def per_dimension(model, sampler, num_tasks: int = 256, seed: int = 0) -> list[dict[str, float]]:
    """For each dimension of z: the posterior std given C and given C + T (mean over tasks), the
    KL(q(z_d | C + T) || q(z_d | C)) (mean over tasks) and the variance over tasks of the mean of
    q(z_d | C) (the dimension is "active" above 0.01), on the tasks `npkit.diagnose` draws."""
    batch = sampler.sample(num_tasks, generator=torch.Generator().manual_seed(seed))  # as diagnose does
    model.eval()
    with torch.no_grad():
        q_context = model.posterior(batch.xc, batch.yc, batch.mask_c)  # q(z | C), one per task
        q_full = model.posterior(batch.x, batch.y, batch.mask)  # q(z | C + T)
        # Both are diagonal Normals: the KL of each dimension in closed form, [tasks, z_dim].
        kl = torch.distributions.kl_divergence(
            torch.distributions.Normal(q_full.mean, q_full.stddev),
            torch.distributions.Normal(q_context.mean, q_context.stddev),
        )
    return [
        {
            "std_context": q_context.stddev[:, d].mean().item(),
            "std_full": q_full.stddev[:, d].mean().item(),
            "kl": kl[:, d].mean().item(),
            "mean_variance": q_context.mean[:, d].var().item(),
        }
        for d in range(kl.shape[-1])
    ]


def main(steps: int = 9000, out: str | Path = FIGURES) -> dict:
    out = Path(out)
    torch.set_num_threads(1)  # a 95-parameter model: more threads gain nothing
    every = max(steps // 30, 10)  # steps between the diagnoses logged during training
    one = npkit.make_sampler("sine5")  # the critique's task: y = sin x at x = -2, ..., 2, every time
    family = npkit.make_sampler("sine", **FAMILY)  # a different sine in every task

    # 1. The critique's setting from the command line, as you would run it on your own run folder:
    #        npkit train sine5-critique --run-dir RUN --set train.steps=9000
    #        npkit diagnose RUN
    #    The preset trains with the ELBO, KL(q(z | C + T) || q(z | C)), one task per step, and
    #    logs the diagnostics every `train.diagnose_every` steps (diag/ columns of the CSV log).
    #    The run folder is temporary here; `npkit diagnose` writes RUN/diagnostics.json.
    with tempfile.TemporaryDirectory() as runs:
        run = Path(runs) / "sine5"
        options = ["--set", f"train.steps={steps}", "--set", f"train.diagnose_every={every}"]
        options += ["--set", "train.threads=1", "--set", "train.progress=false"]
        assert npkit_command(["train", "sine5-critique", "--run-dir", str(run), *options]) == 0
        assert npkit_command(["diagnose", str(run)]) == 0
        from_cli = json.loads((run / "diagnostics.json").read_text())
        models = {"one function, ELBO": npkit.load_model(run / "model")}  # the trained run's model
        curves = {"one function, ELBO": npkit.training_log(run)}

    # 2. The same model on the family of sines, from Python: once with the preset's ELBO, once
    #    with maximum likelihood ("ml": -log of the marginal p(y_T | C), estimated with 10 z ~
    #    q(z | C)), which scores the predictive itself, so that a posterior too narrow to cover
    #    the targets costs log-likelihood (the ELBO's KL term does not see that). Both score the
    #    targets only, as the preset does. diagnose_every=... is the fit option behind
    #    `train.diagnose_every`: the rows fit returns carry the diag/ columns.
    objectives = {
        "sine family, ELBO": ("elbo", {"num_samples": 10, "prior": "conditional", "include_context": False}),
        "sine family, ML": ("ml", {"num_samples": 10, "include_context": False}),
    }
    for name, (objective, objective_options) in objectives.items():
        torch.manual_seed(0)  # the initial weights: the same as the command line's run
        model = npkit.build_model("lnp", **CRITIQUE)
        curves[name] = npkit.fit(
            model,
            family,
            objective,
            objective_options,
            steps=steps,
            batch_size=1,
            lr=1e-3,
            schedule="constant",
            seed=0,
            threads=1,
            log_every=100,
            diagnose_every=every,
            progress=False,
        )
        models[name] = model
    samplers = {"one function, ELBO": one, "sine family, ELBO": family, "sine family, ML": family}

    # 3. npkit.diagnose on 256 tasks of each model's own data: the same numbers as the command
    #    line's (for the first model, the same tasks and z: seed 0), and a verdict.
    diagnoses = {name: npkit.diagnose(model, samplers[name]) for name, model in models.items()}
    print()
    for name, d in diagnoses.items():
        print(f"{name}: {d}")
    print()
    print(f"{'model':<19} {'verdict':<22} " + " ".join(f"{h:>10}" for h in NUMBERS.values()))
    for name, d in diagnoses.items():
        cells = [f"{d.active_units:>10d}" if n == "active_units" else f"{getattr(d, n):>10.4f}" for n in NUMBERS]
        print(f"{name:<19} {d.verdict:<22} " + " ".join(cells))

    # 4. The posterior of each dimension of z: which dimension carries what. The averages over
    #    the dimensions are diagnose's std_context and std_full, the sum of the KLs its kl, and
    #    the dimensions with a mean variance above 0.01 its active units.
    print()
    print(f"{'model':<19} {'dim':>3} {'std z | C':>10} {'std z | C+T':>12} {'KL':>10} {'Var(mean)':>10}")
    dims = {}
    for name, model in models.items():
        dims[name] = per_dimension(model, samplers[name])
        for d, row in enumerate(dims[name]):
            cells = (
                f"{row['std_context']:>10.4f} {row['std_full']:>12.4f} {row['kl']:>10.4f} {row['mean_variance']:>10.4f}"
            )
            print(f"{name:<19} {d:>3} {cells}")

    # 5. Function samples (the predictive mean of one z ~ q(z | C) each) on x in [-4, 4], given
    #    y = sin x at x = 0, and at x = -1, 0, 1: a task of both the one-function data and the
    #    family (A = 1, phase = 0). The spread of the samples at each x is their std.
    x = torch.linspace(-4, 4, 161)
    contexts = {"context x = 0": torch.tensor([0.0]), "context x = -1, 0, 1": torch.tensor([-1.0, 0.0, 1.0])}
    torch.manual_seed(0)  # the z drawn below
    draws, spread_at_minus4 = {}, {}
    with torch.no_grad():
        for c, xc in contexts.items():
            for name, model in models.items():
                f = npkit.sample_functions(model, xc[None, :, None], xc.sin()[None, :, None], x[None, :, None], DRAWS)
                draws[c, name] = f[:, 0, :, 0]  # [DRAWS, 161]
                spread_at_minus4[c, name] = draws[c, name][:, 0].std().item()
    print()
    for c in contexts:
        spreads = ", ".join(f"{n} {s:.4f}" for (c_, n), s in spread_at_minus4.items() if c_ == c)
        print(f"std of {DRAWS} function samples at x = -4, {c}: {spreads}")

    fig = Figure(figsize=(12, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3, sharex=True, sharey=True)
    for row, (c, xc) in zip(axes, contexts.items()):
        for ax, name in zip(row, models):
            ax.plot(x, draws[c, name][:SHOWN].T, color="C0", lw=0.7, alpha=0.5)
            ax.plot(x, x.sin(), "k--", lw=1, label="sin x")
            ax.plot(xc, xc.sin(), "ko", ms=5, zorder=3)
            ax.set_title(f"{name}: {diagnoses[name].verdict}\n{c}", fontsize="medium")
            ax.set_ylim(-3, 3)
        row[0].set_ylabel("y")
    for ax in axes[-1]:
        ax.set_xlabel("x")
    axes[0, 0].legend(loc="lower right")
    fig.suptitle(f"{SHOWN} function samples (z ~ q(z | C)) per panel, after {steps:,} steps")
    samples_png = out / "collapse-samples.png"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(samples_png)

    # 6. The diagnostics over training (the diag/ columns), with the verdict's threshold of 0.05
    #    on the z effect and the spread: the curves of collapse.
    fig = Figure(figsize=(12, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, metric in zip(fig.subplots(1, len(CURVES)), CURVES):
        for name, rows in curves.items():
            logged = [r for r in rows if f"diag/{metric}" in r]
            ax.plot([r["step"] for r in logged], [r[f"diag/{metric}"] for r in logged], ".-", ms=3, lw=1, label=name)
        if metric in ("z_effect", "target_spread"):
            ax.axhline(0.05, color="k", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(metric)
    ax.legend(fontsize="small")
    fig.suptitle(f"the diagnostics during training (diag/ columns: 128 tasks, 50 samples, every {every} steps)")
    curves_png = out / "collapse-curves.png"
    fig.savefig(curves_png)
    print(f"figures: {samples_png}, {curves_png}")

    return {
        "steps": steps,
        "diagnoses": {name: d.as_dict() for name, d in diagnoses.items()},
        "from_cli": from_cli,
        "per_dimension": dims,
        "spread_at_minus4": {f"{n}, {c}": s for (c, n), s in spread_at_minus4.items()},
        "max_mutual_information": math.log(256),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=9000, help="training steps per model (default 9000)")
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the figures")
    args = parser.parse_args()
    main(args.steps, args.out)
