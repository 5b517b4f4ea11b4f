"""1D functions and the GP oracle: train an attentive CNP on Gaussian-process functions and compare
it with the exact GP that generated them.

    python docs/tutorials/functions.py [--steps N] [--out DIR]

The defaults (6,000 steps of 16 tasks) take about two minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import npkit

FIGURES = Path(__file__).resolve().parent.parent / "figures" / "tutorials"


def main(steps: int = 6000, out: str | Path = FIGURES) -> dict:
    out = Path(out)
    torch.set_num_threads(1)  # these networks are small: more threads gain little
    torch.manual_seed(0)  # the model's initial weights

    # The data: every task is one function drawn from a GP with an RBF kernel whose scale and
    # length scale are drawn per task, observed with noise at 3-46 context and some target inputs
    # in [-2, 2] (the gp1d protocol of the BNP/TNP papers).
    data = npkit.make_sampler("gp1d", kernel="rbf")
    batch, gp = data.sample_with_truth(16, torch.Generator().manual_seed(0))  # 16 tasks and their GPs
    print(f"a batch of 16 tasks: xc {tuple(batch.xc.shape)}, yc {tuple(batch.yc.shape)}, xt {tuple(batch.xt.shape)}")

    # The model: an attentive CNP (cross-attention from each target to the context points), small
    # enough for a laptop. A deterministic model is trained with the exact log-likelihood ("nll").
    model = npkit.build_model("canp", hidden_dim=64, r_dim=64, attention_layers=1, num_heads=4)
    print(f"canp: {sum(p.numel() for p in model.parameters()):,} parameters")

    # Training: every step draws a fresh batch of tasks from a generator seeded by (seed, step), so
    # the run is reproducible. With a run_dir, fit writes a CSV log (and checkpoints); here it lives
    # in a temporary folder, only to plot the training curves from it.
    with tempfile.TemporaryDirectory() as run_dir:
        npkit.fit(model, data, "nll", steps=steps, lr=1e-3, seed=0, eval_every=max(1, steps // 10), run_dir=run_dir)
        curves = npkit.plot_training_curves(
            npkit.metrics_csv(run_dir),  # run_dir/logs/version_0/metrics.csv
            out / "functions-training.png",
            title=f"canp on gp1d (RBF), {steps:,} steps",
        )
    model.eval()

    # Prediction: the model maps a context and target inputs to a torch.distributions object over
    # the targets, with mean, stddev and log_prob (npkit.predict(model, xc, yc, xt) does the same for
    # any model, latent ones included).
    with torch.no_grad():
        pred = model(batch.xc, batch.yc, batch.xt)
    print(f"model(xc, yc, xt): {type(pred).__name__}, mean {tuple(pred.mean.shape)}")
    print(f"log-likelihood per target point of these 16 tasks: {pred.log_prob(batch.yt).mean():.3f}")

    # The GP oracle: npkit.oracle is the exact posterior of the GP behind each task given its
    # context, a float64 MultivariateNormal over the targets. No model can beat it on average on
    # these tasks: it knows the kernel and its hyper-parameters.
    exact = npkit.oracle(batch, gp, batch.xt)
    per_point = torch.distributions.Normal(exact.mean, exact.stddev)  # its marginals, to compare like with like
    print(f"GP oracle on the same tasks: {per_point.log_prob(batch.yt[..., 0].double()).mean():.3f}")

    # Evaluation on a fixed set of 50 x 16 tasks (the same seed gives the same tasks): per point
    # log-likelihoods of context (ctx_ll) and targets (tar_ll), MSE and the coverage of the 95% band,
    # for the model and for the oracle on the very same tasks.
    evalset = npkit.make_eval_set(data, num_batches=50, batch_size=16, seed=1234)
    results = {"canp": npkit.evaluate(model, evalset), "GP oracle": npkit.evaluate_gp(evalset)}
    print(npkit.format_table(results))

    # Predictions on four tasks with 10 context points each, beside the oracle (in red).
    few = npkit.make_sampler("gp1d", kernel="rbf", num_context=(10, 10))
    batch, gp = few.sample_with_truth(4, torch.Generator().manual_seed(1))
    figure = npkit.plot_predictions(
        model, batch, out / "functions-predictions.png", gp=gp, title=f"canp on gp1d (RBF), {steps:,} steps"
    )
    print(f"figures: {figure}, {curves}")

    return {
        "steps": steps,
        "model_tar_ll": results["canp"]["tar_ll"],
        "model_ctx_ll": results["canp"]["ctx_ll"],
        "model_coverage95": results["canp"]["coverage95"],
        "oracle_tar_ll": results["GP oracle"]["tar_ll"],
        "oracle_ctx_ll": results["GP oracle"]["ctx_ll"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000, help="training steps (default 6000)")
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the figures")
    args = parser.parse_args()
    main(args.steps, args.out)
