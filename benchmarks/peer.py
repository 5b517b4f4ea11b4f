"""Training-step time of npkit beside the ``neuralprocesses`` peer, interleaved in one run.

    pip install neuralprocesses        # the peer (not an npkit dependency)
    python benchmarks/peer.py [--models cnp canp] [--width 256] [--steps 60]

Same tasks (npkit's ``gp1d-nps`` sampler, BENCHMARKS.md section 2; the same pre-drawn batches,
converted to the peer's [batch, dim, points] layout), same batch (16), same width, both scoring
the targets only with a heteroscedastic Gaussian, Adam 3e-4 (npkit: the fused Adam of ``npkit.fit``;
the peer: torch's default Adam, as its training script). The peer: ``construct_gnp``
(CNP) and ``construct_agnp`` (attentive CNP) with ``likelihood="het"``, ``width`` and
``dim_embedding`` = ``--width``, its default 3 encoder and 6 decoder layers; npkit: ``cnp`` and
``canp`` with ``hidden_dim`` = ``r_dim`` = ``--width``, 3 encoder and 6 decoder layers (``canp``:
one self-attention block). Steps alternate npkit / peer, so both see the same machine load;
medians after 5 warm-up steps each; ratio = npkit / peer (below 1: npkit faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from common import cpu_name  # sibling scripts: benchmarks/ is on sys.path

from npkit.data import make_sampler
from npkit.models import build_model
from npkit.objectives import get_objective
from npkit.train import adam, default_threads

PEER = {"cnp": "construct_gnp", "canp": "construct_agnp"}


def npkit_step(model, args):
    objective = get_objective("nll", model, include_context=False)
    optimizer = adam(model, 3e-4)  # what npkit.fit uses

    def step(batch) -> None:
        loss = objective(model, batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def peer_step(model):
    import lab as B
    import neuralprocesses.torch as nps

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    state = [B.create_random_state(torch.float32, seed=0)]

    def step(batch) -> None:
        xc, yc, xt, yt = (t.transpose(1, 2) for t in (batch.xc, batch.yc, batch.xt, batch.yt))
        state[0], loglik = nps.loglik(state[0], model, [(xc, yc)], xt, yt, normalise=True)
        loss = -loglik.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def timed(step, batch) -> float:
    start = time.perf_counter()
    step(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(PEER), default=list(PEER))
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per package (after 5 warm-up steps)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    import neuralprocesses.torch as nps

    torch.set_num_threads(default_threads())
    sampler = make_sampler("gp1d-nps")
    generator = torch.Generator().manual_seed(0)
    batches = [sampler.sample(args.batch_size, generator) for _ in range(args.steps + 5)]
    print(f"command: python benchmarks/peer.py {' '.join(sys.argv[1:])}")
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    print(
        f"gp1d-nps batches of {args.batch_size}, width {args.width}, targets scored, Adam 3e-4; "
        f"{args.steps} interleaved steps each, medians\n"
    )
    print("| model | npkit params | peer params | npkit ms/step | peer ms/step | ratio npkit / peer |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        torch.manual_seed(0)
        sizes = dict(hidden_dim=args.width, r_dim=args.width, encoder_layers=3, decoder_layers=6)
        ours = build_model(name, **sizes, **({"attention_layers": 1} if name == "canp" else {}))
        theirs = getattr(nps, PEER[name])(
            dim_x=1, dim_yc=1, dim_yt=1, dim_embedding=args.width, width=args.width, likelihood="het"
        )
        steps = {"npkit": npkit_step(ours, args), "peer": peer_step(theirs)}
        times = {"npkit": [], "peer": []}
        for i, batch in enumerate(batches):
            for who, step in steps.items():
                seconds = timed(step, batch)
                if i >= 5:
                    times[who].append(seconds)
        ms = {who: 1000 * statistics.median(t) for who, t in times.items()}
        count = lambda m: sum(p.numel() for p in m.parameters())
        print(
            f"| {name} | {count(ours):,} | {count(theirs):,} | {ms['npkit']:.1f} | {ms['peer']:.1f} "
            f"| {ms['npkit'] / ms['peer']:.2f} |"
        )


if __name__ == "__main__":
    main()
