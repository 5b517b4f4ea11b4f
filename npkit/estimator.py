"""``NPRegressor``: a Neural Process behind scikit-learn's fit / predict, for your own data.

    est = NPRegressor("anp", steps=2000).fit(X, y, groups=station)   # X [n, x_dim], y [n] or [n, y_dim]
    pred = est.predict(X_new, context=(Xc, yc))                      # a Distribution, in y's units
    pred.mean, pred.stddev, pred.log_prob(y_new)

Inputs and outputs are standardised with the means and standard deviations of the training data
(learned in ``fit``, saved with the model), and predictions are mapped back: y = mean + std * y'.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import Tensor
from torch.distributions import Distribution

from npkit.data.arrays import GroupedTasks, as_rows, bad_rows, check_rows
from npkit.files import read_json, write_json
from npkit.models import build_model
from npkit.predictive import Rescaled, SampleMixture, sample_functions
from npkit.rng import seeded
from npkit.runs import CheckpointError, load_model, save_model

FORMAT = "npkit-regressor"
VERSION = 1
STATE = "estimator.json"


class NPRegressor(BaseEstimator):
    """A Neural Process regressor behind scikit-learn's fit / predict, trained on groups of rows.

    Each group of rows is one function (a series, a station, a curve). Inputs and outputs are
    standardised with the training data's means and stds, and predictions mapped back to y's
    units.

    Args:
        model: a name for `npkit.build_model` ("anp", "np", "cnp", ...).
        steps: training steps (`npkit.fit`).
        batch_size: tasks per training batch.
        lr: Adam's learning rate.
        model_options: options of the model's config (x_dim and y_dim come from the data).
        objective: the objective, as in `npkit.fit` ("auto": nll or elbo).
        objective_options: its keyword arguments.
        train_options: other `TrainConfig` fields
            (``{"schedule": "constant", "grad_clip": 1.0}``).
        num_context: (low, high) of the context size per task (`GroupedTasks`).
        num_target: (low, high) of the target size per task.
        window: points per task: random runs of that many consecutive points of a group
            (None: whole groups).
        missing: rows whose y has NaN: "raise" refuses them, "mask" drops them.
        num_samples: z samples per prediction of latent models (the predictive is their
            mixture), drawn with a generator seeded by ``seed``, so repeated predictions agree.
        seed: seeds the model's initialisation, the training batches and the predictions.
        progress: show a progress bar while training.
        run_dir: a folder that keeps logs and checkpoints (None: none).
        resume: continue an interrupted fit from the checkpoints in ``run_dir``.

    Examples:
        >>> est = npkit.NPRegressor("anp", steps=2000).fit(X, y, groups=station)
        >>> pred = est.predict(X_new, context=(Xc, yc))    # a Distribution, in y's units
        >>> pred.mean, pred.stddev, est.score(X_new, y_new, context=(Xc, yc))
    """

    def __init__(
        self,
        model: str = "anp",
        steps: int = 2000,
        batch_size: int = 16,
        lr: float = 5e-4,
        model_options: dict | None = None,
        objective: str = "auto",
        objective_options: dict | None = None,
        train_options: dict | None = None,
        num_context: tuple[int, int] = (3, 50),
        num_target: tuple[int, int] = (1, 50),
        window: int | None = None,
        missing: str = "raise",
        num_samples: int = 32,
        seed: int = 0,
        progress: bool = True,
        run_dir: str | Path | None = None,
        resume: bool = False,
    ) -> None:
        self.model = model
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.model_options = model_options
        self.objective = objective
        self.objective_options = objective_options
        self.train_options = train_options
        self.num_context = num_context
        self.num_target = num_target
        self.window = window
        self.missing = missing
        self.num_samples = num_samples
        self.seed = seed
        self.progress = progress
        self.run_dir = run_dir
        self.resume = resume

    # ---------------------------------------------------------------- training

    def fit(self, X, y, groups=None) -> NPRegressor:
        """Train on rows X [n, x_dim] and y [n] or [n, y_dim] (numpy or torch); ``groups`` [n]
        labels the function each row belongs to. Returns self."""
        from dataclasses import fields

        from npkit.train import TrainConfig, fit

        given = set(self.train_options or {})
        clash = {"steps", "batch_size", "lr", "seed", "progress"} & given
        if clash:
            raise ValueError(f"train_options {sorted(clash)} are NPRegressor parameters: set them there")
        unknown = given - {f.name for f in fields(TrainConfig)}
        if unknown:
            raise ValueError(f"train_options {sorted(unknown)} are not TrainConfig fields (see npkit.TrainConfig)")
        X, y_rows = as_rows("X", X), as_rows("y", y)
        observed = check_rows(X, y_rows, self.missing)
        if not observed.any():
            raise ValueError(f"y has no observed row: all {len(y_rows)} are missing (NaN)")
        self.n_features_in_, self.y_dim_, self.y_vector_ = X.shape[1], y_rows.shape[1], np.ndim(y) == 1
        self.scaling_ = {
            "x_mean": X[observed].mean(0).tolist(),
            "x_std": _std(X[observed]),
            "y_mean": y_rows[observed].mean(0).tolist(),
            "y_std": _std(y_rows[observed]),
        }
        tasks = GroupedTasks.from_arrays(
            self._scale("x", X),
            self._scale("y", y_rows),
            groups,
            missing=self.missing,
            num_context=tuple(self.num_context),
            num_target=tuple(self.num_target),
            window=self.window,
        )
        torch.manual_seed(self.seed)
        options = {**(self.model_options or {}), "x_dim": self.n_features_in_, "y_dim": self.y_dim_}
        self.model_ = build_model(self.model, **options)
        if self.model_.config.likelihood == "bernoulli":  # standardised outputs are real numbers
            raise ValueError("NPRegressor needs a continuous likelihood (gaussian, mixture, student_t), not bernoulli")
        self.history_ = fit(
            self.model_,
            tasks,
            self.objective,
            self.objective_options,
            **(self.train_options or {}),
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed,
            progress=self.progress,
            run_dir=self.run_dir,
            resume=self.resume,
        )
        self.model_.eval()
        return self

    # ---------------------------------------------------------------- prediction

    def predict(self, X, context=None) -> Distribution:
        """p(y | x, context) at the rows X [n, x_dim], in the units of the training y: batch [n],
        event [] (y was a vector) or [y_dim]. ``context``: observed rows ``(Xc, yc)`` of the
        function to predict (None: no observation, the prior predictive). Latent models give the
        equal-weight mixture over ``num_samples`` z ~ p(z | context) (``SampleMixture``)."""
        xc, yc, xt = self._task(X, context)
        with torch.no_grad(), _seeded(self.seed):
            pred = self.model_(xc, yc, xt, **({"num_samples": self.num_samples} if self.model_.is_latent else {}))
        loc, scale = (torch.tensor(self.scaling_[k], dtype=torch.float64) for k in ("y_mean", "y_std"))
        dist = Rescaled(pred, loc, scale, squeeze_event=self.y_vector_)  # the model's head, in y's units
        return SampleMixture(dist) if self.model_.is_latent else dist

    def sample(self, X, context=None, num_samples: int = 10, noise: bool = False, seed: int | None = None) -> Tensor:
        """``num_samples`` functions drawn jointly at the rows X (latent models), [S, n] (y was a
        vector) or [S, n, y_dim], in y's units; ``noise=True`` adds observation noise. ``seed``
        None draws from torch's global generator."""
        xc, yc, xt = self._task(X, context)
        with torch.no_grad(), _seeded(seed):
            draws = sample_functions(self.model_, xc, yc, xt, num_samples, noise=noise)[:, 0]
        draws = self._unscale_y(draws)
        return draws[..., 0] if self.y_vector_ else draws

    def score(self, X, y, context=None) -> float:
        """Mean per-point predictive log-likelihood (1/n sum_i log p(y_i | x_i, context), nats, in
        y's units) of the rows (X, y) under `predict`. Higher is better."""
        y_rows = as_rows("y", y)
        target = torch.as_tensor(y_rows[:, 0] if self.y_vector_ else y_rows, dtype=torch.float64)
        return float(self.predict(X, context).log_prob(target).mean())

    # ---------------------------------------------------------------- files

    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator into the folder ``path``: the model export of
        ``npkit.runs.save_model`` (safetensors + config.json) and ``estimator.json`` (parameters
        and scaling). Returns the folder."""
        self._check_fitted()
        params = self.get_params()
        if not isinstance(params["objective"], str):
            raise ValueError("save needs objective to be a name (a callable cannot be written to JSON)")
        params["run_dir"] = None if params["run_dir"] is None else str(params["run_dir"])
        state = {"format": FORMAT, "version": VERSION, "params": params, "scaling": self.scaling_}
        state |= {"n_features_in": self.n_features_in_, "y_dim": self.y_dim_, "y_vector": self.y_vector_}
        directory = save_model(self.model_, path)
        write_json(directory / STATE, state)
        return directory

    @classmethod
    def load(cls, path: str | Path) -> NPRegressor:
        """An estimator saved by `save`, ready to predict."""
        path = Path(path)
        state = read_json(path / STATE, CheckpointError)
        if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
            raise CheckpointError(f"{path / STATE} is not an NPRegressor file of version {VERSION}")
        params = state["params"]
        params["num_context"], params["num_target"] = tuple(params["num_context"]), tuple(params["num_target"])
        est = cls(**params)
        est.model_ = load_model(path).eval()
        est.scaling_, est.n_features_in_ = state["scaling"], state["n_features_in"]
        est.y_dim_, est.y_vector_ = state["y_dim"], state["y_vector"]
        return est

    # ---------------------------------------------------------------- helpers

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ValueError("this NPRegressor is not fitted yet: call fit(X, y, groups=...) first")

    def _scale(self, part: str, rows: np.ndarray) -> np.ndarray:
        return (rows - np.asarray(self.scaling_[f"{part}_mean"])) / np.asarray(self.scaling_[f"{part}_std"])

    def _unscale_y(self, y: Tensor) -> Tensor:
        mean, std = (torch.tensor(self.scaling_[k], dtype=torch.float64) for k in ("y_mean", "y_std"))
        return mean + std * y.double()

    def _task(self, X, context) -> tuple[Tensor, Tensor, Tensor]:
        """Scaled xc [1, Nc, x_dim], yc [1, Nc, y_dim], xt [1, n, x_dim] in the model's dtype."""
        self._check_fitted()
        xt = self._rows("X", X)
        if context is None:
            xc, yc = xt[:0], np.zeros((0, self.y_dim_))
        else:
            if not isinstance(context, tuple | list) or len(context) != 2:
                raise ValueError(
                    f"context must be a pair (Xc, yc) of observed rows or None, got {type(context).__name__}"
                )
            xc, yc = self._rows("context X", context[0], True), as_rows("context y", context[1], allow_empty=True)
            if yc.shape[1] != self.y_dim_:
                raise ValueError(f"context y must have {self.y_dim_} output(s) per row, got {yc.shape[1]}")
            observed = check_rows(xc, yc, self.missing)
            xc, yc = xc[observed], yc[observed]
        dtype = next(self.model_.parameters()).dtype
        as_task = lambda rows: torch.as_tensor(rows, dtype=dtype).unsqueeze(0)
        return as_task(self._scale("x", xc)), as_task(self._scale("y", yc)), as_task(self._scale("x", xt))

    def _rows(self, name: str, X, allow_empty: bool = False) -> np.ndarray:
        rows = as_rows(name, X, allow_empty=allow_empty)
        if rows.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} must have {self.n_features_in_} feature(s) per row (as in fit), got {rows.shape[1]}"
            )
        if not np.isfinite(rows).all():
            raise ValueError(f"{name} has NaN or inf in rows {bad_rows(~np.isfinite(rows).all(1))}")
        return rows


def _std(rows: np.ndarray) -> list[float]:
    """Per-column standard deviation [dim], 1 where a column is constant (nothing to scale)."""
    std = rows.std(0)
    return np.where(std > 0, std, 1.0).tolist()


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Within this block torch's global generator is seeded with ``seed`` (None: left alone);
    its state is restored afterwards."""
    if seed is None:
        yield
        return
    with seeded(seed):
        yield
