"""Few-shot accuracy of a `statistician-digit-sets` run on the classes its training lacked (all
classes when it saw them all), for the untrained model of the run's seed, the trained model and
the nearest class-mean image (`mean_item`), with the same episodes:

    NPKIT_THREADS=1 npkit train statistician-digit-sets --run-dir RUN [--set ...]
    NPKIT_THREADS=1 python benchmarks/results/statistician/digit_sets/few_shot.py RUN [EPISODES]

Prints one line per row and writes RUN/few-shot.json. With `data.binarize: true` it also scores
the trained model and `mean_item` on the raw intensities.
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from npkit.cli import _eval_sampler, _every_class_sampler, _run_config
from npkit.config import split_section
from npkit.models import build_model
from npkit.runs import load_trained
from npkit.statistician_eval import elbo_on, few_shot_accuracy, mean_item


def main(run: Path, episodes: int) -> None:
    torch.set_num_threads(1)
    config = _run_config(run, [])
    sampler = _eval_sampler(config)
    every = _every_class_sampler(config, sampler)
    seen = set(sampler.labels.tolist())
    classes = sorted(set(every.labels.tolist()) - seen) or sorted(seen)
    held = replace(every, classes=classes)
    seed = config["eval"]["seed"]
    name, options = split_section(config["model"])
    torch.manual_seed(config["train"].get("seed", 0))  # the initial model of the run
    untrained = build_model(name, **options)
    model = load_trained(run)
    raw = replace(held, binarize=False)
    rows = {"untrained": (untrained, held), "trained": (model, held), "mean_item": (mean_item, held)}
    if held.binarize:
        rows |= {"trained (raw intensities)": (model, raw), "mean_item (raw intensities)": (mean_item, raw)}
    results = {}
    for label, (features, sets) in rows.items():
        scores = few_shot_accuracy(features, sets, shots=(1, 5), ways=5, queries=5, episodes=episodes, seed=seed)
        results[label] = {str(k): v for k, v in scores.items()}
        shots = "  ".join(f"{k}-shot {v['accuracy']:.3f} ± {v['stderr']:.3f}" for k, v in scores.items())
        print(f"{run.name:16s} {label:28s} {shots}", flush=True)
    elbo = elbo_on(model, sampler, 512, seed=seed)
    print(
        f"{run.name:16s} classes {classes}, {episodes} episodes, seed {seed}; held-out per item: "
        + ", ".join(f"{k} {v:.2f}" for k, v in elbo.items())
    )
    (run / "few-shot.json").write_text(json.dumps({"classes": classes, "episodes": episodes, **results}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 200)
