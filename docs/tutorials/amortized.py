"""Amortised inference: a Deep Prior on sine functions with a Gaussian and with a normalising-flow
(IAF, from Pyro) posterior over its latent, and a VAE on the 8x8 digits trained twice from the same
weights, once by npkit.fit and once by Pyro's SVI on npkit's model/guide pair.

    python docs/tutorials/amortized.py [--steps N] [--out DIR]

The defaults (2,000 steps for each of the four trainings) take about two minutes on one CPU
core (three on a busy machine).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyro
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pyro.infer import TraceMeanField_ELBO
from torch.distributions import Independent, Normal, kl_divergence

import npkit

FIGURES = Path(__file__).resolve().parent.parent / "figures" / "tutorials"
POSTERIORS = ("gaussian", "iaf")  # q(z | S): a diagonal Gaussian, or that Gaussian through 4 IAF steps
CONTEXT_SIZES = (1, 4, 16)  # observed points per sine function at evaluation
SHOWN = 10  # digits per row in the VAE figure


def deep_prior_scores(model, batch: npkit.Batch) -> dict:
    """MSE and per-point log-likelihood of the targets given K = 1, 4, 16 of the context points,
    the predictive a mixture over 50 z ~ q(z | the K points)."""
    scores = {}
    for k in CONTEXT_SIZES:
        pred = npkit.predict(model, batch.xc[:, :k], batch.yc[:, :k], batch.xt, num_samples=50)
        mse = (pred.mean - batch.yt).square().mean().item()
        scores[k] = {"mse": mse, "tar_ll": pred.log_prob(batch.yt).mean().item()}
    return scores


def main(steps: int = 2000, out: str | Path = FIGURES) -> dict:
    out = Path(out)
    torch.set_num_threads(1)  # these networks are small: more threads gain little

    # --- Part 1: Deep Prior (Lacoste et al. 2018) --------------------------------------------
    # The data of the deep-prior-sine preset: y = A sin(f x - phase) + 0.1 eps with A ~ U(0.1, 5),
    # f ~ U(0.5, 2), phase ~ U(0, pi), x ~ U(-5, 5); 0 to 16 context points and 1 to 20 targets.
    sine = dict(x_range=(-5, 5), amplitude=(0.1, 5.0), frequency=(0.5, 2.0), noise=0.1)
    data = npkit.make_sampler("sine", **sine, num_context=(0, 16), num_target=(1, 20), max_points=36)
    # 200 test functions with 16 context points and 20 targets each, drawn once.
    test = npkit.make_sampler("sine", **sine, num_context=(16, 16), num_target=(20, 20), max_points=36)
    test_batch = test.sample(200, torch.Generator().manual_seed(1234))

    # The model: a latent z (8 dims) per task with the prior N(0, I), one network p(y | x, z), and
    # an amortised posterior q(z | S) computed from the task's set S by a set encoder. Training
    # maximises the ELBO with that fixed prior (prior="fixed"), 4 z per task; the KL weight rises
    # from 0 over the first quarter of the steps, else the KL switches z off early in training.
    # The only difference between the two models is the posterior: "iaf" pushes the Gaussian
    # through 4 inverse-autoregressive flow steps whose weights depend on the set's summary.
    objective = {"prior": "fixed", "num_samples": 4, "warmup_steps": max(1, steps // 4)}
    models, curves, scores, elbos, kls = {}, {}, {}, {}, {}
    for posterior in POSTERIORS:
        torch.manual_seed(0)  # the same initial weights for the parts the two models share
        model = npkit.build_model("deep_prior", posterior=posterior, flow_steps=4, hidden_dim=64, r_dim=64, z_dim=8)
        rows = npkit.fit(model, data, "elbo", objective, steps=steps, batch_size=16, lr=1e-3, seed=0)
        model.eval()
        models[posterior], curves[posterior] = model, rows
        torch.manual_seed(0)  # the z draws of the evaluation
        with torch.no_grad():
            scores[posterior] = deep_prior_scores(model, test_batch)
            # The ELBO per point on the test tasks (beta = 1, 16 z per task): a lower bound on
            # log p(y) of the context and targets. With the flow its KL is a Monte-Carlo estimate.
            elbos[posterior] = -npkit.elbo(model, test_batch, num_samples=16, prior="fixed").loss.item()
            # KL(q(z | S) || N(0, I)) per task, S the 36 points: how many nats z carries. A Monte-Carlo
            # estimate from 1,000 z (log q(z) - log p(z), log q with the flow's log-determinant),
            # and for the Gaussian posterior also torch's closed form, which the estimate must match.
            q = model.posterior(test_batch.x, test_batch.y)
            z = q.sample((1000,))  # [1000, 200, 8]
            prior = Independent(Normal(torch.zeros_like(z[0]), torch.ones_like(z[0])), 1)  # N(0, I), batch [200]
            kls[posterior] = {"monte_carlo": (q.log_prob(z) - prior.log_prob(z)).mean().item()}
            if posterior == "gaussian":
                kls[posterior]["closed_form"] = kl_divergence(q, prior).mean().item()

    print(f"Deep Prior on sines, {steps:,} steps of 16 tasks; 200 test functions, 20 targets each")
    print(
        "posterior   MSE K=1   MSE K=4   MSE K=16  tar_ll K=1   tar_ll K=4   tar_ll K=16"
        "  test ELBO/point  KL(q||p)/task"
    )
    for posterior in POSTERIORS:
        s = scores[posterior]
        mse = "  ".join(f"{s[k]['mse']:8.3f}" for k in CONTEXT_SIZES)
        ll = "  ".join(f"{s[k]['tar_ll']:11.3f}" for k in CONTEXT_SIZES)
        print(f"{posterior:<10}  {mse}  {ll}  {elbos[posterior]:15.3f}  {kls[posterior]['monte_carlo']:13.2f}")
    kl = kls["gaussian"]
    print(f"gaussian KL per task: closed form {kl['closed_form']:.3f}, Monte Carlo (1,000 z) {kl['monte_carlo']:.3f}")

    # --- Part 2: a VAE on the 8x8 digits, natively and with Pyro SVI ---------------------------
    # scikit-learn's digits as 64-vectors (bundled, no download): 1,437 training images, each
    # draw binarised afresh (pixel ~ Bernoulli(intensity)); the 360 test images binarised once.
    train = npkit.data.digit_vectors("train", binarize=True)
    test_images = npkit.data.digit_vectors("test", binarize=True)
    test_x = test_images.batch_of(torch.arange(len(test_images)), torch.Generator().manual_seed(0))

    # Two copies of one VAE (64 -> 256 -> 256 -> z of 8, Bernoulli pixels), the same initial weights.
    # "npkit fit" trains with npkit's vae_elbo; "Pyro SVI" with pyro.infer.SVI and
    # TraceMeanField_ELBO (analytic KL, like vae_elbo) on the model/guide pair of
    # npkit.vae_model_guide. Same batches, same noise, constant Adam learning rate: Pyro's
    # optimiser has no schedule, so fit is told to use none either.
    def vae() -> npkit.VAE:
        torch.manual_seed(0)
        return npkit.VAE(x_dim=64, hidden_dim=256, layers=3, z_dim=8, likelihood="bernoulli")

    vaes = {"npkit fit": vae(), "Pyro SVI": vae()}
    budget = dict(steps=steps, batch_size=64, lr=1e-3, seed=0)
    vae_rows = npkit.fit(vaes["npkit fit"], train, npkit.vae_elbo, **budget, schedule="constant")
    svi_losses = npkit.train_vae_svi(vaes["Pyro SVI"], train, **budget, loss=TraceMeanField_ELBO())  # per image

    # Test scores in nats per image: the ELBO with 10 z per image, and log p(x) estimated by
    # importance sampling with 500 z per image (a tighter lower bound), in chunks of 60 images.
    vae_scores = {}
    for name, model in vaes.items():
        model.eval()
        torch.manual_seed(0)
        with torch.no_grad():
            test_elbo = -npkit.vae_elbo(model, test_x, num_samples=10).loss.item()
            log_px = torch.cat([npkit.importance_log_likelihood(model, x, 500) for x in test_x.x.split(60)])
        vae_scores[name] = {"elbo": test_elbo, "log_px": log_px.mean().item()}
    gap = max((a - b).abs().max().item() for a, b in zip(*(m.parameters() for m in vaes.values())))

    # The bridge itself: on the parameters fit trained, Pyro's loss for npkit's model/guide pair,
    # divided by the number of images (Pyro sums over the batch, npkit averages), equals npkit's
    # vae_elbo given the same noise (one z per image, the same seed). Pyro's parameter store
    # would replace a module's parameters with stored ones of the same name (here: the SVI
    # model's), so it is cleared first.
    pyro.clear_param_store()
    model, guide = npkit.vae_model_guide(vaes["npkit fit"])
    torch.manual_seed(1)
    pyro_loss = TraceMeanField_ELBO().loss(model, guide, test_x) / len(test_x.x)
    torch.manual_seed(1)
    with torch.no_grad():
        npkit_loss = npkit.vae_elbo(vaes["npkit fit"], test_x, num_samples=1).loss.item()
    pyro.clear_param_store()

    print(f"\nVAE on the 8x8 digits, {steps:,} steps of 64 images; nats per test image (360 images)")
    print("training    test ELBO (10 z)  test log p(x) (IWAE, 500 z)  train loss at the last step")
    last = {"npkit fit": vae_rows[-1]["train/loss"], "Pyro SVI": svi_losses[-1]}
    for name, s in vae_scores.items():
        print(f"{name:<10}  {s['elbo']:16.2f}  {s['log_px']:27.2f}  {last[name]:27.3f}")
    print(f"largest difference between the two VAEs' parameters: {gap:.2e}")
    print(f"same parameters, same noise: Pyro -ELBO / image {pyro_loss:.5f}, npkit vae_elbo {npkit_loss:.5f}")

    # --- Figures ------------------------------------------------------------------------------
    out.mkdir(parents=True, exist_ok=True)
    written = []

    # Deep Prior: 20 functions, each the decoder's mean for one z ~ q(z | K points), of one test
    # function seen through K = 1, 4, 16 of its points, for each posterior.
    # The function shown: of 8 test functions drawn with 200 points each, the one that varies
    # most (its first 16 points are the context, the others are drawn as grey dots).
    grid = torch.linspace(-5, 5, 200).view(1, -1, 1)
    dense = npkit.make_sampler("sine", **sine, num_context=(16, 16), num_target=(184, 184), max_points=200)
    tasks = dense.sample(8, torch.Generator().manual_seed(7))
    i = tasks.y.std(1).flatten().argmax().item()
    task = npkit.Batch(xc=tasks.xc[i : i + 1], yc=tasks.yc[i : i + 1], xt=tasks.xt[i : i + 1], yt=tasks.yt[i : i + 1])
    fig = Figure(figsize=(12, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(POSTERIORS), len(CONTEXT_SIZES), sharex=True, sharey=True, squeeze=False)
    torch.manual_seed(0)
    for r, posterior in enumerate(POSTERIORS):
        for c, k in enumerate(CONTEXT_SIZES):
            with torch.no_grad():
                draws = npkit.sample_functions(models[posterior], task.xc[:, :k], task.yc[:, :k], grid, 20)
            ax = axes[r, c]
            ax.plot(grid[0, :, 0], draws[:, 0, :, 0].T, color="C0", lw=0.7, alpha=0.5)
            ax.plot(task.x[0, k:, 0], task.y[0, k:, 0], ".", color="grey", ms=2)
            ax.plot(task.xc[0, :k, 0], task.yc[0, :k, 0], "ko", ms=4, zorder=3)
            ax.set_ylim(-7, 7)
            ax.set_title(f"{posterior} posterior, {k} observed point{'s' * (k > 1)}", fontsize="medium")
        axes[r, 0].set_ylabel("y")
    for ax in axes[-1]:
        ax.set_xlabel("x")
    fig.suptitle(
        f"Deep Prior, {steps:,} steps: 20 functions from z ~ q(z | observed points); grey: the function's other points"
    )
    written.append(out / "amortized-deep-prior.png")
    fig.savefig(written[-1])

    # VAE: test digits (binarised), their reconstructions (decoded mean at the mean of q(z | x))
    # and decoded samples from the prior, for both trainings.
    torch.manual_seed(0)
    with torch.no_grad():
        rows = [("test digits", test_x.x[:SHOWN])]
        rows += [(f"{name}\nreconstruction", m.reconstruct(test_x.x[:SHOWN]).mean) for name, m in vaes.items()]
        z = torch.randn(SHOWN, 8)  # the same z ~ N(0, I) decoded by both VAEs
        rows += [(f"{name}\nsample", m.decode(z).mean) for name, m in vaes.items()]
    fig = Figure(figsize=(11, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), SHOWN, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(SHOWN):
            axes[r, c].imshow(images[c].view(8, 8).numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center")
    fig.suptitle(f"VAE on the 8x8 digits, {steps:,} steps: reconstructions and samples (decoded means)")
    written.append(out / "amortized-vae.png")
    fig.savefig(written[-1])

    # Training curves: the Deep Prior's loss (-ELBO per point, with the warming-up KL weight)
    # and the VAE's loss per image, npkit fit (logged every 10 steps) against Pyro SVI.
    fig = Figure(figsize=(11, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    for posterior, rows in curves.items():
        left.plot([r["step"] for r in rows], smooth([r["train/loss"] for r in rows]), lw=0.8, label=posterior)
    left.axvline(objective["warmup_steps"], color="grey", ls=":", lw=0.8, label="KL weight reaches 1")
    left.set(
        xlabel="step", ylabel="-ELBO per point", title="Deep Prior training loss (mean over 100 steps)", ylim=(None, 3)
    )
    right.plot(range(1, steps + 1), svi_losses, lw=0.5, alpha=0.6, color="C1", label="Pyro SVI (every step)")
    right.plot(
        [r["step"] for r in vae_rows], [r["train/loss"] for r in vae_rows], lw=0.8, color="C0", label="npkit fit"
    )
    right.set(xlabel="step", ylabel="-ELBO per image (nats)", title="VAE training loss", ylim=(None, 50))
    for ax in (left, right):
        ax.legend()
    written.append(out / "amortized-training.png")
    fig.savefig(written[-1])
    for path in written:
        print(f"figure: {path}")

    return {
        "steps": steps,
        "deep_prior": scores,
        "deep_prior_elbo": elbos,
        "deep_prior_kl": kls,
        "deep_prior_loss": {p: (rows[0]["train/loss"], rows[-1]["train/loss"]) for p, rows in curves.items()},
        "vae": vae_scores,
        "vae_parameter_gap": gap,
        "vae_last_loss": last,
        "svi_loss": (sum(svi_losses[:10]) / 10, sum(svi_losses[-10:]) / 10),
        "pyro_loss": pyro_loss,
        "npkit_loss": npkit_loss,
    }


def smooth(values: list[float], window: int = 10) -> list[float]:
    """The running mean over the last ``window`` values (fewer at the start)."""
    return [sum(values[max(0, i - window + 1) : i + 1]) / (i + 1 - max(0, i - window + 1)) for i in range(len(values))]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps of each model (default 2000)")
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the figures")
    args = parser.parse_args()
    main(args.steps, args.out)
