import importlib
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from npkit.models import MODELS, NeuralProcess


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The tests use tiny tensors, for which intra-op threads only contend (many times slower on
    a busy 2-core machine). Subprocess tests (DDP, CLI kill/resume) set their own threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@contextmanager
def benchmark_script(name: str):
    """The script ``benchmarks/<name>.py`` as a module (its sibling imports need benchmarks/ on
    sys.path); the path and every benchmark script it loaded are removed after."""
    before = set(sys.modules)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))
        for loaded in set(sys.modules) - before:
            if Path(getattr(sys.modules[loaded], "__file__", None) or "/").parent == BENCHMARKS:
                del sys.modules[loaded]


# Model-wide tests run over every registered NeuralProcess (a new family gets them by its
# registry line) and over TNP-D with a non-Gaussian predictive head: a test name is a family,
# or a family with the options of its head.
HEAD_VARIANTS = {"tnpd-mixture": ("tnpd", {"likelihood": "mixture", "mixture_components": 3})}
FAMILIES = [name for name, cls in MODELS.items() if issubclass(cls, NeuralProcess)]
MODEL_WIDE = [*FAMILIES, *HEAD_VARIANTS]


def family_of(name: str) -> str:
    """The model family of a test name (``tnpd-mixture`` -> ``tnpd``)."""
    return HEAD_VARIANTS.get(name, (name, {}))[0]


def build_variant(name: str, **options):
    """Model ``name`` (a family or a HEAD_VARIANTS key) with the options its config class has;
    ``options`` override the variant's head options."""
    from dataclasses import fields

    from npkit.models import MODELS, build_model

    family, head = HEAD_VARIANTS.get(name, (name, {}))
    known = {f.name for f in fields(MODELS[family].config_class)}
    return build_model(family, **{k: v for k, v in {**head, **options}.items() if k in known})
