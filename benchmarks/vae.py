"""VAE trained two ways, natively (``npkit.fit`` with ``vae_elbo``) and with Pyro SVI
(``npkit.pyro.train_vae_svi``, ``TraceMeanField_ELBO``: the same analytic-KL estimator), from the
same initial weights with the same batches and noise per step and a constant Adam learning rate
(so up to float round-off the two runs follow one trajectory); a markdown table and figures.

    python benchmarks/vae.py [--steps N] [--mnist PATH|none] [--figures docs/figures]

Data: scikit-learn's 8x8 digits (train 1437 / test 360 images, ``npkit.data.digits_split``), or
MNIST from the IDX files under ``--mnist``; pixels dynamically binarised for training, the test set
binarised once with ``--seed``. Bernoulli likelihood. Reported per test image, in nats: the ELBO
(``--elbo-samples`` z per image) and the importance-sampled log-likelihood (``--iwae-samples``
z per image); ms/step is the wall time of the whole training call over the steps (fit's includes
its Fabric setup). Figures: test reconstructions and prior samples of both models, and the latent
map of a separate z_dim = 2 model trained natively (posterior means of the test set by label,
and the decoded grid).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import cpu_name  # sibling scripts: benchmarks/ is on sys.path
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pyro.infer import TraceMeanField_ELBO

from npkit.data.vectors import ImageVectors, VectorBatch, digit_vectors, mnist_vectors
from npkit.models.vae import VAE
from npkit.objectives import importance_log_likelihood, vae_elbo
from npkit.pyro import train_vae_svi
from npkit.train import default_threads, fit

CHUNK = 100  # test images per importance-sampling pass: memory ~ CHUNK * K * x_dim
SHOWN = 10  # images per row in the figures


def data(mnist: str | None) -> tuple[ImageVectors, ImageVectors]:
    """Train and test samplers (binarised) of the digits, or of MNIST under ``mnist``."""
    if mnist is None:
        return digit_vectors("train", binarize=True), digit_vectors("test", binarize=True)
    return mnist_vectors(mnist, "train", binarize=True), mnist_vectors(mnist, "test", binarize=True)


@torch.no_grad()
def scores(model: VAE, test: VectorBatch, elbo_samples: int, iwae_samples: int, seed: int) -> tuple[float, float]:
    """Test ELBO and importance-sampled log-likelihood per image (nats), chunked over images."""
    torch.manual_seed(seed)
    elbo, log_lik = [], []
    for x in test.x.split(CHUNK):
        elbo.append(-vae_elbo(model, VectorBatch(x), elbo_samples).loss * len(x))
        log_lik.append(importance_log_likelihood(model, x, iwae_samples))
    return (sum(elbo) / len(test.x)).item(), torch.cat(log_lik).mean().item()


def timed(train, steps: int) -> float:
    """ms per step of ``train()``, a training call of ``steps`` steps."""
    start = time.perf_counter()
    train()
    return 1000 * (time.perf_counter() - start) / steps


def image_rows(rows: list[tuple[str, torch.Tensor]], shape: torch.Size, title: str) -> Figure:
    """One row of images [SHOWN, x_dim] per (label, images)."""
    fig = Figure(figsize=(1.0 * SHOWN, 1.1 * len(rows) + 0.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), SHOWN, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(SHOWN):
            ax = axes[r][c]
            ax.imshow(images[c].reshape(shape).permute(1, 2, 0).squeeze(-1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    return fig


@torch.no_grad()
def latent_map(model: VAE, test: VectorBatch, shape: torch.Size, title: str) -> Figure:
    """A z_dim = 2 model: the test set's posterior means coloured by label, and decoded means on a grid."""
    fig = Figure(figsize=(11, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    scatter_ax, grid_ax = fig.subplots(1, 2)
    means = model.encode(test.x).mean
    points = scatter_ax.scatter(means[:, 0], means[:, 1], c=test.labels, cmap="tab10", s=8, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=scatter_ax, label="digit", ticks=range(10))
    scatter_ax.set(xlabel="z1 (posterior mean)", ylabel="z2 (posterior mean)", title="test images in latent space")
    n = 10
    ticks = torch.linspace(-2.5, 2.5, n)
    z = torch.stack(torch.meshgrid(ticks, ticks.flip(0), indexing="xy"), -1).reshape(-1, 2)  # rows: z2 from the top
    images = model.decode(z).mean.reshape(n, n, *shape)[:, :, 0]  # first channel, [n, n, H, W]
    images = F.pad(images, (1, 1, 1, 1), value=0.3)  # a grey frame around each image
    canvas = images.permute(0, 2, 1, 3).reshape(n * images.shape[-2], n * images.shape[-1])
    grid_ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, extent=(-2.5, 2.5, -2.5, 2.5))
    grid_ax.set(xlabel="z1", ylabel="z2", title="decoded means p(x | z) on a grid")
    fig.suptitle(title)
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--mnist", default="none", help="folder of the MNIST IDX files, or none for the 8x8 digits")
    parser.add_argument("--figures", default="docs/figures")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--z-dim", type=int, default=8)
    parser.add_argument("--layers", type=int, default=3, help="linear layers of the encoder and of the decoder")
    parser.add_argument("--elbo-samples", type=int, default=10)
    parser.add_argument("--iwae-samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    threads = default_threads()
    torch.set_num_threads(threads)
    print(f"command: python benchmarks/vae.py {' '.join(sys.argv[1:])}")
    print(f"machine: {cpu_name()}, {threads} torch thread(s), torch {torch.__version__}\n")

    mnist = None if args.mnist.lower() == "none" else args.mnist
    train, test_sampler = data(mnist)
    test = test_sampler.batch_of(torch.arange(len(test_sampler)), torch.Generator().manual_seed(args.seed))
    shape = train.images.shape[1:]
    options = dict(x_dim=train.x_dim, hidden_dim=args.hidden_dim, layers=args.layers, likelihood="bernoulli")
    budget = dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    native = dict(schedule="constant", progress=True)  # Pyro's Adam has no schedule

    def build(z_dim: int) -> VAE:
        torch.manual_seed(args.seed)
        return VAE(**options, z_dim=z_dim)

    models = {"npkit fit": build(args.z_dim), "Pyro SVI": build(args.z_dim)}
    ms = {
        "npkit fit": timed(lambda: fit(models["npkit fit"], train, vae_elbo, **budget, **native), args.steps),
        "Pyro SVI": timed(
            lambda: train_vae_svi(models["Pyro SVI"], train, **budget, loss=TraceMeanField_ELBO()), args.steps
        ),
    }
    params = sum(p.numel() for p in models["npkit fit"].parameters())
    print(
        f"\nVAE on {train.source} -> {test_sampler.source} ({len(test.x)} images, binarised once with seed "
        f"{args.seed}): x_dim {train.x_dim}, z_dim {args.z_dim}, hidden {args.hidden_dim} x {args.layers} layers, "
        f"{params:,} parameters, batch {args.batch_size}, Adam lr {args.lr}; nats per test image"
    )
    print(
        f"| training | test ELBO ({args.elbo_samples} z) | test log p(x) (IWAE, K={args.iwae_samples}) "
        "| ms/step | steps | seed |\n|---|---|---|---|---|---|"
    )
    for name, model in models.items():
        elbo, log_lik = scores(model, test, args.elbo_samples, args.iwae_samples, args.seed)
        print(f"| {name} | {elbo:.2f} | {log_lik:.2f} | {ms[name]:.2f} | {args.steps} | {args.seed} |")

    figures, data_name = Path(args.figures), "mnist" if mnist else "digits"
    with torch.no_grad():
        shown = test.x[:SHOWN]
        rows = [("test", shown)] + [(name, m.reconstruct(shown).mean) for name, m in models.items()]
        written = [
            save(
                image_rows(rows, shape, f"VAE reconstructions of {test_sampler.source} ({args.steps} steps)"),
                figures / f"vae-{data_name}-reconstructions.png",
            )
        ]
        torch.manual_seed(args.seed)
        rows = [(name, m.sample(SHOWN).mean) for name, m in models.items()]
        title = f"VAE samples from the prior, decoded means ({args.steps} steps)"
        written.append(save(image_rows(rows, shape, title), figures / f"vae-{data_name}-samples.png"))
    planar = build(2)
    fit(planar, train, vae_elbo, **budget, **native)
    title = f"VAE with z_dim = 2 on {train.source} ({args.steps} steps, npkit fit)"
    written.append(save(latent_map(planar, test, shape, title), figures / f"vae-{data_name}-latent.png"))
    print("\n" + "\n".join(f"wrote {p}" for p in written))


if __name__ == "__main__":
    main()
