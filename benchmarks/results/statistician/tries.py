"""The statistician-digits variants of docs/statistician.md ("What we tried"), as run (one seed each):

    NPKIT_THREADS=1 python benchmarks/results/statistician/tries.py VARIANT

VARIANT: alpha, alpha-paper, long, cfree, zpen, z1, sigma05. Prints the held-out ELBO terms (per
item) and the few-shot accuracies on seen and unseen digits every 1,000 steps (5,000 for "long");
the logs of the runs are beside this file ("long" was stopped after 15,000 of its 30,000 steps).
"""

import sys

import torch

from npkit import fit
from npkit.data import make_sampler
from npkit.models import build_model
from npkit.objectives import LossOutput, statistician_elbo_terms
from npkit.statistician_eval import elbo_on, few_shot_accuracy

SIZES = {"hidden_dim": 64, "c_dim": 16, "z_dim": 8, "num_stochastic_layers": 2}
VARIANTS = {
    # alpha: reconstruction weight 1 + alpha * 0.5 ** (step / halve), KL weight its inverse
    "alpha": {"model": SIZES, "alpha": 1.0, "halve": 625},
    "alpha-paper": {"model": {**SIZES, "c_dim": 64, "z_dim": 2, "num_stochastic_layers": 3}, "alpha": 1.0},
    "long": {"model": SIZES, "alpha": 1.0, "halve": 2500, "steps": 30000, "every": 5000},
    "cfree": {"model": SIZES, "alpha": 1.0, "cfree": 0.4},  # KL of c floored at 0.4 nats per item (20 per set)
    "zpen": {"model": SIZES, "zpen": 9.0},  # KL of z weighted 1 + 9 * 0.5 ** (step / 500)
    "z1": {"model": {**SIZES, "z_dim": 1, "num_stochastic_layers": 1}, "alpha": 1.0},
    "sigma05": {"model": {**SIZES, "min_sigma": 0.05}},
}


def main() -> None:
    variant = sys.argv[1]
    v = VARIANTS[variant]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("statistician", x_dim=2, **v["model"])
    train = make_sampler("spatial-digits", classes=[0, 1, 2, 3, 4], num_points=50)
    seen = make_sampler("spatial-digits", split="test", classes=[0, 1, 2, 3, 4], num_points=50)
    unseen = make_sampler("spatial-digits", split="test", classes=[5, 6, 7, 8, 9], num_points=50)

    def objective(model, batch, step):
        t = statistician_elbo_terms(model, batch)
        w = 1 + v.get("alpha", 0.0) * 0.5 ** (step / v.get("halve", 625))
        kl = t["kl_c"].clamp_min(v.get("cfree", 0.0)) + (1 + v.get("zpen", 0.0) * 0.5 ** (step / 500)) * t["kl_z"].sum()
        return LossOutput(-(w * t["log_lik"] - kl / w), t["log_lik"], kl)

    def report(step, model, output=None):
        if step and step % v.get("every", 1000) == 0:
            model.eval()
            terms = {k: round(x, 4) for k, x in elbo_on(model, seen, 256).items()}
            few_shot = {
                name: {
                    k: round(r["accuracy"], 3) for k, r in few_shot_accuracy(model, s, episodes=100, seed=1234).items()
                }
                for name, s in (("seen", seen), ("unseen", unseen))
            }
            model.train()
            print(variant, step, terms, few_shot, flush=True)
        return {}

    steps = v.get("steps", 4000)
    fit(
        model,
        train,
        objective,
        steps=steps,
        batch_size=16,
        lr=1e-3,
        schedule="cosine",
        progress=False,
        callbacks=[report],
    )


if __name__ == "__main__":
    main()
