"""One run folder as ``npkit explore`` serves it: its model, its data, and what a page asks of it.

Everything a request can reach is here and takes plain numbers, never a path. The model is read
when the server starts and read again when the run's training saves a newer checkpoint (the
latest complete one: ``npkit.runs.load_trained``); nothing is ever written into the run folder.
Every model call holds one lock (torch's random generator is global to the process) and seeds
torch from the request, so concurrent requests get what sequential ones get.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import torch
from torch import Tensor

from npkit.autoregressive import ar_sample
from npkit.baselines.gp import gp_posterior
from npkit.config import load_config, split_section
from npkit.data import FunctionSampler, ImageSampler, TrueGP, make_sampler
from npkit.data.images import pixel_grid
from npkit.objectives import kl_per_dim
from npkit.predictive import predict
from npkit.runs import RUN_CONFIG, latest_checkpoint, load_trained, model_dir

# Function draws of a deterministic model are autoregressive: this many grid points, drawn in a
# random order one at a time, keep a request fast; the page joins them into curves.
AR_POINTS = 30
START_CONTEXT = 5  # context points of a fresh task
ESTIMATOR = "estimator.json"  # a folder written by NPRegressor.save
MARGINAL_SAMPLES = 32  # latent models: z samples of the per-point predictive (band, log-likelihood)
MODEL_LOCK = threading.Lock()  # one model call at a time: each seeds the global generator


def _version(run_dir: Path) -> str:
    """What identifies the run's current model: the final model, or its latest checkpoint."""
    if model_dir(run_dir).is_dir():
        return "final"
    try:
        return latest_checkpoint(run_dir).name
    except Exception:
        return ""


class ServedRun:
    """A trained (or training) run: ``describe()``, and ``task``, ``predict`` and ``complete`` for
    the page. ``index`` is the only name requests use for it."""

    def __init__(self, run_dir: str | Path, index: int) -> None:
        self.run_dir = Path(run_dir)
        self.index = index
        self.units = (0.0, 1.0, 0.0, 1.0)  # (x mean, x std, y mean, y std): the model's inputs are standardised
        if (self.run_dir / ESTIMATOR).is_file():
            self._from_estimator()
            return
        if not (self.run_dir / RUN_CONFIG).is_file():
            raise ValueError(
                f"{self.run_dir} is not an npkit run folder (no {RUN_CONFIG}) nor a saved NPRegressor (no {ESTIMATOR})"
            )
        config = load_config(self.run_dir / RUN_CONFIG)
        name, options = split_section(config["data"])
        self.data_name = name
        self.sampler = make_sampler(name, **options)
        self.model = load_trained(self.run_dir)
        self.model.eval()
        self.loaded = _version(self.run_dir)
        self.kind = "image" if isinstance(self.sampler, ImageSampler) else "function"
        self.x_range = self._x_range() if self.kind == "function" else None
        if self.kind == "function" and (self.model.config.x_dim != 1 or self.model.config.y_dim != 1):
            raise ValueError(
                f"{self.run_dir}: the 1D page needs x_dim = y_dim = 1, the model has "
                f"{self.model.config.x_dim} and {self.model.config.y_dim}"
            )

    def _from_estimator(self) -> None:
        """A folder written by ``NPRegressor.save`` (your own data): its model and the units it
        standardises with; no task distribution, so no hidden curve and no oracle."""
        from npkit.estimator import NPRegressor

        est = NPRegressor.load(self.run_dir)
        if est.n_features_in_ != 1 or est.y_dim_ != 1:
            raise ValueError(
                f"{self.run_dir}: the 1D page needs one input and one output, the estimator has "
                f"{est.n_features_in_} and {est.y_dim_}"
            )
        scaling = est.scaling_
        self.units = (scaling["x_mean"][0], scaling["x_std"][0], scaling["y_mean"][0], scaling["y_std"][0])
        self.model, self.sampler, self.data_name, self.kind = (
            est.model_.eval(),
            None,
            "own data (NPRegressor)",
            "function",
        )
        self.loaded = _version(self.run_dir)
        xm, xs = self.units[:2]
        self.x_range = (xm - 2.5 * xs, xm + 2.5 * xs)

    # ------------------------------------------------------------------ the run

    def _x_range(self) -> tuple[float, float]:
        """The plotted inputs: a function sampler's range, or that of 32 drawn tasks (own data)."""
        if isinstance(self.sampler, FunctionSampler):
            return tuple(self.sampler.x_range)  # own data trained by `npkit train`: its tasks' range
        batch = self.sampler.sample(32, torch.Generator().manual_seed(0))
        x = batch.x[..., 0] if batch.mask is None else batch.x[..., 0][batch.mask]
        low, high = x.min().item(), x.max().item()
        margin = 0.05 * max(high - low, 1e-6)
        return low - margin, high + margin

    def describe(self) -> dict:
        """What the page shows and checks: names, kind, dimensions, ranges."""
        cfg = self.model.config
        out = {
            "id": self.index,
            "name": self.run_dir.name,
            "family": self.model.name,
            "latent": self.model.is_latent,
            "kind": self.kind,
            "data": self.data_name,
            "x_dim": cfg.x_dim,
            "y_dim": cfg.y_dim,
            "likelihood": getattr(cfg, "likelihood", "gaussian"),
            "checkpoint": self.loaded,
        }
        if self.kind == "function":
            out["x_range"] = list(self.x_range)
            out["oracle"] = hasattr(self.sampler, "sample_with_truth")
            _, _, ym, ys = self.units
            out["y_range"] = [ym - 3 * ys, ym + 3 * ys]
        else:
            height, width = self.sampler.shape
            out.update(height=height, width=width, channels=self.sampler.images.shape[1])
            out["num_images"] = len(self.sampler.images)
        return out

    def _current(self):
        """The model, read again if the run saved a newer one since (call with MODEL_LOCK held)."""
        version = _version(self.run_dir)
        if version and version != self.loaded:
            self.model = load_trained(self.run_dir).eval()
            self.loaded = version
        return self.model

    # ------------------------------------------------------------------ 1D functions

    def task(self, seed: int, grid: int = 200) -> dict:
        """A fresh task of the run's data, from ``seed``: a few context points and the hidden
        true curve at ``grid`` sorted inputs (GP data: one draw of the generating GP, noise
        included, with its hyper-parameters for the oracle)."""
        x, y, gp = self._draw(seed, grid)
        return {
            "seed": seed,
            "context": {"x": x[:START_CONTEXT].tolist(), "y": y[:START_CONTEXT].tolist()},
            "truth": {"x": x[START_CONTEXT:].tolist(), "y": y[START_CONTEXT:].tolist()},
            "gp": None
            if gp is None
            else {"kernel": gp.kernel, "scale": float(gp.scale[0]), "length": float(gp.length[0])},
        }

    def _draw(self, seed: int, grid: int) -> tuple[Tensor, Tensor, TrueGP | None]:
        """x [START_CONTEXT + grid] (the context, then the sorted grid), y alike, and the GP."""
        generator = torch.Generator().manual_seed(seed)
        sampler = self.sampler
        if sampler is None:  # a saved NPRegressor: no task distribution to draw from
            empty = torch.zeros(0, dtype=torch.float64)
            return empty, empty, None
        if isinstance(sampler, FunctionSampler):
            low, high = sampler.x_range
            xc = low + (high - low) * torch.rand(START_CONTEXT, generator=generator, dtype=torch.float64)
            xs = torch.cat([xc, torch.linspace(low, high, grid, dtype=torch.float64)])
            y, gp = sampler.functions(xs.view(1, -1, 1), generator)
            return xs, y.view(-1), gp if isinstance(gp, TrueGP) else None
        batch = sampler.sample(1, generator)  # own data: its points are the truth
        order = batch.xt[0, :, 0].argsort()
        x = torch.cat([batch.xc[0, :, 0], batch.xt[0, order, 0]]).double()
        y = torch.cat([batch.yc[0, :, 0], batch.yt[0, order, 0]]).double()
        return x, y, None

    def predict(self, seed: int, xc: list[float], yc: list[float], grid: int, num_samples: int) -> dict:
        """The predictive at ``grid`` inputs over the run's x range given the context (lists of
        numbers): mean, std, ``num_samples`` function draws (latent z, or autoregressive draws at
        AR_POINTS inputs for deterministic models), the oracle on the same context (GP data), the
        log-likelihood per point of the hidden true curve of task ``seed``, and for latent models
        the posterior std of z and the KL that ``npkit diagnose`` reports."""
        with MODEL_LOCK, torch.no_grad():
            model = self._current()
            torch.manual_seed(seed)
            dtype = next(model.parameters()).dtype
            xm, xs, ym, ys = self.units  # user units -> the model's: (x - xm) / xs, (y - ym) / ys
            as_input = lambda v: torch.as_tensor(v, dtype=torch.float64).view(1, -1, 1)
            ctx_x, ctx_y = as_input(xc), as_input(yc)
            mx, my = ((ctx_x - xm) / xs).to(dtype), ((ctx_y - ym) / ys).to(dtype)
            xq = torch.linspace(*self.x_range, grid, dtype=torch.float64).view(1, -1, 1)
            x_true, y_true, gp = self._draw(seed, grid)
            x_true, y_true = x_true[START_CONTEXT:].view(1, -1, 1), y_true[START_CONTEXT:].view(1, -1, 1)
            # one forward pass for the plotted inputs and the hidden curve's (the same z for both)
            queries = ((torch.cat([xq, x_true], 1) - xm) / xs).to(dtype)
            both = predict(model, mx, my, queries, num_samples=MARGINAL_SAMPLES)
            mean, std = both.mean.view(-1).double() * ys + ym, both.stddev.view(-1).double() * ys
            out = {
                "x": xq.view(-1).tolist(),
                "mean": mean[:grid].tolist(),
                "std": std[:grid].tolist(),
                "truth_ll": None,
                "samples": self._samples(model, mx, my, xq.view(-1), num_samples),
                "oracle": None,
                "collapse": None,
            }
            if y_true.shape[1]:  # the hidden curve's log-likelihood per point, in y's units
                y_model = torch.cat([torch.zeros(1, grid, 1, dtype=dtype), ((y_true - ym) / ys).to(dtype)], 1)
                out["truth_ll"] = both.log_prob(y_model)[0, grid:].mean().item() - math.log(ys)
            if gp is not None:  # one Cholesky of the context for the plot and the hidden curve
                mvn = gp_posterior(gp, ctx_x, ctx_y, torch.cat([xq, x_true], 1))
                mean_gp, std_gp = mvn.mean.view(-1), mvn.variance.sqrt().view(-1)
                point = torch.distributions.Normal(mean_gp[grid:], std_gp[grid:])
                out["oracle"] = {
                    "mean": mean_gp[:grid].tolist(),
                    "std": std_gp[:grid].tolist(),
                    "truth_ll": point.log_prob(y_true.view(-1)).mean().item(),
                }
            if model.is_latent:
                x_full, y_full = ((x_true - xm) / xs).to(dtype), ((y_true - ym) / ys).to(dtype)
                out["collapse"] = self._collapse(model, mx, my, x_full, y_full)
            return out

    def _samples(self, model, xc: Tensor, yc: Tensor, xq: Tensor, num_samples: int) -> dict:
        """Function draws {"x": inputs, "y": [S][inputs]} in the user's units (none when
        num_samples is 0), from the context xc, yc [1, Nc, 1] in the model's units; xq [G] are
        the plotted inputs in the user's."""
        if num_samples == 0:
            return {"x": [], "y": []}
        xm, xs, ym, ys = self.units
        dtype = xc.dtype
        if model.is_latent:
            draws = model(xc, yc, ((xq - xm) / xs).view(1, -1, 1).to(dtype), num_samples=num_samples).mean
            return {"x": xq.tolist(), "y": (draws.view(num_samples, -1).double() * ys + ym).tolist()}
        low, high = self.x_range
        xs_user = low + (high - low) * torch.rand(AR_POINTS, dtype=torch.float64)  # a random order (seeded)
        draws = ar_sample(model, xc, yc, ((xs_user - xm) / xs).view(1, -1, 1).to(dtype), num_samples=num_samples)
        order = xs_user.argsort()
        return {"x": xs_user[order].tolist(), "y": (draws.view(num_samples, -1)[:, order].double() * ys + ym).tolist()}

    def _collapse(self, model, xc: Tensor, yc: Tensor, x_true: Tensor, y_true: Tensor) -> dict:
        """Posterior std of z given the context (mean over dimensions) and KL(q(z | C ∪ truth) ||
        q(z | C)) in nats: how much the hidden curve would still move z (0 without one). All
        inputs [1, N, 1] in the model's units."""
        q_context = model.posterior(xc, yc)
        q_full = model.posterior(torch.cat([xc, x_true], 1), torch.cat([yc, y_true], 1))
        kl = kl_per_dim(q_full, q_context, q_full.sample((64,))).sum(-1)
        return {"posterior_std": q_context.stddev.mean().item(), "kl": kl.item()}

    # ------------------------------------------------------------------ images

    def image(self, index: int) -> dict:
        """Test image ``index`` of the run's data: pixel values [H * W][C] in [0, 1]."""
        picture = self.sampler.images[index]  # [C, H, W]
        return {"index": index, "pixels": picture.flatten(1).T.tolist()}

    def complete(self, index: int, revealed: list[int], num_samples: int, seed: int) -> dict:
        """Image ``index`` completed from its ``revealed`` pixels (row-major indices): the
        predictive mean and std at every pixel, [H * W][C] in [0, 1] units, and ``num_samples``
        draws (latent models: one z each, their mean image; deterministic: per-pixel draws)."""
        with MODEL_LOCK, torch.no_grad():
            model = self._current()
            torch.manual_seed(seed)
            sampler = self.sampler
            height, width = sampler.shape
            picture = sampler.images[index].flatten(1).T  # [HW, C]
            coords = pixel_grid(height, width, sampler.coords)  # [HW, 2]
            shift = 0.5 if sampler.values == "centered" else 0.0
            ids = torch.as_tensor(revealed, dtype=torch.long)
            xc, yc = coords[ids].unsqueeze(0), (picture[ids] - shift).unsqueeze(0)
            pred = predict(
                model, xc, yc, coords.unsqueeze(0), num_samples=max(num_samples, 1) if model.is_latent else 50
            )
            out = {
                "mean": (pred.mean[0] + shift).clamp(0, 1).tolist(),
                "std": pred.stddev[0].tolist(),
                "samples": [],
            }
            if num_samples:
                if model.is_latent:
                    draws = model(xc, yc, coords.unsqueeze(0), num_samples=num_samples).mean[:, 0]  # [S, HW, C]
                else:
                    draws = pred.sample((num_samples,))[:, 0]
                out["samples"] = (draws + shift).clamp(0, 1).tolist()
            return out
