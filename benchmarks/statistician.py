"""Neural Statistician: training speed, the silhouette of the posterior means of c by family
(untrained vs trained) and few-shot accuracy on unseen digit classes, as tables; and the figures.

    python benchmarks/statistician.py [--runs runs/statistician] [--steps N] [--figures docs/figures]

Trains ``statistician-synthetic`` (1D distributions), ``statistician-digits`` (spatial 8x8
digits 0-4) and ``statistician-digit-sets`` (sets of 5 images of one digit 0-4) with
``npkit train`` into ``--runs/<preset>`` (``--steps`` overriding the budget); a finished run is
reused, an interrupted one resumed. Then:

1. training speed: median ms per Adam step of the preset's objective over ``--speed-steps`` steps on
   pre-drawn batches, and datasets/s = batch size / step time;
2. silhouette (scikit-learn, Euclidean) and 5-NN family accuracy of the means of q(c | D) of
   ``--num-datasets`` held-out synthetic datasets by family, for the untrained (same initial seed)
   and the trained model, beside the same scores of each set's mean, std, skewness and kurtosis;
3. few-shot accuracy on the digits 5-9 never seen in training (test split): 5-way, 1 and 5
   examples per class, 5 queries per class, ``--episodes`` episodes, ± standard error over
   episodes, for the trained and untrained statistician and plain features: the points' 8x8
   occupancy histogram (spatial digits) and the mean image of the examples (digit sets);
4. figures (``npkit.plot_sets``) in ``--figures``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from common import cpu_name, train  # sibling scripts: benchmarks/ is on sys.path
from step_time import median_step_ms

from npkit.config import load_config, split_section
from npkit.data import make_sampler
from npkit.models import build_model
from npkit.objectives import statistician_elbo
from npkit.plot_sets import plot_statistician
from npkit.runs import load_trained
from npkit.statistician_eval import (
    few_shot_accuracy,
    knn_accuracy,
    mean_item,
    occupancy_histogram,
    posterior_means,
    sample_moments,
    silhouette,
)
from npkit.train import default_threads

# Few-shot presets (trained on digits 0-4) and the plain features each is compared with.
REFERENCES = {"statistician-digits": occupancy_histogram, "statistician-digit-sets": mean_item}
PRESETS = ("statistician-synthetic", *REFERENCES)


def step_time(config: dict, num_steps: int) -> float:
    """Median seconds per Adam step of the statistician ELBO on pre-drawn batches (3 warm-up steps)."""
    torch.manual_seed(0)
    name, options = split_section(config["model"])
    model = build_model(name, **options)
    data, data_options = split_section(config["data"])
    sampler = make_sampler(data, **data_options)
    generator = torch.Generator().manual_seed(0)
    batches = [sampler.sample(config["train"]["batch_size"], generator) for _ in range(num_steps + 3)]
    return median_step_ms(model, statistician_elbo, batches, warmup=3) / 1000


def initial_model(config: dict):
    """The run's model before training: built after seeding with train.seed, as ``npkit train`` does."""
    torch.manual_seed(config["train"].get("seed", 0))
    name, options = split_section(config["model"])
    return build_model(name, **options)


def few_shot_section(preset: str, run: Path, config: dict, reference, figures: Path, args) -> list[Path]:
    """Print the few-shot table of ``preset`` on the test split, on the classes it never saw and on
    new images of those it saw (trained, untrained, ``reference`` features), and draw its
    figures; returns the paths written."""
    data, options = split_section(config["data"])
    seen_classes = list(options["classes"])
    unseen = [c for c in range(10) if c not in seen_classes]
    model, untrained = load_trained(run), initial_model(config)
    episodes = dict(shots=(1, 5), ways=5, queries=5, episodes=args.episodes, seed=args.seed)
    features = {
        "trained statistician (posterior means of c)": model,
        "untrained statistician": untrained,
        f"{reference.__name__} (reference)": reference,
    }
    columns = {"unseen": unseen, "seen": seen_classes}
    rows = {row: {} for row in features}
    for column, classes in columns.items():
        test = make_sampler(data, **{**options, "split": "test", "classes": classes})
        for row, f in features.items():
            rows[row][column] = few_shot_accuracy(f, test, **episodes)
    print(
        f"\n{preset}: 5-way few-shot on the test split, trained on digits {seen_classes}: unseen digits {unseen}, "
        f"and new images of the seen ones; 5 queries per class, {args.episodes} episodes, seed {args.seed}; "
        "prototype = mean of the support features; accuracy ± standard error over episodes (chance 0.2)"
    )
    print("| features | unseen 1-shot | unseen 5-shot | seen 1-shot | seen 5-shot |\n|---|---|---|---|---|")
    for row, results in rows.items():
        cells = [f"{results[c][k]['accuracy']:.3f} ± {results[c][k]['stderr']:.3f}" for c in columns for k in (1, 5)]
        print(f"| {row} | {' | '.join(cells)} |")
    every_class = make_sampler(data, **{**options, "split": "test", "classes": None})
    seen = make_sampler(data, **{**options, "split": "test"})
    out = figures / preset
    return plot_statistician(model, untrained, seen, out, args.num_datasets, args.seed, every_class, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/statistician", help="folder of the run folders")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: each preset's)")
    parser.add_argument("--speed-steps", type=int, default=20)
    parser.add_argument("--num-datasets", type=int, default=1000, help="held-out datasets for the silhouette")
    parser.add_argument("--episodes", type=int, default=200, help="few-shot episodes")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--figures", default="docs/figures")
    args = parser.parse_args()
    threads = default_threads()
    torch.set_num_threads(threads)
    print(f"command: python benchmarks/statistician.py {' '.join(sys.argv[1:])}")
    print(f"machine: {cpu_name()}, {threads} torch thread(s), torch {torch.__version__}\n")

    sets = ["train.progress=false"] + ([f"train.steps={args.steps}"] if args.steps else [])
    runs = {preset: Path(args.runs) / preset for preset in PRESETS}
    for preset, run in runs.items():
        train(preset, run, sets)
    configs = {preset: load_config(run / "config.yaml") for preset, run in runs.items()}

    print("| preset | params | steps x batch | ms/step (median) | datasets/s |\n|---|---|---|---|---|")
    for preset, config in configs.items():
        seconds = step_time(config, args.speed_steps)
        params = sum(p.numel() for p in load_trained(runs[preset]).parameters())
        batch = config["train"]["batch_size"]
        print(
            f"| {preset} | {params:,} | {config['train']['steps']:,} x {batch} | {1000 * seconds:.1f} "
            f"| {batch / seconds:.0f} |"
        )

    synthetic = configs["statistician-synthetic"]
    data, data_options = split_section(synthetic["data"])
    sampler = make_sampler(data, **data_options)
    trained, untrained = load_trained(runs["statistician-synthetic"]), initial_model(synthetic)
    features = {
        name: posterior_means(m, sampler, args.num_datasets, args.seed)
        for name, m in (("untrained", untrained), ("trained", trained))
    }
    held_out = sampler.sample(args.num_datasets, torch.Generator().manual_seed(args.seed))
    features["sample moments (reference)"] = (sample_moments(held_out.x), held_out.labels)
    print(
        f"\nthe means of q(c | D) by family: {args.num_datasets} held-out datasets of {sampler.num_items} samples, "
        f"seed {args.seed}; silhouette and 5-NN family accuracy (5-fold cross-validated, chance "
        f"{1 / len(sampler.families):.2f}); the reference row reads the family off each set's mean, std, "
        "skewness and kurtosis instead of c"
    )
    print("| features | silhouette | 5-NN family accuracy |\n|---|---|---|")
    for name, (means, labels) in features.items():
        print(f"| {name} | {silhouette(means, labels):.3f} | {knn_accuracy(means, labels):.3f} |")
    figures = Path(args.figures)
    written = plot_statistician(
        trained, untrained, sampler, figures / "statistician-synthetic", args.num_datasets, args.seed
    )

    for preset, reference in REFERENCES.items():
        written += few_shot_section(preset, runs[preset], configs[preset], reference, figures, args)
    print("\n" + "\n".join(f"wrote {p}" for p in written))


if __name__ == "__main__":
    main()
