"""Training-step time per model and width, data generation excluded (BENCHMARKS.md section 2).

    python benchmarks/step_time.py --preset gp1d-nps --width 256 --layers 6 --models cnp anp

Prints the median of ``--steps`` isolated Adam steps (after 5 warm-up steps) on pre-drawn
batches, and the time to draw one batch. ``--targets-only`` scores the targets alone, as the
``neuralprocesses`` peer does on gp1d-nps; by default context ∪ targets are scored.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from npkit.data import make_sampler
from npkit.models import build_model
from npkit.objectives import get_objective


def median_step_ms(model, objective, batches, warmup: int = 5) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        loss = objective(model, batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gp1d-nps")
    parser.add_argument("--models", nargs="+", default=["cnp", "lnp", "np", "anp"])
    parser.add_argument("--width", type=int, default=256, help="hidden_dim = r_dim = z_dim")
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder MLP layers")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1, help="latent samples per task in training")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--targets-only", action="store_true")
    args = parser.parse_args()

    sampler = make_sampler(args.preset)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    batches = [sampler.sample(args.batch_size, generator) for _ in range(args.steps + 5)]
    data_ms = 1000 * (time.perf_counter() - start) / len(batches)
    scored = "targets" if args.targets_only else "context ∪ targets"
    print(
        f"{args.preset}, batch {args.batch_size}, width {args.width}, {args.layers}+{args.layers} MLP layers, "
        f"scoring {scored}, {args.samples} latent sample(s); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"command: python benchmarks/step_time.py {' '.join(sys.argv[1:])}")
    print(f"data generation: {data_ms:.2f} ms per batch\n")
    print("| model | params | ms/step (median) |\n|---|---|---|")
    for name in args.models:
        torch.manual_seed(0)
        sizes = dict(hidden_dim=args.width, r_dim=args.width, encoder_layers=args.layers, decoder_layers=args.layers)
        model = build_model(name, **sizes, **({} if name == "cnp" else {"z_dim": args.width}))
        options = {"num_samples": args.samples} if model.is_latent else {}
        objective = get_objective("auto", model, include_context=not args.targets_only, **options)
        ms = median_step_ms(model, objective, batches)
        print(f"| {name} | {sum(p.numel() for p in model.parameters()):,} | {ms:.1f} |")


if __name__ == "__main__":
    main()
