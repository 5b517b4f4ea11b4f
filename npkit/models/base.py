"""The one model interface and the parts every Neural Process is assembled from.

    pred = model(xc, yc, xt, num_samples=16)   # xc [B, Nc, Dx], yc [B, Nc, Dy], xt [B, Nt, Dx]
    pred.mean, pred.stddev                      # [S, B, Nt, Dy] latent models, [B, Nt, Dy] else
    pred.log_prob(yt)                           # [S, B, Nt] / [B, Nt]: summed over y_dim

A prediction runs three steps that families override: ``encode`` the context once (the
deterministic path), ``aggregate`` it into one representation per target, ``decode`` target
inputs, representations and latent samples into likelihood parameters. Latent models also
expose ``model.posterior(xc, yc)``: the distribution of z, batch [B], event [z_dim]. Models never
know how they are trained: losses live in ``npkit.objectives``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from npkit.likelihoods import LIKELIHOODS, at_least_float32, build_likelihood
from npkit.models.chunking import decode_checkpointed, decode_in_chunks
from npkit.models.family import Family
from npkit.nn import ACTIVATIONS, INITS, SetEncoder, init_weights, mlp
from npkit.options import ModelOptions, check_positive_ints
from npkit.tasks import check_context


@dataclass
class ModelConfig(ModelOptions):
    """Options every model family shares: the config of the CNP and the base of the others.

    A model is built from an instance (``CNP(ModelConfig(hidden_dim=64))``) or from the same
    fields as keyword options (``CNP(hidden_dim=64)``, ``build_model("cnp", hidden_dim=64)``);
    the values are checked when the config is built.

    Attributes:
        x_dim: input dimension.
        y_dim: output dimension.
        hidden_dim: width of the hidden layers of the set encoders and of the decoder.
        r_dim: size of the representation of every set encoder (the deterministic path and the
            latent path's pooled summary).
        encoder_layers: linear layers of each set encoder's per-point MLP.
        decoder_layers: linear layers of the decoder MLP (1: linear).
        likelihood: the predictive head, a key of ``npkit.LIKELIHOODS``: "gaussian",
            "mixture", "student_t" (with a learned degree of freedom > 2) or "bernoulli".
        min_sigma: floor of the std (scale) of the continuous heads, in [0, 1):
            ``min_sigma + (1 - min_sigma) * softplus(raw)``.
        fixed_sigma: a constant std for the gaussian head instead of a learned one (None:
            learned).
        mixture_components: Gaussians per point and output dimension of the "mixture" head,
            each with the std above.
        init: weight initialisation, one of "default" (PyTorch's), "normal", "normal_weights",
            "xavier_normal" (see ``npkit.nn.init_weights``).
        init_std: std of the weights of the "normal" and "normal_weights" schemes.
        decoder_activation: activation between the decoder's layers: "relu", "sigmoid",
            "tanh" or "gelu".
        post_layers: layers of an MLP after the pooling of the mean-pooled deterministic path
            (0: none).
        global_paths: extra mean-pooled set encoders whose representations are concatenated
            to the model's own deterministic one (the TNP reference CNP has two pooled
            encoders: ``global_paths=1``; its attentive CNP a pooled one beside the
            cross-attention).
    """

    x_dim: int = 1
    y_dim: int = 1
    hidden_dim: int = 128
    r_dim: int = 128
    encoder_layers: int = 3
    decoder_layers: int = 3
    likelihood: str = "gaussian"
    min_sigma: float = 0.1
    fixed_sigma: float | None = None
    mixture_components: int = 3
    init: str = "default"
    init_std: float = 0.1
    decoder_activation: str = "relu"
    post_layers: int = 0
    global_paths: int = 0

    POSITIVE: ClassVar[tuple[str, ...]] = ("x_dim", "y_dim", "hidden_dim", "r_dim", "encoder_layers", "decoder_layers")

    def __post_init__(self) -> None:
        check_positive_ints(self, self.POSITIVE)
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {sorted(LIKELIHOODS)}, got {self.likelihood!r}")
        self.build_likelihood()  # validates the sigmas and components
        if self.init not in INITS:
            raise ValueError(f"unknown init scheme {self.init!r}; expected one of {list(INITS)}")
        if self.decoder_activation not in ACTIVATIONS:
            raise ValueError(f"decoder_activation must be one of {list(ACTIVATIONS)}, got {self.decoder_activation!r}")
        for name in ("post_layers", "global_paths"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")

    def build_likelihood(self):
        """The predictive head these options name (``npkit.likelihoods``)."""
        return build_likelihood(self.likelihood, self.min_sigma, self.fixed_sigma, self.mixture_components)


@dataclass
class LatentConfig(ModelConfig):
    """Options of the latent families (LatentCNP, NP): the fields of ModelConfig and the latent path.

    The latent path is q(z | S) = N(mu(s), sigma(s)), s the pooled summary of a set S.

    Attributes:
        z_dim: dimension of the latent variable z.
        latent_min_sigma: floor of the std of q(z | S), in [0, 1).
        latent_sigma: "sigmoid": ``latent_min_sigma + (1 - latent_min_sigma) * sigmoid(raw)``
            (NP/ANP papers; the floor keeps the posterior from collapsing below it);
            "softplus": ``latent_min_sigma + softplus(raw)`` (unbounded above; with a floor of
            0 the parameterisation of the NP critique).
        latent_head_layers: layers of the MLP from the pooled summary to (mu, raw) (1: linear
            heads).
        num_samples: z samples per prediction when a call does not say.
    """

    z_dim: int = 128
    latent_min_sigma: float = 0.1
    latent_sigma: str = "sigmoid"
    latent_head_layers: int = 2
    num_samples: int = 1

    POSITIVE: ClassVar[tuple[str, ...]] = (*ModelConfig.POSITIVE, "z_dim", "num_samples", "latent_head_layers")
    LATENT_SIGMAS: ClassVar[tuple[str, ...]] = ("sigmoid", "softplus")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.latent_min_sigma < 1.0:
            raise ValueError(f"latent_min_sigma must lie in [0, 1), got {self.latent_min_sigma}")
        if self.latent_sigma not in self.LATENT_SIGMAS:
            raise ValueError(f"latent_sigma must be one of {list(self.LATENT_SIGMAS)}, got {self.latent_sigma!r}")


def check_num_samples(num_samples: int) -> int:
    """num_samples must be a positive integer (bool excluded)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    return num_samples


class MeanPath(nn.Module):
    """Deterministic path r = post(mean_i MLP([x_i, y_i])) (optionally with self-attention before
    the pooling): one representation for every target, [B, 1, r_dim] (broadcast over targets)."""

    def __init__(self, cfg: ModelConfig, attention_layers: int = 0, num_heads: int = 8) -> None:
        super().__init__()
        in_dim, post = cfg.x_dim + cfg.y_dim, cfg.post_layers
        self.encoder = SetEncoder(
            in_dim, cfg.hidden_dim, cfg.r_dim, cfg.encoder_layers, attention_layers, num_heads, post_layers=post
        )
        self.out_dim = cfg.r_dim

    def encode(self, xc: Tensor, yc: Tensor, mask: Tensor | None) -> Tensor:
        return self.encoder(torch.cat([xc, yc], -1), mask)  # [B, r_dim]

    def forward(self, xt: Tensor, encoded: Tensor) -> Tensor:
        return encoded.unsqueeze(1)  # [B, 1, r_dim]: the same for every target (broadcast)


class ConcatPaths(nn.Module):
    """Several deterministic paths side by side: each encodes the context its own way; their
    representations per target (each [B, Nt or 1, out_dim]) are the decoder's inputs side by side."""

    def __init__(self, paths: list[nn.Module]) -> None:
        super().__init__()
        self.paths = nn.ModuleList(paths)
        self.out_dim = sum(path.out_dim for path in paths)

    def encode(self, xc: Tensor, yc: Tensor, mask: Tensor | None) -> tuple:
        return tuple(path.encode(xc, yc, mask) for path in self.paths)

    def forward(self, xt: Tensor, encoded: tuple) -> tuple[Tensor, ...]:
        return tuple(path(xt, e) for path, e in zip(self.paths, encoded))


class LatentPath(nn.Module):
    """q(z | S) = N(mu(s), sigma(s)), s = pool_i h_i from a set encoder of size r_dim
    (optionally with self-attention), then an MLP head to 2 z_dim."""

    def __init__(self, cfg: LatentConfig, attention_layers: int = 0, num_heads: int = 8) -> None:
        super().__init__()
        self.encoder = SetEncoder(
            cfg.x_dim + cfg.y_dim, cfg.hidden_dim, cfg.r_dim, cfg.encoder_layers, attention_layers, num_heads
        )
        self.head = mlp(cfg.r_dim, cfg.hidden_dim, 2 * cfg.z_dim, cfg.latent_head_layers)
        self.min_sigma, self.sigma = cfg.latent_min_sigma, cfg.latent_sigma

    def summary(self, x: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
        """The pooled encoding s [B, r_dim] of the set {(x_i, y_i)}."""
        return self.encoder(torch.cat([x, y], -1), mask)

    def gaussian(self, s: Tensor) -> Distribution:
        """N(mu(s), sigma(s)) from the summary s [B, r_dim]: batch [B], event [z_dim]."""
        mu, raw = at_least_float32(self.head(s)).chunk(2, dim=-1)
        if self.sigma == "softplus":
            sigma = self.min_sigma + F.softplus(raw)
        else:
            sigma = self.min_sigma + (1 - self.min_sigma) * torch.sigmoid(raw)
        return Independent(Normal(mu, sigma), 1)

    def forward(self, x: Tensor, y: Tensor, mask: Tensor | None) -> Distribution:
        return self.gaussian(self.summary(x, y, mask))


class Decoder(nn.Module):
    """Likelihood parameters MLP([h_1, ..., h_k, z]) for per-point inputs h_j [B, N or 1, D_j]
    (a tensor or a tuple of them, concatenated in order; a part of size 1 in N is the same for
    every point) and per-task latent samples z [S, B, z_dim] (or none) -> [S, B, N, P] (or
    [B, N, P]).

    The first layer is applied as sum_j W_j h_j + W_z z + b, with broadcasting: a per-task part
    (a pooled representation) and z are multiplied once per task rather than once per point and
    sample (same parameters as one Linear on the concatenation).
    """

    def __init__(
        self, in_dim: int, z_dim: int, hidden_dim: int, out_dim: int, num_layers: int, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.net = mlp(in_dim + z_dim, hidden_dim, out_dim, num_layers, activation)

    def _first(self, parts: tuple[Tensor, ...]) -> Tensor:
        """sum_j W_j h_j + b over the parts, [B, N, H] (the first layer before its activation)."""
        first, start, out = self.net[0], 0, None
        for part in parts:
            stop = start + part.shape[-1]
            term = F.linear(part, first.weight[:, start:stop], first.bias if out is None else None)
            out, start = term if out is None else out + term, stop
        return out

    def forward(self, h: Tensor | tuple[Tensor, ...], z: Tensor | None = None) -> Tensor:
        parts = h if isinstance(h, tuple) else (h,)
        if z is None and len(parts) == 1:
            return self.net(parts[0])
        per_point = self._first(parts)  # [B, N, H]
        if z is not None:
            per_sample = F.linear(z, self.net[0].weight[:, self.in_dim :])  # [S, B, H]
            per_point = per_point.unsqueeze(0) + per_sample.unsqueeze(2)  # [S, B, N, H]
        return self.net[1:](per_point)


class NeuralProcess(Family):
    """Base of the Neural Process family: the one model interface.

    A model is an optional deterministic path (``build_deterministic``: a module with
    ``encode(xc, yc, mask) -> encoded`` and ``forward(xt, encoded) -> r``, r
    `[batch, n_target, r_dim]`), an optional latent path (``build_latent``: a module
    ``(x, y, mask) -> q(z | set)``), a decoder and a likelihood. Subclasses choose the paths and
    their ``config_class``; nothing else. ``model(xc, yc, xt, num_samples=S)`` returns the
    predictive distribution (see `forward`).

    Args:
        config: an instance of the class's ``config_class`` (None: built from ``options``).
        **options (Any): the fields of ``config_class`` as keywords, instead of ``config``
            (not both).
    """

    name: ClassVar[str]
    is_latent: ClassVar[bool]
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    # False: the decoder reads only the representation, not x_t (translation-equivariant families)
    decoder_reads_x: ClassVar[bool] = True

    def __init__(self, config: ModelConfig | None = None, **options) -> None:
        super().__init__(config, **options)
        cfg = self.config
        self.likelihood = cfg.build_likelihood()
        own = self.build_deterministic(cfg)
        extra = [self.build_global_path(cfg) for _ in range(cfg.global_paths)]
        paths = ([own] if own is not None else []) + extra
        self.deterministic = paths[0] if len(paths) == 1 else ConcatPaths(paths) if paths else None
        self.latent = self.build_latent(cfg)
        det_dim = getattr(self.deterministic, "out_dim", cfg.r_dim) if self.deterministic is not None else 0
        in_dim = (cfg.x_dim if self.decoder_reads_x else 0) + det_dim
        z_dim = cfg.z_dim if self.latent is not None else 0
        out_dim = self.likelihood.num_params(cfg.y_dim)
        self.decoder = Decoder(in_dim, z_dim, cfg.hidden_dim, out_dim, cfg.decoder_layers, cfg.decoder_activation)
        init_weights(self, cfg.init, cfg.init_std)

    def build_deterministic(self, cfg: ModelConfig) -> nn.Module | None:
        return None

    def build_latent(self, cfg: ModelConfig) -> nn.Module | None:
        return None

    def build_global_path(self, cfg: ModelConfig) -> nn.Module:
        """One of the ``cfg.global_paths`` extra pooled paths: a `MeanPath`."""
        return MeanPath(cfg)

    def _check(self, xc: Tensor, yc: Tensor, xt: Tensor | None, mask_c: Tensor | None) -> None:
        check_context(xc, yc, xt, mask_c)
        for name, t, field in (("xc", xc, "x_dim"), ("yc", yc, "y_dim")):
            want = getattr(self.config, field)
            if t.shape[-1] != want:
                raise ValueError(f"{name} has last dimension {t.shape[-1]}, but the model has {field}={want}")
        weight = self.decoder.net[0].weight
        if xc.dtype != weight.dtype and not torch.is_autocast_enabled(xc.device.type):
            raise ValueError(
                f"xc is {xc.dtype} but the model's parameters are {weight.dtype}; "
                f"convert the inputs (batch.to(device, {weight.dtype})) or the model (model.to({xc.dtype}))"
            )

    # ---------------------------------------------------------------- the steps

    def encode(self, xc: Tensor, yc: Tensor, mask_c: Tensor | None) -> Any:
        """The deterministic path's encoding of the context (None without that path)."""
        return None if self.deterministic is None else self.deterministic.encode(xc, yc, mask_c)

    def aggregate(self, encoded: Any, xt: Tensor) -> Tensor | tuple[Tensor, ...]:
        """Decoder inputs per target: x_t [B, Nt, x_dim] and its representation(s), each
        [B, Nt or 1, r_dim] (1: the same for every target), as a tuple the decoder reads side by
        side (the representation alone when ``decoder_reads_x`` is False)."""
        if self.deterministic is None:
            return xt
        r = self.deterministic(xt, encoded)
        parts = r if isinstance(r, tuple) else (r,)
        return (xt, *parts) if self.decoder_reads_x else parts

    def decode(self, h: Tensor | tuple[Tensor, ...], z: Tensor | None) -> Tensor:
        """Likelihood parameters [S, B, Nt, P] (or [B, Nt, P]) from the decoder inputs h (see
        ``aggregate``) and z [S, B, z_dim]."""
        return self.decoder(h, z)

    # ---------------------------------------------------------------- the interface

    def posterior(self, xc: Tensor, yc: Tensor, mask: Tensor | None = None) -> Distribution:
        """Distribution of z given a set: batch [B], event [z_dim]. Predictions and objectives draw
        z from here, so a subclass may return any distribution (e.g. a flow around it)."""
        if self.latent is None:
            raise TypeError(f"{type(self).__name__} has no latent variable, so no posterior")
        self._check(xc, yc, None, mask)
        return self.latent(xc, yc, mask)

    def forward(
        self,
        xc: Tensor,
        yc: Tensor,
        xt: Tensor,
        num_samples: int | None = None,
        *,
        z: Tensor | None = None,
        mask_c: Tensor | None = None,
    ) -> Distribution:
        """Predictive distribution of y at xt given the context.

        Latent models draw ``num_samples`` z from ``posterior(xc, yc)`` unless ``z`` [S, B, z_dim]
        is given, and return a distribution with batch [S, B, Nt], event [y_dim]. Without
        gradients, targets are decoded in chunks (``PREDICT_CHUNK_ELEMENTS``): same result,
        bounded memory.
        """
        self._check(xc, yc, xt, mask_c)
        if num_samples is not None:
            check_num_samples(num_samples)
        if self.latent is None:
            if z is not None:
                raise TypeError(f"{type(self).__name__} has no latent variable: z must be None")
        elif z is None:
            samples = check_num_samples(self.config.num_samples if num_samples is None else num_samples)
            z = self.posterior(xc, yc, mask_c).rsample((samples,))
        elif z.dim() != 3 or z.shape[1:] != (xt.shape[0], self.config.z_dim):
            expected = f"[num_samples, {xt.shape[0]}, {self.config.z_dim}]"
            raise ValueError(f"z must have shape {expected}, got {tuple(z.shape)}")
        encoded = self.encode(xc, yc, mask_c)
        step = decode_checkpointed if torch.is_grad_enabled() else decode_in_chunks
        return self.likelihood(step(self.aggregate, self.decode, encoded, xt, z, self.config.hidden_dim))
