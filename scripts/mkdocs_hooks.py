"""MkDocs hooks of the npkit docs site: pages generated from the code, so they never drift.

Markers a page may hold (each on its own line):

- ``<!-- npkit:api -->``: a mkdocstrings entry for every name in ``npkit.__all__``, grouped.
- ``<!-- npkit:cli -->``: the ``--help`` of ``npkit`` and of each sub-command, from its argparse parser.
- ``<!-- npkit:presets NAME ... -->``: a table of the YAML presets whose model is one of NAME
  (``all``: every preset), with the first line of each preset's comment.
- ``<!-- npkit:config NAME -->``: the fields of the config dataclass of the family ``NAME`` of
  ``npkit.MODELS``, with their types, defaults and the descriptions of the Attributes sections of
  the class and its bases.

Links from a page to files of the repository outside ``docs/`` (``../benchmarks/gp1d.py``) are
checked to exist and written as code (the site has no copy of them); a missing one fails the build.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent

API_GROUPS = {
    "Models": ("npkit.models",),
    "Predictive heads": ("npkit.likelihoods",),
    "Predictions and sampling": ("npkit.predictive", "npkit.autoregressive"),
    "Data and tasks": ("npkit.data", "npkit.tasks"),
    "Objectives": ("npkit.objectives",),
    "Training and checkpoints": ("npkit.train", "npkit.settings", "npkit.runs"),
    "Evaluation and baselines": ("npkit.evaluation.metrics", "npkit.baselines", "npkit.evaluation.completion"),
    "Diagnostics": ("npkit.evaluation.diagnostics",),
    "Neural Statistician metrics": ("npkit.evaluation.statistician",),
    "Plots": ("npkit.plot.figures",),
    "Pyro": ("npkit.pyro",),
    "Your own data": ("npkit.estimator",),
}
MARKER = re.compile(r"^<!-- npkit:(\w+)((?: [\w.-]+)*) -->$", re.MULTILINE)
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def api_reference() -> str:
    """``::: module.name`` entries of every public function and class, and a table of the constants."""
    import npkit

    groups: dict[str, list[str]] = {title: [] for title in API_GROUPS}
    constants = []
    for name in npkit.__all__:
        obj = getattr(npkit, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            constants.append(name)
            continue
        module = obj.__module__
        title = next((t for t, prefixes in API_GROUPS.items() if module.startswith(prefixes)), None)
        if title is None:
            raise PluginError(f"npkit.{name} ({module}) has no group in API_GROUPS of {__file__}")
        groups[title].append(f"::: {module}.{obj.__qualname__}")
    parts = []
    for title, entries in groups.items():
        if entries:
            parts += [f"## {title}", "", *(f"{e}\n" for e in entries)]
    parts += ["## Registries", "", "| name | keys |", "|---|---|"]
    for name in constants:
        value = getattr(npkit, name)
        keys = ", ".join(f"`{k}`" for k in sorted(value)) if isinstance(value, dict) else f"`{value!r}`"
        parts.append(f"| `npkit.{name}` | {keys} |")
    return "\n".join(parts)


def cli_reference() -> str:
    """The help text of ``npkit`` and of each of its sub-commands."""
    import argparse

    from npkit.cli import build_parser

    parser = build_parser()
    parser.prog = "npkit"
    parts = ["## npkit", "", "```text", parser.format_help().rstrip(), "```", ""]
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in actions:
        for name, sub in action.choices.items():
            parts += [f"## npkit {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def presets_table(models: list[str]) -> str:
    """A table of the presets whose ``model.name`` is in ``models`` (``all``: every preset)."""
    import yaml

    rows = ["| preset | model | data | objective | what it is |", "|---|---|---|---|---|"]
    for path in sorted((ROOT / "npkit" / "configs").glob("*.yaml")):
        text = path.read_text()
        config = yaml.safe_load(text)
        model = config["model"]["name"]
        if "all" not in models and model not in models:
            continue
        comment = next((line[1:].strip() for line in text.splitlines() if line.startswith("#")), "")
        data, objective = config.get("data", {}).get("name", "-"), config.get("objective", {}).get("name", "-")
        rows.append(f"| `{path.stem}` | `{model}` | `{data}` | `{objective}` | {comment.replace('|', '/')} |")
    if len(rows) == 2:
        raise PluginError(f"no preset has a model among {models}")
    return "\n".join(rows)


ATTRIBUTE = re.compile(r"^ {4}(\w+)(?: \([^)]*\))?: ?(.*)$")


def attribute_docs(cls) -> dict[str, str]:
    """{field: description} from the ``Attributes:`` sections of ``cls`` and its bases (the
    most derived class's entry wins)."""
    found: dict[str, str] = {}
    for klass in cls.__mro__:
        own: dict[str, str] = {}
        inside, name = False, None
        for line in inspect.cleandoc(klass.__dict__.get("__doc__") or "").splitlines():
            if line.strip() == "Attributes:":
                inside = True
            elif inside and line and not line.startswith(" "):
                inside = False  # the next section
            elif inside and (item := ATTRIBUTE.match(line)):
                name = item.group(1)
                own[name] = item.group(2).strip()
            elif inside and name and line.startswith(" " * 8):
                own[name] += " " + line.strip()
        for key, text in own.items():
            found.setdefault(key, text)
    return found


def config_table(family: str) -> str:
    """A table of the fields of ``npkit.MODELS[family].config_class``."""
    import dataclasses

    import npkit

    if family not in npkit.MODELS:
        raise PluginError(f"npkit:config {family}: not a family of npkit.MODELS ({sorted(npkit.MODELS)})")
    cls = npkit.MODELS[family].config_class
    docs = attribute_docs(cls)
    rows = [f"`npkit.{cls.__name__}`, the `model:` section of a run config:", "", "| field | type | default | |"]
    rows.append("|---|---|---|---|")
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default = f"`{field.default!r}`"
        elif field.default_factory is not dataclasses.MISSING:
            default = f"`{field.default_factory()!r}`"
        else:
            default = "required"
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
        text = docs.get(field.name, "").replace("|", "\\|")
        if not text:
            raise PluginError(f"npkit.{cls.__name__}.{field.name} has no description in an Attributes section")
        rows.append(f"| `{field.name}` | `{kind}` | {default} | {text} |")
    return "\n".join(rows)


def expand(match: re.Match) -> str:
    kind, args = match.group(1), match.group(2).split()
    if kind == "api":
        return api_reference()
    if kind == "cli":
        return cli_reference()
    if kind == "presets":
        return presets_table(args)
    if kind == "config":
        return config_table(args[0])
    raise PluginError(f"unknown marker npkit:{kind}")


def outside_links(markdown: str, page_path: Path, docs_dir: Path) -> str:
    """Links to repository files outside docs/ as code, after checking that the file exists."""

    def rewrite(match: re.Match) -> str:
        bang, text, target = match.groups()
        if re.match(r"^[a-z]+:|^#|^/", target):
            return match.group(0)
        path = (page_path.parent / target.split("#")[0]).resolve()
        if path.is_relative_to(docs_dir):
            return match.group(0)  # MkDocs checks links between pages
        if not path.exists():
            raise PluginError(f"{page_path.relative_to(docs_dir)} links to {target}, which does not exist")
        if bang:
            raise PluginError(f"{page_path.relative_to(docs_dir)} shows {target}, outside docs/")
        shown = path.relative_to(ROOT).as_posix()
        return f"{text} (`{shown}`)" if text.strip("`") != shown else f"`{shown}`"

    return LINK.sub(rewrite, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    markdown = MARKER.sub(expand, markdown)
    return outside_links(markdown, docs_dir / page.file.src_path, docs_dir)
