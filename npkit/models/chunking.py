"""Decoding many targets in bounded memory: ``decode(aggregate(encoded, xt), z)`` in pieces.

``aggregate(encoded, xt)`` gives the per-target representation and ``decode(h, z)`` the
decoder's outputs `[S, batch, n_target, P]` (or `[batch, n_target, P]` without z), as in
`NeuralProcess`. Both functions take ``(aggregate, decode, encoded, xt, z, width)``: the two
steps, the context's encoding, target inputs `[batch, n_target, x_dim]`, latent samples
`[S, batch, z_dim]` or None, and the decoder's hidden width; both return exactly what one pass
would, `[S, batch, n_target, P]` (`[batch, n_target, P]` without z). They differ in memory only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# Largest decoder activation (elements) built at once; larger target sets are decoded in
# chunks, so memory stays bounded in targets and samples.
PREDICT_CHUNK_ELEMENTS = 2**23

Aggregate = Callable[[Any, Tensor], Any]
Decode = Callable[[Any, Tensor | None], Tensor]


def decode_checkpointed(
    aggregate: Aggregate, decode: Decode, encoded: Any, xt: Tensor, z: Tensor | None, width: int
) -> Tensor:
    """With gradients. Above ``PREDICT_CHUNK_ELEMENTS`` decoder activations (``width`` per
    sample, task and target: thousands of targets, images), chunks of targets are decoded under
    activation checkpointing: their activations are recomputed in the backward pass instead of
    kept, so training memory is bounded in targets too. Small tasks take one plain pass.
    """
    num_z = 1 if z is None else z.shape[0]
    per_point = max(1, num_z * xt.shape[0] * width)
    points = max(1, PREDICT_CHUNK_ELEMENTS // per_point)
    if points >= xt.shape[1]:
        return decode(aggregate(encoded, xt), z)
    piece = lambda part: decode(aggregate(encoded, part), z)
    parts = [checkpoint(piece, part, use_reentrant=False) for part in xt.split(points, dim=1)]
    return torch.cat(parts, dim=-2)


def decode_in_chunks(
    aggregate: Aggregate, decode: Decode, encoded: Any, xt: Tensor, z: Tensor | None, width: int
) -> Tensor:
    """Without gradients, in pieces of at most ``PREDICT_CHUNK_ELEMENTS`` decoder activations:
    chunks of targets, and of latent samples when one target's samples exceed that. Each piece is
    written into one preallocated output, so nothing of a piece outlives it (kept pieces between
    the freed activations fragment the heap: peak RSS then grows with the number of pieces).
    """
    num_z = 1 if z is None else z.shape[0]
    per_sample_point = max(1, xt.shape[0] * width)
    samples = max(1, min(num_z, PREDICT_CHUNK_ELEMENTS // per_sample_point))
    points = max(1, PREDICT_CHUNK_ELEMENTS // (per_sample_point * samples))
    num_points = xt.shape[1]
    if points >= num_points and samples == num_z:
        return decode(aggregate(encoded, xt), z)
    out = None
    for start in range(0, num_points, points):
        h = aggregate(encoded, xt[:, start : start + points])
        for first in range(0, num_z, samples):
            part = decode(h, None if z is None else z[first : first + samples])
            if out is None:
                shape = (*part.shape[:-2], num_points, part.shape[-1])
                out = part.new_empty(shape if z is None else (num_z, *shape[1:]))
            (out if z is None else out[first : first + samples])[..., start : start + points, :] = part
    return out
