"""The Neural Statistician: a VAE over whole datasets (Edwards & Storkey 2017). Train it on sets of
scikit-learn's 8x8 digits (each set 5 images of one digit, digits 0-4 only), embed held-out sets
into the context latent c, score how well c separates the digits (silhouette, few-shot
classification; on the trained digits and on the unseen 5-9) and generate images given a set.

    python docs/tutorials/statistician.py [--steps N] [--out DIR]

The digits ship with scikit-learn: nothing is downloaded. The defaults (4,000 steps of 32 sets)
take one to two and a half minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

import npkit

FIGURES = Path(__file__).resolve().parent.parent / "figures" / "tutorials"
SEEN, UNSEEN = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
NUM_SETS, EPISODES = 500, 50  # held-out sets embedded per group of digits; few-shot episodes
SHOWN = (2, 4, 7, 9)  # the digits of the sets generated from
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


def main(steps: int = 4000, out: str | Path = FIGURES) -> dict:
    out = Path(out)
    torch.set_num_threads(1)  # these networks are small: more threads gain little
    torch.manual_seed(0)  # the model's initial weights

    # A dataset is 5 distinct images of one digit, each item a whole image flattened to 64 pixels
    # in [0, 1]; the label of a set (its digit) is never shown to the model, only used to score it.
    # The model trains on the digits 0-4 of the "train" split; the "test" split (the last 360
    # digits) gives held-out sets of those digits and of the five it never saw.
    train = npkit.make_sampler("digit-sets", classes=SEEN, set_size=5)
    test = {
        "seen 0-4": npkit.make_sampler("digit-sets", split="test", classes=SEEN, set_size=5),
        "unseen 5-9": npkit.make_sampler("digit-sets", split="test", classes=UNSEEN, set_size=5),
    }
    print(f"{len(train.images)} training images of {train.class_list}, {len(test['seen 0-4'].images)} test images")

    # The model of the preset statistician-digit-sets: a context c of 32 dimensions per set, read
    # by the statistic network q(c | D) (instance encoder, mean pooling over the set, post-pooling
    # network), one latent z of 16 dimensions per image, an observation model p(x | z, c), and
    # the batch normalisation of the public re-implementation (without it c collapses onto its
    # prior on digits). A copy of the initial weights is kept as a baseline: an untrained network
    # already maps different images to different c.
    model = npkit.build_model(
        "statistician", x_dim=64, hidden_dim=128, c_dim=32, z_dim=16, num_stochastic_layers=1, normalization="batch"
    )
    untrained = copy.deepcopy(model)

    # Training maximises the paper's ELBO, every term divided by the 5 items of a set:
    # log p(x | z, c) - KL(q(c | D) || p(c)) - KL(q(z | x, c) || p(z | c)).
    rows = npkit.fit(model, train, "statistician_elbo", steps=steps, batch_size=32, lr=1e-3, seed=0)
    model.eval()  # batch norm: use its running statistics, so that each set is encoded on its own

    # The same ELBO terms on 512 held-out sets of the digits 0-4, per image (npkit.elbo_on switches
    # the model to eval mode itself).
    elbo = npkit.elbo_on(model, test["seen 0-4"], num_datasets=512, seed=0)
    elbo_untrained = npkit.elbo_on(untrained, test["seen 0-4"], num_datasets=512, seed=0)
    print("held-out ELBO per image: " + ", ".join(f"{k} {v:.2f}" for k, v in elbo.items()))
    print(f"  (untrained: elbo {elbo_untrained['elbo']:.2f}); c carries {5 * elbo['kl_c']:.1f} nats per set")

    # The summary of a set is the mean of q(c | D): one 32-vector per set. How well do the
    # summaries of 500 held-out sets group by digit? The silhouette coefficient (scikit-learn's,
    # Euclidean; 1: tight, far-apart groups, about 0: overlapping ones), as npkit eval reports it.
    # The test split has about 36 images of each digit, so these sets share images.
    embeddings, scores = {}, {}
    for name, net, group in (
        ("untrained, seen 0-4", untrained, "seen 0-4"),
        ("trained, seen 0-4", model, "seen 0-4"),
        ("trained, unseen 5-9", model, "unseen 5-9"),
    ):
        means, labels = npkit.posterior_means(net, test[group], NUM_SETS, seed=1)  # [500, 32], [500]
        embeddings[name] = (means, labels)
        scores[name] = npkit.silhouette(means, labels)
        print(f"{name}: silhouette of the means of c by digit {scores[name]:.3f}")

    # Few-shot classification, 5 ways, 5 queries per class, 50 episodes: the k examples of a
    # class form ONE set, whose mean of q(c | D) is the class prototype; each query image is a set
    # of one image and takes the class of the nearest prototype. The plain baseline, npkit.mean_item,
    # uses the mean image of the k examples instead of c (the nearest class-mean in pixel space).
    few_shot = {}
    for group in test:
        for name, features in (("trained", model), ("untrained", untrained), ("mean image", npkit.mean_item)):
            score = npkit.few_shot_accuracy(features, test[group], shots=(1, 5), episodes=EPISODES, seed=1234)
            few_shot[f"{name}, {group}"] = {k: v["accuracy"] for k, v in score.items()}
    print("few-shot accuracy (5-way, 1-shot / 5-shot; chance 0.2):")
    for name, accuracy in few_shot.items():
        print(f"  {name:22s} {accuracy[1]:.3f} / {accuracy[5]:.3f}")

    # Figure 1: the 500 summaries of each group in 2D (the first two principal components of c,
    # fitted per panel), coloured by the digit of the set.
    fig = Figure(figsize=(13, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (name, (means, labels)) in zip(fig.subplots(1, 3), embeddings.items()):
        points = PCA(n_components=2).fit_transform(means.numpy())
        for i, digit in enumerate(sorted(set(labels.tolist()))):
            mine = points[(labels == digit).numpy()]
            ax.scatter(mine[:, 0], mine[:, 1], s=7, alpha=0.6, color=COLOURS[i], label=str(digit))
        ax.set_title(f"{name}: silhouette {scores[name]:.2f}", fontsize="medium")
        ax.set_xlabel("PCA 1 of c")
        ax.set_ylabel("PCA 2 of c")
        ax.legend(title="digit", markerscale=2, fontsize="small")
    fig.suptitle(f"means of q(c | D) of {NUM_SETS} held-out sets of 5 test digits, {steps:,} training steps")
    figures = [out / "statistician-embeddings.png"]
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures[0])

    # Figure 2: conditional generation. For held-out sets (the first 5 test images) of two seen
    # and two unseen digits: c = the mean of q(c | set), then 5 new images, each from its own
    # z ~ p(z | c) (the observation model's means are shown). model.generate does not switch to
    # eval mode itself: the model is in eval mode since model.eval() above.
    sets = [test["seen 0-4" if digit in SEEN else "unseen 5-9"] for digit in SHOWN]
    given = torch.cat([s.sets_of(torch.nonzero(s.labels == d)[:5].T).x for s, d in zip(sets, SHOWN)])  # [4, 5, 64]
    torch.manual_seed(0)  # the z drawn below
    with torch.no_grad():
        generated = model.generate(given, num_items=5).mean.clamp(0, 1)  # [4, 5, 64]
    fig = Figure(figsize=(10, 4.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    panels = fig.subfigures(1, 2, wspace=0.04)
    left, right = panels[0].subplots(4, 5), panels[1].subplots(4, 5)
    panels[0].suptitle("the given set (5 test images)", fontsize="medium")
    panels[1].suptitle("5 images generated given it", fontsize="medium")
    for row, (images, samples) in enumerate(zip(given, generated)):
        for ax, image in zip([*left[row], *right[row]], [*images, *samples]):
            ax.imshow(image.view(8, 8).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_axis_off()
        kind = "seen" if SHOWN[row] in SEEN else "unseen"
        left[row, 0].text(
            -0.2, 0.5, f"{SHOWN[row]} ({kind})", transform=left[row, 0].transAxes, rotation=90, ha="right", va="center"
        )
    fig.suptitle(f"statistician trained on the digits 0-4, {steps:,} steps: c = mean of q(c | set), z ~ p(z | c)")
    figures.append(out / "statistician-samples.png")
    fig.savefig(figures[1])
    for figure in figures:
        print(f"figure: {figure}")

    return {
        "steps": steps,
        "first_loss": rows[0]["train/loss"],
        "last_loss": rows[-1]["train/loss"],
        "elbo": elbo,
        "elbo_untrained": elbo_untrained,
        "embeddings": embeddings,
        "silhouette": scores,
        "few_shot": few_shot,
        "given": given,
        "generated": generated,
        "model": model,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="training steps (default 4000)")
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the figures")
    args = parser.parse_args()
    main(args.steps, args.out)
