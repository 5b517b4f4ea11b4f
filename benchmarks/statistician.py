"""Neural Statistician: training speed, the silhouette of the posterior means of c by family
(untrained vs trained) and few-shot accuracy on unseen digit classes, as tables; and the figures;
the few-shot scores of one run, and the variant studies of docs/statistician.md.

    python benchmarks/statistician.py [--runs runs/statistician] [--steps N] [--figures docs/figures]
    python benchmarks/statistician.py --few-shot RUN [--episodes N]
    python benchmarks/statistician.py --variants VARIANT [VARIANT ...] [--steps N] [--episodes N]
    python benchmarks/statistician.py --silhouette-seeds 3 [--out benchmarks/results/statistician/silhouette-seeds.json]

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
4. figures (``npkit.plot.sets``) in ``--figures``.

``--few-shot RUN`` instead scores one trained run folder (``npkit train statistician-digit-sets
--run-dir RUN [--set ...]``): 5-way few-shot on the test split's classes its training lacked (all
classes when it saw them all), 1 and 5 shots, 5 queries per class, ``--episodes`` episodes drawn
with the run's ``eval.seed``, for the untrained model of the run's seed, the trained model and the
reference features (``mean_item``, the nearest class-mean image; the occupancy histogram for point
sets), and, with ``data.binarize: true``, the trained model and the reference on the raw
intensities; then the held-out ELBO terms per item (512 sets of the run's classes). One line per
row; writes ``RUN/few-shot.json``.

``--silhouette-seeds N`` trains ``statistician-synthetic`` with training seeds 0..N-1 (run folders
``--runs/statistician-synthetic`` and ``-seed<s>``, resumed and reused as above) and prints, per
seed and as the mean ± standard error across seeds, the silhouette and 5-NN family accuracy of
the untrained (that seed's initial weights) and trained models' means of q(c | D), beside the
sample moments; the raw numbers go to ``--out`` (JSON).

``--variants`` trains each named variant of ``VARIANTS`` (a preset, its ``--set`` overrides and,
for some, the reweighted ELBO or mixed set sizes they were trained with; ``all``: every one) in
this process, one seed each, without a run folder, and prints the table docs/statistician.md
quotes ("What we tried"), the variant's log lines being those of
``benchmarks/results/statistician/VARIANT.log``:

- ``statistician-digits`` variants: every ``every`` steps (1,000 unless stated) and at the end,
  the held-out ELBO terms per item (256 test sets of digits 0-4, seed 0) and the accuracies of
  few-shot on the seen 0-4 and unseen 5-9 (test split, ``--episodes`` episodes, default 100,
  seed ``--seed``);
- ``statistician-digit-sets`` variants: at the end, the lines and scores of ``--few-shot``
  (``--episodes``, default 200).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from common import cpu_name, mean_se, train  # sibling scripts: benchmarks/ is on sys.path
from step_time import median_step_ms
from torch import Tensor
from tqdm.auto import tqdm

from npkit import fit
from npkit.cli import _checked, _eval_sampler, _every_class_sampler, _run_config
from npkit.config import apply_overrides, load_config, split_section
from npkit.data import ClassSets, make_sampler
from npkit.evaluation.statistician import (
    elbo_on,
    few_shot_accuracy,
    knn_accuracy,
    mean_item,
    occupancy_histogram,
    posterior_means,
    sample_moments,
    silhouette,
)
from npkit.models import build_model
from npkit.objectives import LossOutput, statistician_elbo, statistician_elbo_terms
from npkit.plot.sets import plot_statistician
from npkit.runs import load_trained
from npkit.train import default_threads

# Few-shot presets (trained on digits 0-4) and the plain features each is compared with.
REFERENCES = {"statistician-digits": occupancy_histogram, "statistician-digit-sets": mean_item}
PRESETS = ("statistician-synthetic", *REFERENCES)

# The variant studies of docs/statistician.md, one seed each; a name is the variant's log under
# benchmarks/results/statistician/. "set": overrides of the preset; "elbo": options of
# reweighted_elbo (else the preset's objective); "set_sizes": (low, high), train on sets of a size
# drawn per batch in [low, high]; "every": report period. The statistician-digits ones were run
# before that preset had batch normalisation, hence normalization=none.
DIGITS, SETS, NO_BN = "statistician-digits", "statistician-digit-sets", "model.normalization=none"
VARIANTS: dict[str, dict] = {
    "alpha": {"preset": DIGITS, "set": [NO_BN], "elbo": {"alpha": 1.0, "halve": 625}},
    "alpha-paper": {
        "preset": DIGITS,
        "set": [NO_BN, "model.c_dim=64", "model.z_dim=2", "model.num_stochastic_layers=3"],
        "elbo": {"alpha": 1.0},
    },
    "long": {
        "preset": DIGITS,
        "set": [NO_BN, "train.steps=30000"],
        "elbo": {"alpha": 1.0, "halve": 2500},
        "every": 5000,
    },
    "cfree": {"preset": DIGITS, "set": [NO_BN], "elbo": {"alpha": 1.0, "cfree": 0.4}},  # 20 nats per set
    "zpen": {"preset": DIGITS, "set": [NO_BN], "elbo": {"zpen": 9.0}},
    "z1": {"preset": DIGITS, "set": [NO_BN, "model.z_dim=1", "model.num_stochastic_layers=1"], "elbo": {"alpha": 1.0}},
    "sigma05": {"preset": DIGITS, "set": [NO_BN, "model.min_sigma=0.05"]},
    "batchnorm/base": {"preset": DIGITS, "set": [NO_BN]},
    "digit_sets/gauss-bn": {"preset": SETS, "set": []},
    "digit_sets/gauss-bn-seed1": {"preset": SETS, "set": ["train.seed=1"]},
    "digit_sets/seen-all": {"preset": SETS, "set": ["data.classes=null"]},
    "digit_sets/seen-all-seed1": {"preset": SETS, "set": ["data.classes=null", "train.seed=1"]},
    "digit_sets/long": {"preset": SETS, "set": ["train.steps=12000"]},
    "digit_sets/gauss-none": {"preset": SETS, "set": [NO_BN]},
    "digit_sets/g-s01": {"preset": SETS, "set": ["model.min_sigma=0.1"]},
    "digit_sets/g-z4": {"preset": SETS, "set": ["model.z_dim=4"]},
    "digit_sets/big": {"preset": SETS, "set": ["model.hidden_dim=256", "model.c_dim=64"]},
    "digit_sets/varsize": {"preset": SETS, "set": [], "set_sizes": (1, 5)},
    "digit_sets/bern-bn": {"preset": SETS, "set": ["model.likelihood=bernoulli", "data.binarize=true"]},
    "digit_sets/bern-none": {"preset": SETS, "set": ["model.likelihood=bernoulli", "data.binarize=true", NO_BN]},
}


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


def few_shot_scores(name: str, model, config: dict, episodes: int) -> dict:
    """``--few-shot`` of ``model`` trained with ``config`` (``name`` heads its lines): prints one line
    per row and the held-out ELBO terms; returns {"classes", "episodes", row: {shots: scores},
    "elbo": terms}."""
    sampler = _eval_sampler(config)
    every = _every_class_sampler(config, sampler)
    if every is None:
        raise SystemExit(f"{name}: few-shot needs a statistician trained on point or class sets")
    seen = set(sampler.labels.tolist())
    classes = sorted(set(every.labels.tolist()) - seen) or sorted(seen)
    held = replace(every, classes=classes)
    seed = config["eval"]["seed"]
    reference = mean_item if isinstance(held, ClassSets) else occupancy_histogram
    rows = {"untrained": (initial_model(config), held), "trained": (model, held), reference.__name__: (reference, held)}
    if getattr(held, "binarize", False):
        raw = replace(held, binarize=False)
        rows |= {"trained (raw intensities)": (model, raw), f"{reference.__name__} (raw intensities)": (reference, raw)}
    results: dict = {"classes": classes, "episodes": episodes}
    with tqdm(total=2 * len(rows), desc=f"few-shot {name}", leave=False, disable=None) as bar:
        for label, (features, sets) in rows.items():
            scores = {}
            for k in (1, 5):  # one call per shot: the same episodes as shots=(1, 5), a finer progress bar
                scores |= few_shot_accuracy(features, sets, shots=(k,), ways=5, queries=5, episodes=episodes, seed=seed)
                bar.update()
            results[label] = {str(k): v for k, v in scores.items()}
            shots = "  ".join(f"{k}-shot {v['accuracy']:.3f} ± {v['stderr']:.3f}" for k, v in scores.items())
            tqdm.write(f"{name:16s} {label:28s} {shots}")
    elbo = elbo_on(model, sampler, 512, seed=seed)
    print(
        f"{name:16s} classes {classes}, {episodes} episodes, seed {seed}; held-out per item: "
        + ", ".join(f"{k} {v:.2f}" for k, v in elbo.items()),
        flush=True,
    )
    return {**results, "elbo": elbo}


def few_shot_run(run: Path, episodes: int) -> None:
    """``--few-shot RUN``: `few_shot_scores` of the trained run folder; writes ``RUN/few-shot.json``."""
    results = few_shot_scores(run.name, load_trained(run), _run_config(run, []), episodes)
    results.pop("elbo")
    (run / "few-shot.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {run / 'few-shot.json'}")


def reweighted_elbo(model, batch, step: int, alpha=0.0, halve=625.0, cfree=0.0, zpen=0.0) -> LossOutput:
    """The negative statistician ELBO per item, reweighted as the variants of docs/statistician.md:
    w log p - KL / w with w = 1 + ``alpha`` 0.5 ** (step / ``halve``) (the reweighting of the public
    re-implementation), the KL of c floored at ``cfree`` nats per item (free bits), the KL of z
    weighted 1 + ``zpen`` 0.5 ** (step / 500)."""
    t = statistician_elbo_terms(model, batch)
    w = 1 + alpha * 0.5 ** (step / halve)
    kl = t["kl_c"].clamp_min(cfree) + (1 + zpen * 0.5 ** (step / 500)) * t["kl_z"].sum()
    return LossOutput(-(w * t["log_lik"] - kl / w), t["log_lik"], kl)


class MixedSizes:
    """Sets of the class-set sampler ``name`` (``options``) of a size drawn uniformly in [low, high]
    per batch, so that a few-shot query, a set of one image, is a size seen in training."""

    def __init__(self, name: str, options: dict, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.samplers = {n: make_sampler(name, **{**options, "set_size": n}) for n in range(low, high + 1)}

    def sample(self, batch_size, generator=None):
        n = int(torch.randint(self.low, self.high + 1, (1,), generator=generator))
        return self.samplers[n].sample(batch_size, generator)


def variant_config(name: str, steps: int | None) -> dict:
    """The checked config of variant ``name``, ``steps`` (if given) overriding its budget."""
    v = VARIANTS[name]
    return _checked(
        apply_overrides(load_config(v["preset"]), [*v["set"], *([f"train.steps={steps}"] if steps else [])])
    )


def digits_report(name: str, config: dict, episodes: int, seed: int):
    """A callback ``(step, model, output)`` that, every ``every`` steps and at the last, prints the
    held-out ELBO terms per item and the few-shot accuracies on the seen and unseen digits (as the
    logs of the variants) and keeps them in its ``last``."""
    data, options = split_section(config["data"])
    unseen = [c for c in range(10) if c not in options["classes"]]
    sets = {
        "seen": make_sampler(data, **{**options, "split": "test"}),
        "unseen": make_sampler(data, **{**options, "split": "test", "classes": unseen}),
    }
    every, steps = VARIANTS[name].get("every", 1000), config["train"]["steps"]

    def report(step, model, output=None):
        if step % every == 0 or step == steps:
            model.eval()
            terms = {k: round(x, 4) for k, x in elbo_on(model, sets["seen"], 256).items()}
            few_shot = {
                s: few_shot_accuracy(model, sampler, episodes=episodes, seed=seed) for s, sampler in sets.items()
            }
            model.train()
            accuracies = {s: {k: round(r["accuracy"], 3) for k, r in f.items()} for s, f in few_shot.items()}
            tqdm.write(f"{name} {step} {terms} {accuracies}")
            sys.stdout.flush()
            report.last = {"step": step, "terms": terms, "few_shot": few_shot}
        return {}

    return report


def run_variants(names: list[str], args) -> None:
    """``--variants``: train each variant, print its lines, then the tables."""
    configs = {name: variant_config(name, args.steps) for name in names}  # every override checked first
    digits, sets = {}, {}
    for name, config in configs.items():
        v = VARIANTS[name]
        extra = {k: v[k] for k in ("elbo", "set_sizes", "every") if k in v}
        print(
            f"\n{name}: {' '.join([v['preset'], *(f'--set {s}' for s in v['set'])])}" + (f"; {extra}" if extra else "")
        )
        model = initial_model(config)
        data, options = split_section(config["data"])
        sampler = MixedSizes(data, options, *v["set_sizes"]) if "set_sizes" in v else make_sampler(data, **options)
        objective, objective_options = split_section(config["objective"])
        if "elbo" in v:
            objective, objective_options = partial(reweighted_elbo, **v["elbo"]), {}
        callbacks = []
        if v["preset"] == DIGITS:
            callbacks.append(digits_report(name, config, args.episodes or 100, args.seed))
        train_options = {**config["train"], "progress": sys.stderr.isatty()}
        fit(model, sampler, objective, objective_options, callbacks=callbacks, **train_options)
        if v["preset"] == DIGITS:
            digits[name] = (config, callbacks[0].last)
        else:
            sets[name] = (config, few_shot_scores(name, model, config, args.episodes or 200))

    def cell(scores: dict, k) -> str:
        return f"{scores[k]['accuracy']:.3f} ± {scores[k]['stderr']:.3f}"

    if digits:
        print(
            "\nstatistician-digits variants: held-out ELBO terms per item (256 test sets of the training digits, "
            f"seed 0); 5-way few-shot on the test split, 5 queries per class, {args.episodes or 100} episodes, "
            f"seed {args.seed}; ± standard error over episodes"
        )
        print(
            "| variant | steps | ELBO | log_lik | KL c | KL c per set | KL z | seen 1-shot | seen 5-shot "
            "| unseen 1-shot | unseen 5-shot |\n|---|---|---|---|---|---|---|---|---|---|---|"
        )
        for name, (config, last) in digits.items():
            t, f = last["terms"], last["few_shot"]
            per_set = t["kl_c"] * config["data"]["num_points"]
            print(
                f"| {name} | {last['step']:,} | {t['elbo']:.4f} | {t['log_lik']:.4f} | {t['kl_c']:.4f} "
                f"| {per_set:.2f} | {t['kl_z']:.4f} | "
                + " | ".join(cell(f[s], k) for s in ("seen", "unseen") for k in (1, 5))
                + " |"
            )
    if sets:
        print(
            "\nstatistician-digit-sets variants: 5-way few-shot on the test split's classes the training lacked (all "
            f"when it saw them all), 5 queries per class, {args.episodes or 200} episodes, seed eval.seed; "
            "held-out ELBO terms per item (512 test sets of the training classes)"
        )
        print(
            "| variant | steps | ELBO | log_lik | KL c | KL z | classes | untrained 1-shot | untrained 5-shot "
            "| trained 1-shot | trained 5-shot | mean_item 1-shot | mean_item 5-shot |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        )
        for name, (config, r) in sets.items():
            e = r["elbo"]
            print(
                f"| {name} | {config['train']['steps']:,} | {e['elbo']:.2f} | {e['log_lik']:.2f} | {e['kl_c']:.2f} "
                f"| {e['kl_z']:.2f} | {r['classes']} | "
                + " | ".join(cell(r[row], k) for row in ("untrained", "trained", "mean_item") for k in ("1", "5"))
                + " |"
            )


def separation(features: tuple[Tensor, Tensor]) -> dict[str, float]:
    """Silhouette and 5-NN family accuracy of (means, labels)."""
    means, labels = features
    return {"silhouette": silhouette(means, labels), "knn_accuracy": knn_accuracy(means, labels)}


def silhouette_seeds(num_seeds: int, args) -> None:
    """``--silhouette-seeds``: the synthetic silhouette over training seeds, mean ± s.e."""
    preset = "statistician-synthetic"
    sets = ["train.progress=false"] + ([f"train.steps={args.steps}"] if args.steps else [])
    rows, raw = {}, {}
    for seed in range(num_seeds):
        run = Path(args.runs) / (preset if seed == 0 else f"{preset}-seed{seed}")
        train(preset, run, [*sets, f"train.seed={seed}"])
        config = load_config(run / "config.yaml")
        data, data_options = split_section(config["data"])
        sampler = make_sampler(data, **data_options)
        models = {"untrained": initial_model(config), "trained": load_trained(run)}
        scores = {
            name: separation(posterior_means(m, sampler, args.num_datasets, args.seed)) for name, m in models.items()
        }
        if seed == 0:  # the reference features do not depend on the training seed
            held_out = sampler.sample(args.num_datasets, torch.Generator().manual_seed(args.seed))
            reference = separation((sample_moments(held_out.x), held_out.labels))
        raw[seed] = {"run": str(run), "steps": config["train"]["steps"], **scores}
        for name, s in scores.items():
            rows.setdefault(name, []).append(s)
    print(
        f"{preset}: {num_seeds} training seeds, {raw[0]['steps']:,} steps each; the means of q(c | D) of "
        f"{args.num_datasets} held-out datasets (seed {args.seed}) by family: silhouette and 5-NN family accuracy"
    )
    print("| model | seed | silhouette | 5-NN family accuracy |\n|---|---|---|---|")
    for name, per_seed in rows.items():
        for seed, s in enumerate(per_seed):
            print(f"| {name} | {seed} | {s['silhouette']:.3f} | {s['knn_accuracy']:.3f} |")
    summary = {}
    for name, per_seed in rows.items():
        cells = {k: mean_se([s[k] for s in per_seed]) for k in ("silhouette", "knn_accuracy")}
        summary[name] = cells
        print(f"| {name}, mean ± s.e. over {num_seeds} seeds | - | {cells['silhouette']} | {cells['knn_accuracy']} |")
    print(f"| sample moments (reference) | - | {reference['silhouette']:.3f} | {reference['knn_accuracy']:.3f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = f"python benchmarks/statistician.py {' '.join(sys.argv[1:])}"
    out.write_text(
        json.dumps({"command": command, "per_seed": raw, "reference": reference, "mean_se": summary}, indent=1)
    )
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/statistician", help="folder of the run folders")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: each preset's)")
    parser.add_argument("--speed-steps", type=int, default=20)
    parser.add_argument("--num-datasets", type=int, default=1000, help="held-out datasets for the silhouette")
    parser.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="few-shot episodes (default 200; 100 in the reports of the statistician-digits variants)",
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--figures", default="docs/figures")
    parser.add_argument(
        "--out", default="benchmarks/results/statistician/silhouette-seeds.json", help="--silhouette-seeds: raw JSON"
    )
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--silhouette-seeds", type=int, metavar="N", help="only the synthetic silhouette over N seeds")
    chosen.add_argument(
        "--few-shot",
        metavar="RUN",
        type=Path,
        help="only the few-shot scores of this run (statistician-digit-sets, or another set preset)",
    )
    chosen.add_argument(
        "--variants",
        nargs="+",
        metavar="VARIANT",
        choices=[*VARIANTS, "all"],
        help=f"only train and score these variants ('all': every one): {', '.join(VARIANTS)}",
    )
    args = parser.parse_args()
    threads = default_threads()
    torch.set_num_threads(threads)
    print(f"command: python benchmarks/statistician.py {' '.join(sys.argv[1:])}")
    print(f"machine: {cpu_name()}, {threads} torch thread(s), torch {torch.__version__}\n")
    if args.few_shot is not None:
        few_shot_run(args.few_shot, args.episodes or 200)
        return
    if args.silhouette_seeds:
        silhouette_seeds(args.silhouette_seeds, args)
        return
    if args.variants:
        run_variants(list(VARIANTS) if "all" in args.variants else list(dict.fromkeys(args.variants)), args)
        return
    args.episodes = args.episodes or 200

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
