"""Autoregressive mode: a joint predictive over targets from any model of the family, with no
retraining (Bruinsma et al. 2023, "Autoregressive Conditional Neural Processes").

A CNP predicts each target independently given the context. Fed back its own targets as
context, one at a time in the given order, it defines a joint distribution

    p(y_1, ..., y_N | C) = prod_i p(y_i | x_i, C ∪ {(x_j, y_j) : j < i}).

``ar_log_prob`` scores observed targets under it (teacher forcing: the N conditionals run as
batched forward passes, conditional i seeing the first i targets through ``mask_c``);
``ar_sample`` draws coherent functions one target at a time. For a latent model each factor is
its per-point predictive (``npkit.predict``: the mixture over ``num_samples`` z drawn from
p(z | the grown context)), so ``ar_log_prob`` is then a Monte-Carlo estimate, biased low.
"""

from __future__ import annotations

import torch
from torch import Tensor

from npkit.predictive import predict
from npkit.tasks import check_context, check_mask

# Most context points (summed over the expanded tasks) that one batched forward pass of
# ar_log_prob conditions on: steps are grouped so memory stays bounded in Nt.
AR_CHUNK_POINTS = 2**16


def _real(mask: Tensor | None, like: Tensor) -> Tensor:
    """``mask`` [B, N], or all True when None."""
    return torch.ones(like.shape[:2], dtype=torch.bool, device=like.device) if mask is None else mask


def ar_log_prob(
    model,
    xc: Tensor,
    yc: Tensor,
    xt: Tensor,
    yt: Tensor,
    mask_c: Tensor | None = None,
    mask_t: Tensor | None = None,
    num_samples: int = 50,
) -> Tensor:
    """Log-likelihood log p(yt | C) of the targets under the autoregressive joint.

    Target i is scored given the context and the targets before it, in their given order
    (teacher forcing); targets with ``mask_t`` False are neither scored nor conditioned on.
    Exact for deterministic models; for latent ones each factor is the mixture of
    `npkit.predict` over ``num_samples`` z, so the result is a Monte-Carlo estimate,
    biased low.

    Args:
        model (NeuralProcess): any model of the family, deterministic or latent.
        xc: context inputs `[batch, n_context, x_dim]`.
        yc: context outputs `[batch, n_context, y_dim]`.
        xt: target inputs `[batch, n_target, x_dim]`, in the order of the factorisation.
        yt: target outputs `[batch, n_target, y_dim]`.
        mask_c: optional `[batch, n_context]` bool, True where a context point is real.
        mask_t: optional `[batch, n_target]` bool, True where a target point is real.
        num_samples: z samples per factor for latent models (ignored by deterministic ones).

    Returns:
        The summed log-likelihood of each task's targets, `[batch]`.

    Examples:
        >>> model = npkit.build_model("cnp")
        >>> batch = npkit.make_sampler("gp1d").sample(4)
        >>> npkit.ar_log_prob(model, batch.xc, batch.yc, batch.xt, batch.yt).shape
        torch.Size([4])
    """
    check_context(xc, yc, xt, mask_c)
    check_mask("mask_t", mask_t, xt)
    if yt.shape[:2] != xt.shape[:2] or yt.shape[-1] != yc.shape[-1]:
        raise ValueError(f"yt must have shape {(*xt.shape[:2], yc.shape[-1])}, got {tuple(yt.shape)}")
    batch, num_c, num_t = xc.shape[0], xc.shape[1], xt.shape[1]
    real_t = _real(mask_t, xt)
    x, y = torch.cat([xc, xt], 1), torch.cat([yc, yt], 1)
    real = torch.cat([_real(mask_c, xc), real_t], 1)  # [B, Nc + Nt]
    steps = max(1, AR_CHUNK_POINTS // (batch * (num_c + num_t)))
    total = xt.new_zeros(batch)
    for first in range(0, num_t, steps):
        ids = torch.arange(first, min(first + steps, num_t), device=xt.device)  # the targets scored
        width = num_c + int(ids[-1])  # the context of the last one: C and the targets before it
        seen = torch.arange(width, device=xt.device) < (num_c + ids)[:, None]  # [k, width]
        mask = (real[:, :width].unsqueeze(0) & seen.unsqueeze(1)).flatten(0, 1)  # [k B, width]
        context = [t[:, :width].unsqueeze(0).expand(len(ids), -1, -1, -1).flatten(0, 1) for t in (x, y)]
        query = xt[:, ids].transpose(0, 1).flatten(0, 1).unsqueeze(1)  # [k B, 1, Dx]
        pred = predict(model, *context, query, num_samples, mask_c=mask)
        log_p = pred.log_prob(yt[:, ids].transpose(0, 1).flatten(0, 1).unsqueeze(1))  # [k B, 1]
        log_p = log_p.view(len(ids), batch).masked_fill(~real_t[:, ids].T, 0.0)
        total = total + log_p.sum(0)
    return total


def ar_sample(model, xc: Tensor, yc: Tensor, xt: Tensor, num_samples: int = 10, mask_c: Tensor | None = None) -> Tensor:
    """Draw functions jointly over the targets, one target at a time.

    y_1 is drawn from p(y | x_1, C), then each y_i from the predictive given C and the draws
    before it (noisy observations, as the model predicts them): n_target sequential forward
    passes of ``num_samples * batch`` tasks. Works for deterministic models too, which have no
    joint of their own.

    Args:
        model (NeuralProcess): any model of the family.
        xc: context inputs `[batch, n_context, x_dim]`.
        yc: context outputs `[batch, n_context, y_dim]`.
        xt: target inputs `[batch, n_target, x_dim]`, in the order they are drawn.
        num_samples: functions drawn per task.
        mask_c: optional `[batch, n_context]` bool, True where a context point is real.

    Returns:
        The draws, `[num_samples, batch, n_target, y_dim]`.

    Examples:
        >>> draws = npkit.ar_sample(model, xc, yc, xt, num_samples=8)   # [8, batch, n_target, y_dim]
    """
    check_context(xc, yc, xt, mask_c)
    batch = xc.shape[0]
    tile = lambda t: t.unsqueeze(0).expand(num_samples, *t.shape).flatten(0, 1)  # [S B, ...]
    x, y, mask, queries = tile(xc), tile(yc), tile(_real(mask_c, xc)), tile(xt)
    draws = []
    for i in range(xt.shape[1]):
        query = queries[:, i : i + 1]
        draw = predict(model, x, y, query, num_samples=1, mask_c=mask).sample()  # [S B, 1, Dy]
        draws.append(draw)
        x, y = torch.cat([x, query], 1), torch.cat([y, draw], 1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
    return torch.cat(draws, 1).view(num_samples, batch, xt.shape[1], -1)
