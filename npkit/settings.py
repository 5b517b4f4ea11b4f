"""The settings of the run-config sections ``train``, ``eval`` and ``plot``: validated dataclasses.

Importing this module does not import torch, so ``npkit.config`` checks these sections when a
config is loaded or overridden (``EvalConfig`` imports ``npkit.data`` only to check kernel names).
Build them from a dict with ``from_dict``, which refuses unknown keys and wrongly typed values.
"""

from __future__ import annotations

from dataclasses import dataclass

from npkit.options import check_positive_ints, from_options


@dataclass
class TrainConfig:
    """Loop settings of `npkit.fit` (the ``train`` section of a run config).

    ``fit`` also takes these fields as keywords (``fit(model, data, steps=2000, lr=1e-3)``).

    Attributes:
        steps: optimiser steps in all (the last step of a resumed run).
        batch_size: tasks per batch (per process under DDP).
        lr: Adam's learning rate (the peak of the cosine schedule).
        schedule: "cosine" (decay to 0 over ``schedule_steps``) or "constant".
        schedule_steps: the cosine horizon (None: ``steps``).
        grad_clip: maximal gradient norm (None: no clipping).
        seed: seeds every batch and latent sample, from (seed, step, rank), so a resumed run
            continues exactly.
        log_every: steps between logged rows (``train/loss``, ``train/log_lik``, ``train/kl``,
            ``lr``).
        eval_every: steps between evaluations on ``eval_batches`` fixed batches (``eval/ctx_ll``,
            ``eval/tar_ll`` columns; None: none).
        eval_batches: batches of the loop's evaluation set.
        eval_samples: z samples per prediction in those evaluations (latent models).
        checkpoint_every: steps between checkpoints (with a ``run_dir``).
        keep_checkpoints: the newest checkpoints kept; older ones are deleted.
        accelerator: Lightning Fabric's accelerator: "auto" uses a GPU when one is present,
            else the CPU; "cpu", "gpu", "cuda", "mps".
        devices: Fabric's devices per node (``devices=2, strategy="ddp"`` runs DDP).
        strategy: Fabric's strategy ("auto", "ddp", ...).
        precision: Fabric's precision ("32-true", "bf16-mixed", ...).
        threads: torch intra-op threads per process (None: ``$NPKIT_THREADS``, else 1; the
            small networks of NPs gain little from more, and more collapse on shared cores).
        diagnose_every: log the collapse diagnostics of ``npkit.diagnose`` (``diag/...``
            columns) every that many steps (latent models; None: never).
        compile: ``torch.compile`` the training step (model and objective, dynamic shapes:
            tasks vary in size); off by default: on a CPU the first step compiles for about a
            minute, and ``benchmarks/step_time.py --compile`` measures whether it pays on your
            machine.
        progress: show a progress bar.
    """

    steps: int = 1000
    batch_size: int = 16
    lr: float = 5e-4
    schedule: str = "cosine"
    schedule_steps: int | None = None
    grad_clip: float | None = None
    seed: int = 0
    log_every: int = 10
    eval_every: int | None = None
    eval_batches: int = 8
    eval_samples: int = 16
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"
    threads: int | None = None
    diagnose_every: int | None = None
    compile: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_positive_ints(self, ("steps", "batch_size", "log_every", "eval_batches", "eval_samples"))
        check_positive_ints(self, ("checkpoint_every", "keep_checkpoints"))
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        for name in ("threads", "diagnose_every"):
            if getattr(self, name) is not None:
                check_positive_ints(self, (name,))

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return from_options(cls, values, "train")


@dataclass
class EvalConfig:
    """``npkit eval``: per kernel, ``num_batches`` batches of ``batch_size`` tasks drawn with
    ``seed`` (which also seeds the latent samples), ``num_samples`` z samples per prediction;
    beside the model the GP oracle and, with ``gp_fitted``, a GP fitted per task by
    ``fit_steps`` Adam steps (0: GPyTorch's defaults) from ``fit_restarts`` starts;
    ``autoregressive`` adds the model's autoregressive joint ``tar_ll_ar`` (``npkit.autoregressive``);
    ``gp_bayes`` the Bayes-optimal GP, hyper-parameters integrated over the data's own prior
    (``evaluate_gp(kind="bayes")``; GP data with non-periodic kernels, about 0.4 s per batch).
    ``kernels``: the GP kernels (names in ``npkit.data.KERNELS``) to evaluate on in turn, None
    in the list for the data preset's own; ``kernels=None`` uses the data section's kernel
    (``npkit.config`` fills it in when a config is loaded).

    Image runs (``npkit.evaluation.completion``): ``num_images`` images scored at every pixel from each
    context ``fractions`` of their pixels, beside kNN with ``knn_k`` neighbours and the fitted
    GP; ``data`` overrides the data section for evaluation and plots (image presets with splits
    default to ``{split: test}``)."""

    kernels: list[str | None] | None = None
    num_batches: int = 50
    batch_size: int = 16
    seed: int = 1234
    num_samples: int = 50
    gp_fitted: bool = True
    gp_bayes: bool = False
    autoregressive: bool = False
    fit_steps: int = 100
    fit_restarts: int = 4
    fractions: list[float] = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
    num_images: int = 64
    knn_k: int = 5
    data: dict | None = None

    def __post_init__(self) -> None:
        check_positive_ints(self, ("num_batches", "batch_size", "num_samples", "fit_restarts", "num_images", "knn_k"))
        if not self.fractions or any(isinstance(f, bool) or not 0 < f <= 1 for f in self.fractions):
            raise ValueError(
                f"fractions must be a non-empty list of context fractions in (0, 1], got {self.fractions!r}"
            )
        if self.data is not None and not isinstance(self.data, dict):
            raise ValueError(f"eval.data must be a mapping of data options (e.g. {{split: test}}), got {self.data!r}")
        if isinstance(self.fit_steps, bool) or not isinstance(self.fit_steps, int) or self.fit_steps < 0:
            raise ValueError(f"fit_steps must be an integer >= 0, got {self.fit_steps!r}")
        if self.kernels is not None:
            if not isinstance(self.kernels, (list, tuple)) or not self.kernels:
                raise ValueError(f"kernels must be a non-empty list of kernel names (or None), got {self.kernels!r}")
            from npkit.data import KERNELS

            unknown = [k for k in self.kernels if k is not None and k not in KERNELS]
            if unknown:
                raise ValueError(f"kernels has unknown kernel(s) {unknown}; expected some of {sorted(KERNELS)}")

    @classmethod
    def from_dict(cls, values: dict) -> EvalConfig:
        return from_options(cls, values, "eval")


@dataclass
class PlotConfig:
    """``npkit plot``: ``num_tasks`` tasks per evaluation kernel, each with ``num_samples``
    function samples of latent models, all drawn with ``seed``; 1D plots span ``x_range``
    (default: predictions the tasks' inputs padded by 10 %, prior samples the data's range)."""

    num_tasks: int = 4
    num_samples: int = 10
    seed: int = 0
    x_range: list[float] | None = None

    def __post_init__(self) -> None:
        check_positive_ints(self, ("num_tasks", "num_samples"))
        if self.x_range is not None and (len(self.x_range) != 2 or not self.x_range[0] < self.x_range[1]):
            raise ValueError(f"plot.x_range must be [low, high] with low < high, got {self.x_range!r}")

    @classmethod
    def from_dict(cls, values: dict) -> PlotConfig:
        return from_options(cls, values, "plot")
