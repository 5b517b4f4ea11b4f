"""Pyro model/guide bridge: npkit's networks as a Pyro ``model`` and ``guide`` for ``pyro.infer.SVI``.

    model, guide = np_model_guide(np_model)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), TraceMeanField_ELBO())
    svi.step(batch)                                   # batch: npkit.tasks.Batch
    pred = np_model(xc, yc, xt, num_samples=16)       # predictions come back through npkit

Both callables take one npkit batch and register the npkit module with ``pyro.module``, so SVI
trains its parameters in place. Sites: ``z`` (one per task or item, in ``pyro.plate("data")``)
and the observed ``y`` (NPs) or ``x`` (VAEs). Pyro's ELBO sums over the batch, while npkit's
objectives average per point (`npkit.objectives.elbo`) or per image
(`npkit.objectives.vae_elbo`): divide Pyro's loss by the batch's points (or images).
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from torch.distributions import Bernoulli, Distribution, Independent, Normal
from tqdm.auto import tqdm

from npkit.data.vectors import VectorBatch
from npkit.models.base import NeuralProcess
from npkit.models.deep_prior import DeepPrior
from npkit.models.vae import VAE
from npkit.tasks import Batch
from npkit.train import step_seed


def to_pyro(d: Distribution, take: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dist.Distribution:
    """The same distribution as a Pyro one (Independent of Normal or Bernoulli); ``take`` is applied
    to every parameter first (``lambda t: t[0]`` drops a leading sample dimension)."""
    take = take or (lambda t: t)
    if isinstance(d, Independent):
        return to_pyro(d.base_dist, take).to_event(d.reinterpreted_batch_ndims)
    if isinstance(d, Normal):
        return dist.Normal(take(d.loc), take(d.scale))
    if isinstance(d, Bernoulli):
        return dist.Bernoulli(logits=take(d.logits))
    raise TypeError(f"to_pyro converts Independent, Normal and Bernoulli distributions, got {type(d).__name__}")


def vae_model_guide(vae: VAE, name: str = "vae") -> tuple[Callable, Callable]:
    """A VAE as a Pyro ``model(batch)`` and ``guide(batch)`` for ``pyro.infer.SVI``.

    Model: z ~ N(0, I), x ~ p(x | z) observed; guide: z ~ q(z | x), both on a
    `VectorBatch`. Both z sites are scaled by the config's ``beta``,
    so -ELBO / batch equals `npkit.vae_elbo` (analytic KL with ``TraceMeanField_ELBO``).

    Args:
        vae: the `VAE` whose networks both callables use (trained in place).
        name: the name the VAE is registered under with ``pyro.module``.

    Returns:
        The pair ``(model, guide)``.
    """
    if not isinstance(vae, VAE):
        raise TypeError(f"vae_model_guide needs a VAE, got {type(vae).__name__}")
    beta = vae.config.beta
    labels_of = lambda batch: batch.labels if vae.config.num_classes else None

    def model(batch: VectorBatch) -> None:
        pyro.module(name, vae)
        with pyro.plate("data", batch.x.shape[0]):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", to_pyro(vae.prior(batch.x.shape[0])))
            pyro.sample("x", to_pyro(vae.decode(z, labels_of(batch))), obs=batch.x)

    def guide(batch: VectorBatch) -> None:
        pyro.module(name, vae)
        with pyro.plate("data", batch.x.shape[0]), poutine.scale(scale=beta):
            pyro.sample("z", to_pyro(vae.encode(batch.x, labels_of(batch))))

    return model, guide


def np_model_guide(np_model: NeuralProcess, name: str = "np") -> tuple[Callable, Callable]:
    """A latent Neural Process as a Pyro ``model(batch)`` and ``guide(batch)`` for ``pyro.infer.SVI``.

    Both take a `Batch` with ``yt``. Model: z ~ p(z | C) =
    ``posterior(xc, yc)`` (the conditional prior), then y over context ∪ targets observed under
    p(y | x, z, C). Guide: z ~ q(z | C ∪ T) = ``posterior(x, y)``. -ELBO / (batch * n_points)
    equals `npkit.elbo` with ``prior="conditional"`` (unmasked batches; masked points are
    left out of both).

    Any guide over the site ``z`` (batch `[batch]`, event `[z_dim]`) may replace this one, e.g.
    ``pyro.infer.autoguide.AutoNormal(model)`` or a flow guide; the decoder and p(z | C) are
    still npkit's, so after training ``np_model(xc, yc, xt)`` predicts with z from p(z | C).

    Args:
        np_model: a latent model (LatentCNP, NP, ANP, ...), trained in place.
        name: the name the model is registered under with ``pyro.module``.

    Returns:
        The pair ``(model, guide)``.

    Examples:
        >>> model, guide = npkit.np_model_guide(np_model)
        >>> losses = npkit.train_svi(model, guide, npkit.make_sampler("gp1d"), steps=1000, batch_size=16)
    """
    if not isinstance(np_model, NeuralProcess) or not np_model.is_latent:
        raise TypeError(f"np_model_guide needs a latent NeuralProcess (lnp, np, anp), got {type(np_model).__name__}")
    if isinstance(np_model, DeepPrior):  # the pair's prior is p(z | C); its guide takes no flow
        raise TypeError(
            "np_model_guide uses the conditional prior p(z | C) of a Neural Process; a DeepPrior has the fixed prior "
            "N(0, I) (and flow posteriors, which the guide cannot take): train it with npkit.fit and elbo"
        )

    def model(batch: Batch) -> None:
        pyro.module(name, np_model)
        with pyro.plate("data", batch.batch_size):
            z = pyro.sample("z", to_pyro(np_model.posterior(batch.xc, batch.yc, batch.mask_c)))
            pred = np_model(batch.xc, batch.yc, batch.x, z=z.unsqueeze(0), mask_c=batch.mask_c)
            points = to_pyro(pred, lambda t: t[0])  # batch [B, N], event [y_dim]
            if batch.mask is not None:
                points = points.mask(batch.mask)
            pyro.sample("y", points.to_event(1), obs=batch.y)

    def guide(batch: Batch) -> None:
        pyro.module(name, np_model)
        with pyro.plate("data", batch.batch_size):
            pyro.sample("z", to_pyro(np_model.posterior(batch.x, batch.y, batch.mask)))

    return model, guide


def train_svi(
    model: Callable,
    guide: Callable,
    sampler,
    steps: int,
    batch_size: int,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    loss: pyro.infer.ELBO | None = None,
    device: torch.device | str = "cpu",
) -> list[float]:
    """Train a Pyro model and guide by SVI with Pyro's Adam on batches of a task sampler.

    Clears Pyro's parameter store first (stale parameters of the same names would replace the
    module's). Each step's batch generator and torch's global seed (the z draws) come from
    (``seed``, step) exactly as in `npkit.fit`, so both see the same batches and noise.

    Args:
        model: a Pyro model taking one batch (`np_model_guide`, `vae_model_guide`).
        guide: its guide.
        sampler (TaskSampler): anything with ``sample(batch_size, generator)``.
        steps: SVI steps (>= 1).
        batch_size: tasks (or items) per batch (>= 1).
        lr: Adam's learning rate.
        seed: seeds every batch and z draw, from (seed, step).
        progress: show a progress bar (with the loss per batch element).
        loss: the ELBO estimator (None: ``Trace_ELBO()``).
        device: where each batch is moved (the device of the model's parameters).

    Returns:
        Each step's loss: Pyro's, summed over the batch.
    """
    for field, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field} must be a positive integer, got {value!r}")
    pyro.clear_param_store()
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), loss or Trace_ELBO())
    losses = []
    with tqdm(range(steps), desc="svi", dynamic_ncols=True, disable=not progress) as bar:
        for step in bar:
            generator = torch.Generator().manual_seed(step_seed(seed, step))
            torch.manual_seed(step_seed(seed, step) ^ 1)
            losses.append(svi.step(sampler.sample(batch_size, generator).to(device)))
            bar.set_postfix(loss=f"{losses[-1] / batch_size:.3f}")
    return losses


def train_vae_svi(
    vae: VAE,
    sampler,
    steps: int,
    batch_size: int,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    loss: pyro.infer.ELBO | None = None,
) -> list[float]:
    """Train a VAE with Pyro SVI (`vae_model_guide`, then `train_svi`).

    Batches are moved to the device of the VAE's parameters.

    Args:
        vae: the `VAE`, trained in place.
        sampler (Any): a sampler of `VectorBatch` (anything with
            ``sample(batch_size, generator)``).
        steps: SVI steps (>= 1).
        batch_size: items per batch (>= 1).
        lr: Adam's learning rate.
        seed: seeds every batch and z draw, from (seed, step).
        progress: show a progress bar.
        loss: the ELBO estimator (None: ``Trace_ELBO()``).

    Returns:
        The loss per step and item, -ELBO / batch_size.
    """
    device = vae.decoder[0].weight.device
    losses = train_svi(*vae_model_guide(vae), sampler, steps, batch_size, lr, seed, progress, loss, device)
    return [value / batch_size for value in losses]
