"""Training-step time per model and width, data generation excluded (what every benchmark prints:
docs/benchmarks/protocols.md); with ``--peer``, beside the ``neuralprocesses`` package in the same run.

    python benchmarks/step_time.py --models cnp anp --widths 256 [--layers 3] [--targets-only]
    pip install neuralprocesses        # the peer (npkit[peer]; not an npkit dependency)
    python benchmarks/step_time.py --peer [--models cnp canp np anp] [--widths 128 256] [--compile]

npkit alone: the median of ``--steps`` Adam steps (after 5 warm-up steps) on pre-drawn batches,
and the time to draw one batch; by default context ∪ targets are scored (``--targets-only``:
the targets, as the peer).

``--peer``: same tasks (``gp1d-nps``, the same pre-drawn batches in the peer's [batch, dim,
points] layout), same batch, same width (``hidden_dim`` = ``r_dim`` = ``z_dim`` = the peer's
``width`` = ``dim_embedding`` = ``dim_lv``), the peer's default depths (3 encoder and 6 decoder
hidden layers: npkit's ``encoder_layers=4``, ``decoder_layers=7``, ``latent_head_layers=4`` linear
layers; the parameter counts then agree to 0.1%), targets scored with a heteroscedastic Gaussian,
Adam 3e-4 (npkit: the fused Adam of ``npkit.fit``; the peer: torch's Adam, as its training
script). ``--bf16`` adds npkit with its forward pass under bfloat16 autocast
(``train.precision=bf16-mixed``: fast where the CPU has bfloat16 matrix units, such as AMX; the
peer runs float32). ``--compile`` adds npkit with model + objective under
``torch.compile(dynamic=True)`` (``train.compile=true``), and its compile time: the first step (a
cold compile: inductor's cache starts empty), apart from the medians. The peer's models:
``construct_gnp`` (cnp; np with ``dim_lv``) and ``construct_agnp`` (canp; anp with ``dim_lv``):
cross-attention only, latent path a mean-pooled MLP. npkit's attentive models match that with
``attention_layers=0``; rows marked ``+self-attn`` add ``--self-attention`` blocks on both paths
(Kim et al.'s ANP), which the peer has not. ``--models convcnp``: the peer's ``construct_convgnp``
with its default UNet (6 stride-2 layers of kernel 5, ``width`` channels; 64 points per unit,
margin 0.1) against npkit's convcnp of the same layout (``r_dim`` = width, a linear head) whose
grid also covers x_range [-2, 2], the gp1d-nps inputs, since npkit encodes the context before it
sees targets (the peer grids context ∪ targets); both 320 grid points here. Latent models train on
the same objective: log of the mean likelihood over ``--samples`` z ~ p(z | C) (npkit ``ml``, the
peer's ``loglik``). Steps alternate npkit / peer, so both see the same machine load; medians after
5 warm-up steps; ratio = npkit / peer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
from common import cpu_name  # sibling scripts: benchmarks/ is on sys.path

from npkit.data import make_sampler
from npkit.models import build_model
from npkit.objectives import get_objective
from npkit.train import adam, default_threads

PEER = {"cnp": "construct_gnp", "canp": "construct_agnp", "np": "construct_gnp", "anp": "construct_agnp"}
PEER["convcnp"] = "construct_convgnp"
# convcnp: the peer's default UNet (6 halvings, kernel 5, width channels), grid of 64 points per unit,
# margin 0.1; npkit's grid also covers the gp1d-nps inputs' range, as it encodes before seeing targets
CONV = dict(conv_layers=6, kernel_size=5, points_per_unit=64, margin=0.1)
WARMUP = 5


def npkit_step(model, objective, lr: float = 3e-4, bf16: bool = False, compile: bool = False):
    """One training step of ``model`` on a batch, with ``npkit.fit``'s optimiser; ``bf16``: the
    forward pass under bfloat16 autocast, as ``train.precision=bf16-mixed`` runs it; ``compile``:
    model and objective under ``torch.compile(dynamic=True)``, as ``train.compile=true``."""
    optimizer = adam(model, lr)
    loss_of = lambda batch: objective(model, batch).loss
    loss_of = torch.compile(loss_of, dynamic=True) if compile else loss_of

    def step(batch) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_of(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def peer_step(model, num_samples: int):
    """One training step of a ``neuralprocesses`` model: its normalised ``loglik`` objective."""
    import lab as B
    import neuralprocesses.torch as nps

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    state = [B.create_random_state(torch.float32, seed=0)]

    def step(batch) -> None:
        xc, yc, xt, yt = (t.transpose(1, 2) for t in (batch.xc, batch.yc, batch.xt, batch.yt))
        state[0], loglik = nps.loglik(state[0], model, [(xc, yc)], xt, yt, num_samples=num_samples, normalise=True)
        loss = -loglik.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def median_step_ms(model, objective, batches, warmup: int = WARMUP) -> float:
    """Median ms of ``npkit_step`` over ``batches`` after ``warmup`` steps."""
    return interleaved_ms({"npkit": npkit_step(model, objective)}, batches, warmup)["npkit"]


def timed(step, batch) -> float:
    start = time.perf_counter()
    step(batch)
    return time.perf_counter() - start


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def interleaved_ms(steps: dict, batches, warmup: int = WARMUP, first: dict | None = None) -> dict[str, float]:
    """Median ms per step of each of ``steps`` (name -> step), run alternately on every batch,
    after ``warmup`` batches; ``first``, if given, receives each one's first step in seconds."""
    times = {who: [] for who in steps}
    for batch in batches:
        for who, step in steps.items():
            times[who].append(timed(step, batch))
    if first is not None:
        first.update({who: t[0] for who, t in times.items()})
    return {who: 1000 * statistics.median(t[warmup:]) for who, t in times.items()}


def npkit_model(name: str, width: int, self_attention: int):
    """npkit's model of the peer comparison: ``name`` at ``width``, the peer's depths."""
    torch.manual_seed(0)
    if name == "convcnp":  # a linear head on r, as the peer's final 1x1 convolution
        return build_model(name, hidden_dim=width, r_dim=width, decoder_layers=1, x_range=[-2.0, 2.0], **CONV)
    sizes = dict(hidden_dim=width, r_dim=width, encoder_layers=4, decoder_layers=7)
    if name in ("canp", "anp"):
        sizes["attention_layers"] = self_attention
    if name in ("np", "anp"):
        sizes.update(z_dim=width, latent_head_layers=4)
    return build_model(name, **sizes)


def peer_model(name: str, width: int):
    import neuralprocesses.torch as nps

    if name == "convcnp":
        unet = dict(unet_channels=(width,) * CONV["conv_layers"], unet_kernels=CONV["kernel_size"])
        ppu, margin = CONV["points_per_unit"], CONV["margin"]
        return nps.construct_convgnp(
            dim_x=1, dim_yc=(1,), dim_yt=1, likelihood="het", points_per_unit=ppu, margin=margin, **unet
        )
    latent = {"dim_lv": width} if name in ("np", "anp") else {}
    return getattr(nps, PEER[name])(
        dim_x=1, dim_yc=1, dim_yt=1, dim_embedding=width, width=width, likelihood="het", **latent
    )


def objective_for(model, args):
    """The peer's objective in npkit: targets only; latent models ``ml`` with ``--samples``."""
    if not model.is_latent:
        return get_objective("nll", model, include_context=False)
    return get_objective("ml", model, include_context=False, num_samples=args.samples)


def peer_rows(args, batches) -> None:
    bf16 = " npkit bf16-mixed ms/step | ratio bf16 / peer |" if args.bf16 else ""
    compiled = " npkit compiled ms/step | ratio compiled / peer | compile s |" if args.compile else ""
    header = "| model | width | npkit params | peer params | npkit ms/step | peer ms/step | ratio npkit / peer |"
    print(header + bf16 + compiled)
    print("|---|---|---|---|---|---|---|" + "---|---|" * args.bf16 + "---|---|---|" * args.compile)
    variants = [(name, 0) for name in args.models]
    if args.self_attention:
        variants += [(name, args.self_attention) for name in args.models if name in ("canp", "anp")]
    for width in args.widths:
        for name, attention in variants:
            ours = npkit_model(name, width, attention)
            objective = objective_for(ours, args)
            theirs = peer_model(name, width)
            steps = {"npkit": npkit_step(ours, objective), "peer": peer_step(theirs, args.samples)}
            if args.bf16:
                twin = npkit_model(name, width, attention)  # its own copy (seeded: the same start)
                steps["bf16"] = npkit_step(twin, objective_for(twin, args), bf16=True)
            if args.compile:
                twin = npkit_model(name, width, attention)
                steps["compiled"] = npkit_step(twin, objective_for(twin, args), compile=True)
            first = {}
            ms = interleaved_ms(steps, batches, first=first)
            label = name + (f" +self-attn x{attention}" if attention else "")
            extra = f" {ms['bf16']:.1f} | {ms['bf16'] / ms['peer']:.2f} |" if args.bf16 else ""
            if args.compile:
                extra += f" {ms['compiled']:.1f} | {ms['compiled'] / ms['peer']:.2f} | {first['compiled']:.0f} |"
            print(
                f"| {label} | {width} | {count(ours):,} | {count(theirs):,} | {ms['npkit']:.1f} | {ms['peer']:.1f} "
                f"| {ms['npkit'] / ms['peer']:.2f} |{extra}",
                flush=True,
            )


def npkit_rows(args, batches) -> None:
    print("| model | width | params | ms/step (median) |\n|---|---|---|---|")
    for width in args.widths:
        for name in args.models:
            torch.manual_seed(0)
            sizes = dict(hidden_dim=width, r_dim=width, encoder_layers=args.layers, decoder_layers=args.layers)
            model = build_model(name, **sizes, **({"z_dim": width} if name in ("np", "anp", "lnp") else {}))
            options = {"num_samples": args.samples} if model.is_latent else {}
            objective = get_objective("auto", model, include_context=not args.targets_only, **options)
            print(f"| {name} | {width} | {count(model):,} | {median_step_ms(model, objective, batches):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", action="store_true", help="beside the neuralprocesses package, interleaved")
    parser.add_argument("--preset", default="gp1d-nps")
    parser.add_argument("--models", nargs="+", default=None, help="default: cnp lnp np anp (--peer: cnp canp np anp)")
    parser.add_argument("--widths", nargs="+", type=int, default=[256], help="hidden_dim = r_dim = z_dim")
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder MLP layers (npkit alone)")
    parser.add_argument("--self-attention", type=int, default=0, help="--peer: also rows with this many blocks")
    parser.add_argument("--bf16", action="store_true", help="--peer: also npkit under bfloat16 autocast")
    parser.add_argument("--compile", action="store_true", help="--peer: also npkit under torch.compile")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4, help="latent samples per task in training")
    parser.add_argument("--steps", type=int, default=60, help="timed steps (after 5 warm-up steps)")
    parser.add_argument("--targets-only", action="store_true", help="npkit alone: score the targets only")
    args = parser.parse_args()
    args.models = args.models or (["cnp", "canp", "np", "anp"] if args.peer else ["cnp", "lnp", "np", "anp"])
    if args.peer and set(args.models) - set(PEER):
        parser.error(f"--peer compares {sorted(PEER)}, got {args.models}")

    torch.set_num_threads(default_threads())
    if args.compile:  # a cold compile: inductor's on-disk cache of earlier runs would hide its time
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="npkit-inductor-")
    sampler = make_sampler("gp1d-nps" if args.peer else args.preset)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    batches = [sampler.sample(args.batch_size, generator) for _ in range(args.steps + WARMUP)]
    data_ms = 1000 * (time.perf_counter() - start) / len(batches)
    print(f"command: python benchmarks/step_time.py {' '.join(sys.argv[1:])}")
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    scored = "targets" if args.peer or args.targets_only else "context ∪ targets"
    print(
        f"{sampler.__class__.__name__} ({'gp1d-nps' if args.peer else args.preset}) batches of {args.batch_size}, "
        f"scoring {scored}, {args.samples} latent sample(s); {args.steps} timed steps, medians; "
        f"data generation {data_ms:.2f} ms per batch\n"
    )
    (peer_rows if args.peer else npkit_rows)(args, batches)


if __name__ == "__main__":
    main()
