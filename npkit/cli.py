"""``npkit train | eval | plot``: the command line over fit, evaluate and the plots.

npkit train quickstart --run-dir runs/qs --set train.steps=500
npkit eval runs/qs
npkit plot runs/qs
npkit diagnose runs/qs
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from pathlib import Path

import yaml

from npkit.config import apply_overrides, load_config, presets, section_config, split_section


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set train.steps=500 --set model.hidden_dim=64 "
        "(values are parsed as YAML; null resets a key to its default; repeatable)",
    )


def _run_config(run_dir: Path, overrides: list[str]) -> dict:
    from npkit.runs import RUN_CONFIG

    path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise ValueError(f"{run_dir} is not an npkit run folder (no {RUN_CONFIG}); train one with `npkit train`")
    return _checked(apply_overrides(load_config(path), overrides))


def _sampler(config: dict, kernel: str | None = None):
    from npkit.data import make_sampler

    name, options = split_section(config["data"])
    if kernel is not None:
        options["kernel"] = kernel
    return make_sampler(name, **options)


def _eval_sampler(config: dict):
    """The sampler of evaluation and plots: the data section with ``eval.data`` on top; image
    presets with splits take ``split: test`` unless ``eval.data`` names one."""
    from npkit.data import PRESETS, make_sampler, preset_options

    name, options = split_section(config["data"])
    overrides = dict(section_config(config, "eval").data or {})
    if name in PRESETS and "split" in preset_options(name)[1]:
        overrides.setdefault("split", "test")
    return make_sampler(name, **{**options, **overrides})


def _checked(config: dict) -> dict:
    """``config`` once its data and model options are checked (names, types, values) and the
    samplers of its evaluation kernels build, so that a bad value stops a command before it
    starts work. (``npkit.config`` checks the train, eval and plot sections; these need torch.)"""
    from npkit.data import PRESETS, preset_options
    from npkit.models import MODELS
    from npkit.options import check_options, from_options

    data, data_options = split_section(config["data"])
    if data in PRESETS:  # else make_sampler names the presets
        data_options.pop("kernel", None)  # make_sampler checks the kernel
        cls, loader_args = preset_options(data)  # loader_args (MNIST's root, split) choose the data
        check_options(cls, {k: v for k, v in data_options.items() if k not in loader_args}, "data")
    _sampler(config)
    _eval_sampler(config)
    for kernel in section_config(config, "eval").kernels:
        _sampler(config, kernel)
    name, options = split_section(config["model"])
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    from_options(MODELS[name].config_class, options, "model", qualify=True)
    if name == "statistician" and config["train"].get("eval_every") is not None:
        raise ValueError(
            "train.eval_every evaluates neural processes; leave it null for the statistician (see `npkit eval`)"
        )
    return config


def _every_class_sampler(config: dict, sampler):
    """For a point-set or class-set run (``sampler``: its evaluation sampler), the evaluation
    sampler with every class (for few-shot and figures); None for other runs."""
    from npkit.data import ClassSets, PointSets

    if not isinstance(sampler, (PointSets, ClassSets)):
        return None
    return _eval_sampler(
        {**config, "eval": {**config["eval"], "data": {**(config["eval"].get("data") or {}), "classes": None}}}
    )


def _check_writable(folder: Path, what: str) -> None:
    """Fail before any work when ``folder`` (or the first existing parent) cannot be written."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{what} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {folder}: {existing} is not writable; pick a folder you can write to")


def cmd_train(args: argparse.Namespace) -> None:
    import torch
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    from npkit.models import build_model
    from npkit.runs import RUN_CONFIG, holds_run, latest_checkpoint, model_dir, run_lock
    from npkit.train import TrainConfig, check_resume, fit

    run_dir = Path(args.run_dir)
    if args.extend and not args.resume:
        raise ValueError("--extend continues a run: use it with --resume")
    if not args.resume and args.config is None:
        raise ValueError("give a config preset or YAML file (or --resume with an existing --run-dir)")
    if args.resume:
        config = _run_config(run_dir, args.overrides)
    else:
        config = _checked(apply_overrides(load_config(args.config), args.overrides))
    _check_writable(run_dir, "--run-dir")
    rank0 = rank_zero_only.rank == 0
    with run_lock(run_dir) if rank0 else nullcontext():  # settings are checked: now the folder is ours
        if not args.resume and rank0 and holds_run(run_dir):
            raise ValueError(f"{run_dir} already holds a run; use --resume to continue it or pick another --run-dir")
        torch.manual_seed(config["train"].get("seed", 0))
        name, model_options = split_section(config["model"])
        model = build_model(name, **model_options)
        objective, objective_options = split_section(config["objective"])
        data = _sampler(config)
        if args.resume and not args.extend:  # refuse changed settings before config.yaml is rewritten
            cfg = TrainConfig.from_dict(config["train"])
            check_resume(latest_checkpoint(run_dir), model, cfg, objective, objective_options, data)
        if rank0:
            (run_dir / RUN_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
        options = dict(run_dir=run_dir, resume=args.resume, extend=args.extend, **config["train"])
        fit(model, data, objective, objective_options, **options)
    if rank0:  # one line, also under DDP
        print(f"trained {name}: {sum(p.numel() for p in model.parameters()):,} parameters -> {model_dir(run_dir)}")


def cmd_eval(args: argparse.Namespace) -> None:
    import torch

    from npkit.data import ImageSampler
    from npkit.data.gp import PERIODIC_KERNELS
    from npkit.evaluation.metrics import cached_eval_set, evaluate, evaluate_gp, format_table
    from npkit.files import atomic_write, write_json
    from npkit.runs import load_trained
    from npkit.train import default_threads

    torch.set_num_threads(default_threads())  # as training: more threads than free cores collapse
    run_dir = Path(args.run_dir)
    config = _run_config(run_dir, args.overrides)
    _check_writable(run_dir, "run folder")  # metrics.json goes there: fail before the work, not after
    model = load_trained(run_dir)
    ev = section_config(config, "eval")
    data_name = config["data"]["name"]
    sampler = _eval_sampler(config)
    if isinstance(sampler, ImageSampler):
        _eval_images(run_dir, model, sampler, ev)
        return
    if model.name == "statistician":
        from npkit.evaluation.statistician import evaluate_sets

        text, results = evaluate_sets(
            model, sampler, ev.num_batches * ev.batch_size, ev.seed, _every_class_sampler(config, sampler)
        )
        print(text)
        write_json(run_dir / "metrics.json", {"protocol": text.splitlines()[0], "results": results})
        atomic_write(run_dir / "metrics.txt", lambda tmp: tmp.write_text(text + "\n"))
        print(f"wrote {run_dir / 'metrics.json'}")
        return
    results: dict[str, dict] = {}
    for kernel in ev.kernels:
        sampler = _sampler(config, kernel)
        evalset = cached_eval_set(sampler, ev.num_batches, ev.batch_size, ev.seed, args.cache_dir)
        label = kernel or data_name
        torch.manual_seed(ev.seed)  # the latent samples too: the same run gives the same numbers
        results[f"{model.name} [{label}]"] = evaluate(
            model, evalset, num_samples=ev.num_samples, progress=True, autoregressive=ev.autoregressive
        )
        if evalset.gps is not None:
            results[f"GP oracle [{label}]"] = evaluate_gp(evalset, "oracle")
            if ev.gp_fitted:
                results[f"GP fitted [{label}]"] = evaluate_gp(
                    evalset, "fitted", fit_steps=ev.fit_steps, fit_restarts=ev.fit_restarts, progress=True
                )
            if ev.gp_bayes and sampler.kernel not in PERIODIC_KERNELS:
                results[f"GP Bayes [{label}]"] = evaluate_gp(evalset, "bayes", prior=sampler, progress=True)
    table = format_table(results)
    header = (
        f"{data_name}: {ev.num_batches} batches x {ev.batch_size} tasks per kernel, seed {ev.seed}, "
        f"{ev.num_samples} latent samples; tar_ll = per-point marginal, tar_ll_joint = joint / Nt"
        + (", tar_ll_ar = autoregressive joint / Nt" if ev.autoregressive else "")
        + (
            "; GP Bayes = hyper-parameters integrated over the task prior (non-periodic kernels), "
            "tar_ll_gaussian = its moment-matched Gaussian"
            if ev.gp_bayes
            else ""
        )
    )
    print(header + "\n" + table)
    write_json(run_dir / "metrics.json", {"protocol": header, "results": results})
    atomic_write(run_dir / "metrics.txt", lambda tmp: tmp.write_text(header + "\n" + table + "\n"))
    print(f"wrote {run_dir / 'metrics.json'}")


def _eval_images(run_dir: Path, model, sampler, ev) -> None:
    """``npkit eval`` on an image run: per-pixel log-likelihood and MSE against the context
    fraction for the model, kNN and the fitted GP (tables, metrics.json, a figure), and the
    diversity of a latent model's samples."""
    from npkit.evaluation.completion import evaluate_fractions, format_fraction_table, fraction_tasks, sample_diversity
    from npkit.evaluation.metrics import GP_MAX_CONTEXT
    from npkit.files import atomic_write, write_json
    from npkit.plot.figures import plot_fractions

    pixels = sampler.shape[0] * sampler.shape[1]
    tasks = fraction_tasks(sampler, ev.fractions, ev.num_images, ev.batch_size, ev.seed)
    options = dict(knn_k=ev.knn_k, gp=ev.gp_fitted, fit_steps=ev.fit_steps, fit_restarts=ev.fit_restarts)
    results = evaluate_fractions({model.name: model}, tasks, ev.num_samples, seed=ev.seed, progress=True, **options)
    header = (
        f"{sampler.source}: {ev.num_images} images (seed {ev.seed}) scored at all {pixels} pixels, observed at a "
        f"random fraction of them; {ev.num_samples} latent samples; tar_ll = per-pixel marginal log-likelihood "
        f"(± standard error over batches of {ev.batch_size}); GP fitted on at most {GP_MAX_CONTEXT} context pixels"
    )
    text = "\n\n".join([header, format_fraction_table(results, "tar_ll"), format_fraction_table(results, "mse")])
    diversity = {}
    if model.is_latent:
        sizes = [s for s in (10, 100) if s < pixels] + [None]
        diversity = sample_diversity(model, sampler, sizes, num_images=min(16, len(sampler.images)), seed=ev.seed)
        spread = ", ".join(f"{size} pixels {d['pairwise_rms']:.4f}" for size, d in diversity.items())
        text += f"\n\nsample diversity (mean pairwise RMS distance of 5 samples): {spread}"
    print(text)
    as_json = {name: {str(f): m for f, m in per.items()} for name, per in results.items()}
    write_json(run_dir / "metrics.json", {"protocol": header, "results": as_json, "sample_diversity": diversity})
    atomic_write(run_dir / "metrics.txt", lambda tmp: tmp.write_text(text + "\n"))
    figure = plot_fractions(
        results, run_dir / "figures" / "context-fractions.png", title=f"{model.name} on {sampler.source}"
    )
    print(f"wrote {run_dir / 'metrics.json'} and {figure}")


def cmd_plot(args: argparse.Namespace) -> None:
    import torch

    from npkit.data import ImageSampler
    from npkit.models import build_model
    from npkit.plot.figures import (
        completion_context_sizes,
        plot_completion,
        plot_predictions,
        plot_prior_samples,
        plot_training_curves,
    )
    from npkit.runs import CheckpointError, checkpoint_state, latest_checkpoint, load_trained, metrics_csv
    from npkit.train import default_threads

    torch.set_num_threads(default_threads())
    run_dir = Path(args.run_dir)
    config = _run_config(run_dir, args.overrides)
    _check_writable(run_dir / "figures", "run folder")
    out = run_dir / "figures"
    pl = section_config(config, "plot")
    model = load_trained(run_dir)
    name, options = split_section(config["model"])
    data = config["data"]["name"]
    trained_on = f"{data}/{config['data']['kernel']}" if config["data"].get("kernel") else data
    try:  # the step of the plotted model: its checkpoint's (the final export is written at the last one)
        steps = int(checkpoint_state(latest_checkpoint(run_dir))["step"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        steps = int(config["train"].get("steps", 0))
    trained = f"after {steps:,} training steps on {trained_on}"
    written = []
    image_sampler = _eval_sampler(config)
    images = isinstance(image_sampler, ImageSampler)
    sets = name == "statistician"
    if sets:  # posterior means of the untrained and trained model; digits: summaries and samples
        from npkit.plot.sets import plot_statistician

        torch.manual_seed(config["train"].get("seed", 0))  # the initial model of the run
        ev = section_config(config, "eval")
        untrained, every_class = build_model(name, **options), _every_class_sampler(config, image_sampler)
        written += plot_statistician(
            model, untrained, image_sampler, out, ev.num_batches * ev.batch_size, pl.seed, every_class, pl.num_tasks
        )
    if images:  # completions of plot.num_tasks images drawn with plot.seed
        generator = torch.Generator().manual_seed(pl.seed)
        picks = torch.randperm(len(image_sampler.images), generator=generator)[: pl.num_tasks].tolist()
        sizes = completion_context_sizes(image_sampler.shape[0] * image_sampler.shape[1])
        for i, index in enumerate(picks):
            written.append(
                plot_completion(
                    model,
                    image_sampler,
                    image_sampler.images[index],
                    out / f"completion-{i}.png",
                    context_sizes=sizes,
                    num_samples=pl.num_samples,
                    seed=pl.seed + i,
                    title=f"{name} {trained}: completion of {image_sampler.source} image {index}",
                )
            )
    for kernel in () if images or sets else config["eval"]["kernels"]:  # images: the completions above
        sampler = _sampler(config, kernel)
        generator = torch.Generator().manual_seed(pl.seed)
        if hasattr(sampler, "sample_with_truth"):  # GP tasks: the oracle is drawn too
            batch, truth = sampler.sample_with_truth(pl.num_tasks, generator)
        else:
            batch, truth = sampler.sample(pl.num_tasks, generator), None
        tasks = f"{kernel} GP tasks" if kernel else f"{data} tasks"
        written.append(
            plot_predictions(
                model,
                batch,
                out / f"predictions-{kernel or data}.png",
                num_tasks=pl.num_tasks,
                num_samples=pl.num_samples,
                gp=truth,
                x_range=tuple(pl.x_range) if pl.x_range else None,
                seed=pl.seed,
                title=f"{name} {trained}: predictions on {tasks}",
                label=name,
            )
        )
    torch.manual_seed(config["train"].get("seed", 0))
    x_range = tuple(pl.x_range) if pl.x_range else getattr(_sampler(config), "x_range", (-2.0, 2.0))
    untrained = build_model(name, **options)
    priors = (
        (untrained, "prior-untrained.png", f"{name} prior\nuntrained"),
        (model, "prior-trained.png", f"{name} prior\n{trained}"),
    )
    if images or sets:
        priors = ()  # prior plots draw 1D functions
    for prior_model, file, title in priors:
        written.append(plot_prior_samples(prior_model, out / file, x_range=x_range, seed=pl.seed, title=title))
    if metrics_csv(run_dir).is_file():
        title = f"{name} training curves: {steps:,} steps on {trained_on}"
        written.append(plot_training_curves(metrics_csv(run_dir), out / "training-curves.png", title=title))
    for path in written:
        print(f"wrote {path}")


def cmd_diagnose(args: argparse.Namespace) -> None:
    import torch

    from npkit.data import ImageSampler
    from npkit.evaluation.diagnostics import diagnose
    from npkit.files import write_json
    from npkit.runs import load_trained
    from npkit.train import default_threads

    torch.set_num_threads(default_threads())
    run_dir = Path(args.run_dir)
    config = _run_config(run_dir, args.overrides)
    _check_writable(run_dir, "run folder")
    model = load_trained(run_dir)
    if not model.is_latent:
        raise ValueError(f"{run_dir} holds a {model.name}, which has no latent variable to diagnose")
    sampler = _sampler(config)  # the training distribution; images: the evaluation split
    if isinstance(sampler, ImageSampler):
        sampler = _eval_sampler(config)
    d = diagnose(model, sampler, num_tasks=args.num_tasks, num_samples=args.num_samples, seed=args.seed)
    print(f"{model.name} on {config['data']['name']} ({args.num_tasks} tasks, seed {args.seed}): {d}")
    write_json(run_dir / "diagnostics.json", d.as_dict())
    print(f"wrote {run_dir / 'diagnostics.json'}")


def cmd_explore(args: argparse.Namespace) -> None:
    import torch

    from npkit.explore import serve
    from npkit.train import default_threads

    torch.set_num_threads(default_threads())
    if not 1 <= args.max_points:
        raise ValueError(f"--max-points must be >= 1, got {args.max_points}")
    try:
        serve(args.run_dirs, host=args.host, port=args.port, max_points=args.max_points)
    except KeyboardInterrupt:
        pass


def _run_command(sub, name: str, func, help: str, description: str) -> argparse.ArgumentParser:
    """A sub-command that reads one run folder: the ``run_dir`` argument, ``--set`` overrides and ``func``."""
    command = sub.add_parser(name, help=help, description=description)
    command.add_argument("run_dir", help="a folder written by `npkit train`")
    _add_overrides(command)
    command.set_defaults(func=func)
    return command


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    parser = argparse.ArgumentParser(prog="npkit", description="Neural Processes: train, evaluate and plot.")
    try:
        installed = version("npkit")
    except PackageNotFoundError:
        installed = "unknown (not installed)"
    parser.add_argument("--version", action="version", version=f"npkit {installed}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train a model from a YAML preset or file",
        description=f"Train a model. Presets: {', '.join(presets())}. Writes the run folder: "
        "config.yaml, checkpoints/, logs/ (CSV), model/ (safetensors + JSON).",
    )
    train.add_argument("config", nargs="?", help="preset name or YAML path (omit with --resume)")
    train.add_argument("--run-dir", required=True, help="folder for checkpoints, logs and the final model")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its last checkpoint (bit-identical to an uninterrupted run on "
        "the same hardware and thread count); settings that change the trajectory are refused",
    )
    train.add_argument(
        "--extend",
        action="store_true",
        help="with --resume: allow more train.steps and restart the cosine schedule from train.lr over the "
        "remaining steps",
    )
    _add_overrides(train)
    train.set_defaults(func=cmd_train)

    ev = _run_command(
        sub,
        "eval",
        cmd_eval,
        help="evaluate a trained run against the GP oracle and a fitted GP",
        description="Log-likelihoods (context/target, per point), MSE and 95% coverage on a fixed "
        "seeded evaluation set per kernel, beside the exact GP oracle and a GP fitted per "
        "task by marginal likelihood. Prints a table, writes metrics.json/metrics.txt.",
    )
    ev.add_argument(
        "--cache-dir", default=None, help="where evaluation sets are cached (default: $NPKIT_CACHE or ~/.cache/npkit)"
    )
    _run_command(
        sub,
        "plot",
        cmd_plot,
        help="write PNG figures of a trained run",
        description="Predictions with function samples, 2-sigma bands, context points and the GP "
        "oracle; prior samples of the untrained and trained model; training curves.",
    )
    diag = _run_command(
        sub,
        "diagnose",
        cmd_diagnose,
        help="posterior-collapse diagnostics of a trained latent model",
        description="Posterior std of z given the context and given context + targets, their KL, active "
        "latent units, the mutual information between z and the task, the spread of function samples "
        "far from the data (1D: x in [-4, -3]) and a verdict (see npkit.evaluation.diagnostics). "
        "Writes diagnostics.json.",
    )
    diag.add_argument("--num-tasks", type=int, default=256, help="tasks drawn from the run's data (default 256)")
    diag.add_argument("--num-samples", type=int, default=100, help="function samples for the far spread")
    diag.add_argument("--seed", type=int, default=0)

    explore = sub.add_parser(
        "explore",
        help="condition trained models by clicking, in the browser",
        description="Serve a local page (127.0.0.1, a free port unless --port) where a click adds a context point "
        "and the predictive, function samples and the GP oracle update at once; image runs: reveal pixels by "
        "painting. Needs the explore extra (pip install 'npkit[explore]'). Reads the run folders, never writes.",
    )
    explore.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="folders written by `npkit train` or `NPRegressor.save`"
    )
    explore.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    explore.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    explore.add_argument("--max-points", type=int, default=1000, help="most context points a request may send")
    explore.set_defaults(func=cmd_explore)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure is one line on stderr (exit 2), an interrupt exit 130."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError) as err:
        print(f"npkit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        print(f"npkit {args.command}: error:{where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # TrainingInterrupted says where the checkpoint is
        run_dir = getattr(args, "run_dir", None)
        resume = f"; resume with: npkit train --resume --run-dir {run_dir}" if args.command == "train" else ""
        print(f"npkit {args.command}: {err or 'interrupted'}{resume}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
