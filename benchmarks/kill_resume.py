"""SIGKILL `npkit train` at random moments (mid-step, mid-checkpoint-write), resume each time, and
check the final model is bit-identical to an uninterrupted run.

    python benchmarks/kill_resume.py --kills 30 [--steps 300] [--checkpoint-every 5] [--seed 0]

Prints one line per kill (when, the step the run had reached) and a final verdict.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from npkit.runs import load_model

TINY = ("model.hidden_dim=16", "model.r_dim=16", "model.z_dim=4")


def train_argv(run: Path, args: argparse.Namespace, resume: bool) -> list[str]:
    argv = [sys.executable, "-m", "npkit.cli", "train"]
    argv += ["--resume"] if resume else ["quickstart"]
    sets = (f"train.steps={args.steps}", f"train.checkpoint_every={args.checkpoint_every}", "train.progress=false")
    sets += ("train.eval_every=null", *TINY) if not resume else ()
    return argv + ["--run-dir", str(run)] + [f"--set={s}" for s in sets]


def reached(run: Path) -> int:
    pointer = run / "checkpoints" / "latest.json"
    return json.loads(pointer.read_text())["step"] if pointer.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"command: python benchmarks/kill_resume.py {' '.join(sys.argv[1:])}")
    with tempfile.TemporaryDirectory() as tmp:
        straight, killed = Path(tmp) / "straight", Path(tmp) / "killed"
        subprocess.run(train_argv(straight, args, resume=False), check=True, capture_output=True)
        kills = 0
        while not (killed / "model").exists():
            start_time = time.perf_counter()
            process = subprocess.Popen(
                train_argv(killed, args, resume=(killed / "config.yaml").exists()),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            if kills < args.kills:
                time.sleep(rng.uniform(1.5, 4.0))  # start-up takes ~1.5 s; then mid-training
                process.kill()
                _, err = process.communicate()
                kills += 1
                elapsed = time.perf_counter() - start_time
                print(f"kill {kills:3d} after {elapsed:4.1f} s: latest checkpoint step {reached(killed)}")
            else:
                _, err = process.communicate()
                if process.returncode:
                    raise SystemExit(f"the final resume failed:\n{err}")
        a, b = load_model(straight / "model"), load_model(killed / "model")
        same = all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
        print(f"{kills} kills; final parameters {'bit-identical' if same else 'DIFFERENT'} to the uninterrupted run")
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
