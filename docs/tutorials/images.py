"""Image completion: train a CNP and an attentive CNP on scikit-learn's 8x8 digits, complete
held-out digits from a few observed pixels, and score them against kNN and a fitted GP at several
context fractions.

    python docs/tutorials/images.py [--steps N] [--out DIR]

The digits ship with scikit-learn: nothing is downloaded. The defaults (3,000 steps of 16 images
per model) take one to two minutes on one CPU core.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import npkit

FIGURES = Path(__file__).resolve().parent.parent / "figures" / "tutorials"


def main(steps: int = 3000, out: str | Path = FIGURES) -> dict:
    out = Path(out)
    torch.set_num_threads(1)  # these networks are small: more threads gain little

    # An image is a function from pixel coordinates (row, column) in [0, 1]^2 to intensities in
    # [0, 1]. A task is one digit: 3-32 random pixels are the context, the others the targets.
    # The "test" split (the last 360 digits) is never trained on.
    train = npkit.make_sampler("digits", split="train")
    test = npkit.make_sampler("digits", split="test")
    print(f"{len(train.images)} training and {len(test.images)} test digits of {tuple(test.images.shape[1:])}")

    # Two models with 2 inputs and 1 output, trained with the exact log-likelihood of their
    # Gaussian head: a CNP, which averages one representation over the context pixels, and an
    # attentive CNP, whose every target pixel attends to the context pixels (near ones, mostly).
    options = {"cnp": {}, "canp": {"attention_layers": 1, "num_heads": 4}}
    models, figures = {}, []
    for name in options:
        torch.manual_seed(0)  # the model's initial weights
        model = models[name] = npkit.build_model(name, x_dim=2, y_dim=1, hidden_dim=64, r_dim=64, **options[name])
        npkit.fit(model, train, "nll", steps=steps, lr=1e-3, seed=0)
        model.eval()
        # Completion of one test digit from 3, 10 and 32 random pixels (about 5%, 15% and 50%) and
        # from all 64: the context (unobserved pixels in blue), the predictive mean and its std.
        figures.append(
            npkit.plot_completion(
                model,
                test,
                test.images[0],
                out / f"images-completion-{name}.png",
                context_sizes=(3, 10, 32, None),
                title=f"{name} on 8x8 digits, {steps:,} steps: a test digit",
            )
        )

    # 32 test digits observed at 5% to 100% of their pixels (3, 6, 13, 32 and 64 pixels; nested
    # contexts: a larger fraction adds pixels to a smaller one's) and scored at every pixel, for
    # both models, k-nearest neighbours in pixel space and a GP with an RBF kernel fitted to each
    # image's context.
    tasks = npkit.fraction_tasks(test, fractions=(0.05, 0.1, 0.2, 0.5, 1.0), num_images=32, batch_size=8, seed=0)
    results = npkit.evaluate_fractions(models, tasks)
    print(npkit.format_fraction_table(results, "tar_ll"))
    print(npkit.format_fraction_table(results, "mse"))
    figures.append(
        npkit.plot_fractions(results, out / "images-fractions.png", title=f"32 test digits, {steps:,} steps")
    )
    print("figures: " + ", ".join(map(str, figures)))

    return {  # {metric: {method: {fraction: value}}}
        "steps": steps,
        **{
            key: {name: {f: m[key] for f, m in per.items()} for name, per in results.items()}
            for key in ("tar_ll", "mse")
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the figures")
    args = parser.parse_args()
    main(args.steps, args.out)
