"""The ConvCNP run of benchmarks/gp1d.py evaluated without the autoregressive column (quick; the
worker's full evaluation adds it): NPKIT_THREADS=1 python benchmarks/results/gp1d/convcnp_eval_marginal.py"""

import json
import sys

import torch

sys.path.insert(0, "benchmarks")
from types import SimpleNamespace

from gp1d import KERNELS, eval_set

from npkit.evaluation import evaluate
from npkit.runs import load_trained

torch.set_num_threads(1)
args = SimpleNamespace(eval_batches=3000, seed=0, cache_dir=None)
m = load_trained("/work/runs/gp1d/convcnp")
out = {k: evaluate(m, eval_set(k, args)) for k in KERNELS}
print(json.dumps(out))
