"""Image completion: training speed and memory, then log-likelihood and MSE against the context
fraction for each model beside kNN and the fitted GP, and the diversity of latent samples.

    python benchmarks/images.py [--models cnp np anp] [--runs runs/images] [--steps N] [--num-images 64]
    python benchmarks/images.py --models cnp anp --celeba DIR | --faces 2000 [--steps N]

Data: MNIST when its IDX files are found (``--mnist``, default ``$NPKIT_DATA/mnist`` or
``../shared/data/mnist``), else scikit-learn's 8x8 digits. ``--celeba DIR``: CelebA's aligned
JPEGs and partition file in DIR, 32x32 RGB, presets ``celeba-<model>``. ``--faces N``: the same
CelebA path on N face-like images drawn by ``npkit.make_face_folder`` (into ``--runs/faces-N``,
made once), for a run without the data; its numbers are not CelebA's. Faces have no classes, so
the sample diversity has no classifier columns there. Each model is trained with its preset
(``mnist-<model>`` / ``digits-<model>``, ``--steps`` and ``--batch-size`` overriding its own) by
``npkit train`` into ``--runs/<preset>[-<steps>][-batch<size>]``; an existing run is resumed, a
finished one reused, so the script can be stopped and restarted. A model is evaluated in the
conventions of its run's data (``mnist-lnp`` trains on ``mnist-bnp``: coords in [-1, 1], values
- 0.5), the baselines in ``mnist``'s ([0, 1]); the images and pixels are the same. Then:

1. training speed: median ms per Adam step (and images/s = batch / step time) over
   ``--speed-steps`` isolated steps of the preset's objective on pre-drawn batches, and the peak
   RSS of that process (one process per model, so the peak is its own);
2. evaluation (``npkit.evaluation.completion``) on the test split: ``--num-images`` images scored at every
   pixel with 1, 5, 10, 20, 50 and 100 % of their pixels observed, for every model, kNN (k = 5)
   and the RBF GP fitted per image (at most 200 context pixels);
3. sample diversity of latent models from ``--diversity-context`` pixels (default 10, 100 where
   the image has more, and all of them): mean pairwise RMS distance of 5 samples, and the number
   of distinct classes a logistic-regression digit classifier (fitted on
   ``--classifier-images`` training images) assigns to them;
4. figures, in ``--figures``: the context-fraction plot (``images-<data>[-<models>]-fractions.png``,
   the models named unless they are the default three) and a completion grid per model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from common import cpu_name, train  # sibling scripts: benchmarks/ is on sys.path
from step_time import median_step_ms

from npkit.config import load_config, presets, split_section
from npkit.data import DIGITS_TEST, make_sampler
from npkit.data.faces import make_face_folder
from npkit.data.image_datasets import load_digits, load_mnist
from npkit.evaluation.completion import (
    digit_classifier,
    evaluate_fractions,
    format_fraction_table,
    fraction_tasks,
    sample_diversity,
)
from npkit.objectives import get_objective
from npkit.plot.figures import completion_context_sizes, plot_completion, plot_fractions
from npkit.runs import load_trained

DEFAULT_MODELS = ("cnp", "np", "anp")
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def mnist_folder(arg: str | None) -> Path | None:
    """The folder with the MNIST files: ``--mnist`` ("none": no MNIST), else $NPKIT_DATA(/mnist),
    else ../shared/data/mnist; None when there is none."""
    if arg == "none":
        return None
    candidates = [Path(arg)] if arg else [SHARED_MNIST]
    if not arg and os.environ.get("NPKIT_DATA"):
        candidates[:0] = [Path(os.environ["NPKIT_DATA"]) / "mnist", Path(os.environ["NPKIT_DATA"])]
    for folder in candidates:
        if any((folder / f"t10k-images-idx3-ubyte{gz}").is_file() for gz in ("", ".gz")):
            return folder
    if arg:
        raise SystemExit(f"--mnist {arg}: no MNIST IDX files (t10k-images-idx3-ubyte[.gz]) there")
    return None


def face_folder(runs: Path, num_images: int) -> Path:
    """``runs/faces-<num_images>``, written by ``make_face_folder`` (seed 0) unless it exists."""
    root = runs / f"faces-{num_images}"
    if not (root / "list_eval_partition.txt").is_file():
        shutil.rmtree(root, ignore_errors=True)  # a folder left half-written by a killed run
        make_face_folder(root, num_images=num_images, seed=0)
    return root


def classifier_of(mnist: Path | None, max_images: int):
    """A digit classifier (logistic regression) fitted on up to ``max_images`` training images."""
    images, labels = load_mnist(root=mnist, split="train") if mnist else load_digits()
    n = min(max_images, len(labels) - (0 if mnist else DIGITS_TEST))  # digits: train split only
    return digit_classifier(images[:n], labels[:n]), n


def diversity_sizes(values: list[str] | None, pixels: int) -> list[int | None]:
    """``--diversity-context`` as context sizes: pixel counts in [1, ``pixels``), "all" -> None;
    None: 10 and 100 (those below ``pixels``) and all."""
    if values is None:
        return [s for s in (10, 100) if s < pixels] + [None]
    sizes = []
    for value in values:
        if value == "all":
            sizes.append(None)
        elif value.isdigit() and 1 <= int(value) < pixels:
            sizes.append(int(value))
        else:
            raise SystemExit(f"--diversity-context {value}: expected a pixel count in [1, {pixels - 1}] or 'all'")
    return sizes


def print_diversity(models: dict, samplers: dict, classifier, sizes: list[int | None]) -> None:
    """The sample diversity table of the latent models, each on the test split in its own
    conventions (``samplers``: name -> sampler) from ``sizes`` context pixels (None: every
    pixel); ``classifier``: (model, images it was fitted on), or None (no classes: the pairwise
    distance only)."""
    n = min(16, len(next(iter(samplers.values())).images))
    print(f"\nsample diversity: 5 samples per image, {n} test images; pairwise = mean pairwise RMS distance", end="")
    if classifier is None:
        print("\n\n| model | context | pairwise |\n|---|---|---|")
    else:
        print(
            f", classes = distinct classes among the 5 (logistic regression on {classifier[1]} training images), "
            "true = fraction of samples classified as the real image is\n\n| model | context | pairwise | classes | "
            "true |\n|---|---|---|---|---|"
        )
    for name, model in models.items():
        if model.is_latent:
            fitted = None if classifier is None else classifier[0]
            for size, d in sample_diversity(model, samplers[name], sizes, num_images=n, classifier=fitted).items():
                stats = f"{d['pairwise_rms']:.4f}"
                if fitted is not None:
                    stats += f" | {d['distinct_classes']:.2f} | {d['true_class']:.2f}"
                print(f"| {name} | {size} | {stats} |")


def eval_split(run: Path, root: Path | None):
    """(data preset, test sampler) in the conventions ``run`` was trained with: "mnist" has
    coords and values in [0, 1], "mnist-bnp" coords in [-1, 1] and values - 0.5, ...; the same
    images in the same order whatever the conventions."""
    name, options = split_section(load_config(run / "config.yaml")["data"])
    options.pop("split", None)
    if root:
        options["root"] = str(root)
    return name, make_sampler(name, split="test", **options)


def fraction_results(models: dict, samplers: dict, baseline, args: argparse.Namespace) -> dict:
    """`evaluate_fractions`: each model on tasks in its own conventions, kNN and the fitted GP on
    ``baseline``'s; the tasks share images and pixels (seed 0), and neither tar_ll nor MSE changes
    with a shift of the values or a scale of the coordinates."""
    options = {"num_samples": args.samples, "fit_restarts": args.gp_restarts}
    results = {}
    for name, model in models.items():
        tasks = fraction_tasks(samplers[name], num_images=args.num_images, batch_size=16, seed=0)
        results[name] = evaluate_fractions({name: model}, tasks, gp=False, progress=True, **options)[name]
    tasks = fraction_tasks(baseline, num_images=args.num_images, batch_size=16, seed=0)
    return results | evaluate_fractions({}, tasks, progress=True, **options)


def speed_worker(args: argparse.Namespace) -> dict:
    """Median ms per training step of the run's model and objective, and this process's peak RSS."""
    config = load_config(Path(args.worker) / "config.yaml")
    model = load_trained(args.worker)
    name, options = split_section(config["data"])
    sampler = make_sampler(name, **options)
    objective, objective_options = split_section(config["objective"])
    loss_fn = get_objective(objective, model, **objective_options)
    batch_size = config["train"]["batch_size"]
    generator = torch.Generator().manual_seed(0)
    batches = [sampler.sample(batch_size, generator) for _ in range(args.speed_steps + 5)]
    model.train()
    ms = median_step_ms(model, loss_fn, batches)
    return {
        "ms_per_step": ms,
        "images_per_s": batch_size / ms * 1000,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params": sum(p.numel() for p in model.parameters()),
        "batch_size": batch_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--runs", default="runs/images", help="folder of the training runs (resumed, reused)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch (default: the preset's)")
    parser.add_argument("--mnist", default=None, help="folder with the MNIST IDX files ('none': use the 8x8 digits)")
    parser.add_argument("--celeba", default=None, help="folder in CelebA's layout (img_align_celeba/, partition file)")
    parser.add_argument("--faces", type=int, default=None, help="use N generated face-like images in CelebA's layout")
    parser.add_argument("--num-images", type=int, default=64, help="test images per context fraction")
    parser.add_argument("--samples", type=int, default=50, help="latent samples in evaluation")
    parser.add_argument("--gp-restarts", type=int, default=4, help="fitted GP: random restarts per image")
    parser.add_argument("--speed-steps", type=int, default=20, help="timed training steps per model")
    parser.add_argument("--classifier-images", type=int, default=10000)
    parser.add_argument(
        "--diversity-context", nargs="+", help="context pixels of the diversity table, or 'all' (default: 10 100 all)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (NPKIT_THREADS)")
    parser.add_argument("--figures", default="docs/figures", help="where the figures go")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["NPKIT_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(speed_worker(args)))
        return

    if args.celeba and args.faces:
        raise SystemExit("--celeba and --faces: choose one (a CelebA folder, or generated faces)")
    faces = args.celeba or (face_folder(Path(args.runs), args.faces) if args.faces else None)
    mnist = None if faces else mnist_folder(args.mnist)
    root = faces or mnist
    data = "celeba" if faces else "mnist" if mnist else "digits"
    label = "faces" if args.faces else data  # names the runs and figures
    print(f"command: python benchmarks/images.py {' '.join(sys.argv[1:])}")
    print(f"machine: {cpu_name()}, {args.threads} torch thread(s), torch {torch.__version__}")
    print(f"data: {data} ({root or 'scikit-learn, bundled'}{'; generated face-like images' if args.faces else ''})\n")
    test = make_sampler(data, split="test", **({"root": str(root)} if root else {}))  # the baselines'
    diversity = diversity_sizes(args.diversity_context, test.shape[0] * test.shape[1])  # checked before training

    runs, speed = {}, {}
    for name in args.models:
        preset = f"{data}-{name}"
        if preset not in presets():
            raise SystemExit(f"no preset {preset}; expected one of {presets()}")
        sets = ([f"data.root={root}"] if root else []) + ["train.progress=false"]
        if args.steps is not None:
            sets.append(f"train.steps={args.steps}")
        if args.batch_size is not None:
            sets.append(f"train.batch_size={args.batch_size}")
        suffix = f"-{args.steps}" if args.steps is not None else ""
        suffix += f"-batch{args.batch_size}" if args.batch_size is not None else ""
        run = Path(args.runs) / (preset.replace(data, label, 1) + suffix)
        train(preset, run, sets)
        runs[name] = run
        worker = [sys.executable, __file__, "--worker", str(run), "--speed-steps", str(args.speed_steps)]
        worker += ["--threads", str(args.threads)]
        speed[name] = json.loads(subprocess.run(worker, check=True, capture_output=True, text=True).stdout)

    print("| model | params | steps x batch | ms/step (median) | images/s | peak RSS MB |\n|---|---|---|---|---|---|")
    for name, run in runs.items():
        s, steps = speed[name], load_config(run / "config.yaml")["train"]["steps"]
        print(
            f"| {name} | {s['params']:,} | {steps:,} x {s['batch_size']} | {s['ms_per_step']:.1f} | "
            f"{s['images_per_s']:.0f} | {s['peak_mb']:.0f} |"
        )

    samplers = {name: eval_split(run, root)[1] for name, run in runs.items()}
    models = {name: load_trained(run) for name, run in runs.items()}
    results = fraction_results(models, samplers, test, args)
    print(
        f"\n{test.source}: {args.num_images} images scored at every pixel, observed at a random fraction of "
        f"them; per-pixel marginal log-likelihood (± standard error over batches of 16), {args.samples} latent "
        "samples, fitted GP on at most 200 context pixels\n"
    )
    print(format_fraction_table(results, "tar_ll") + "\n\n" + format_fraction_table(results, "mse"))

    classifier = None if faces else classifier_of(mnist, args.classifier_images)
    print_diversity(models, samplers, classifier, diversity)

    figures = Path(args.figures)
    title = f"{label}: models after their training budget vs kNN and a fitted GP ({args.num_images} test images)"
    models_tag = "" if tuple(args.models) == DEFAULT_MODELS else "-" + "-".join(args.models)
    written = [plot_fractions(results, figures / f"images-{label}{models_tag}-fractions.png", title=title)]
    for name, model in models.items():
        path = figures / f"images-{label}-{name}-completion.png"
        written.append(
            plot_completion(
                model,
                samplers[name],
                samplers[name].images[0],
                path,
                completion_context_sizes(test.shape[0] * test.shape[1]),
                title=f"{name} on {test.source} image 0",
            )
        )
    print("\n" + "\n".join(f"wrote {p}" for p in written))


if __name__ == "__main__":
    main()
