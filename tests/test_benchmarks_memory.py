"""benchmarks/memory.py --profile: the operators of one training step (tiny sizes here)."""

from __future__ import annotations

import argparse

from conftest import benchmark_script


def test_profile_names_the_attention_kernel_of_the_anp_and_times_both_passes(capsys):
    args = argparse.Namespace(
        train_models=["anp"], width=16, batch_size=2, train_context=8, targets=8, train_samples=2,
        threads=1, bf16=False, profile=40,
    )  # fmt: skip
    with benchmark_script("memory") as memory:
        memory.profile(args)
    out = capsys.readouterr().out
    assert "anp: forward " in out and "backward" in out
    assert "scaled_dot_product" in out  # the ANP's attention is among the operators shown
