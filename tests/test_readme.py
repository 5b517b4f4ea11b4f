"""The README stays true: its Python example runs (with fewer steps) and the public API resolves."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert "steps=2000" in code
    code = code.replace("steps=2000", "steps=3, progress=False").replace("num_batches=20", "num_batches=2")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GP oracle" in result.stdout and (tmp_path / "predictions.png").is_file()
    assert (tmp_path / "my-anp" / "model.safetensors").is_file()


def test_public_functions_are_functions_even_after_their_modules_load():
    import npkit.baselines.gp
    import npkit.evaluation.metrics
    import npkit.plot.figures

    for name in npkit.__all__:
        value = getattr(npkit, name)
        assert not isinstance(value, type(npkit)), f"npkit.{name} is a module, not the public object"
