"""Every public function and class (``npkit.__all__``) has a Google-style docstring.

The API reference of the docs site is rendered from these docstrings by mkdocstrings
(``docs/reference/api.md``), so each one needs a one-line summary, every parameter under
``Args:`` (a dataclass: every field under ``Attributes:``) and, when something is returned, a
``Returns:`` section. The sections are parsed as griffe parses them (a title after a blank
line, items indented four spaces, continuations eight), not searched for the words: a
parameter named only in the prose, or in a section griffe would not read, counts as missing.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
from pathlib import Path

import pytest

import npkit

TITLE = re.compile(r"^(?P<title>[A-Z][A-Za-z ]*):$")
ITEM = re.compile(r"^ {4}(?P<name>\*{0,2}[A-Za-z_]\w*)(?: \((?P<type>.+?)\))?:(?P<text>.*)$")


def _public() -> dict[str, object]:
    """The functions and classes of ``npkit.__all__``, lazily loaded ones included."""
    objects = {name: getattr(npkit, name) for name in npkit.__all__}
    return {name: obj for name, obj in objects.items() if inspect.isclass(obj) or inspect.isfunction(obj)}


PUBLIC = _public()
FUNCTIONS = sorted(name for name, obj in PUBLIC.items() if inspect.isfunction(obj))
DATACLASSES = sorted(name for name, obj in PUBLIC.items() if dataclasses.is_dataclass(obj))


def docstring(obj) -> str:
    """The object's own docstring, cleaned ("" without one; never a base class's, as
    ``inspect.getdoc`` would give)."""
    own = obj.__doc__ if isinstance(obj.__doc__, str) else ""
    return inspect.cleandoc(own) if own.strip() else ""


def sections(doc: str) -> dict[str, list[str]]:
    """Section title -> its lines, as griffe's Google parser reads them: a ``Title:`` line with
    a blank line above and an indented line below opens a section, which runs to the next line
    that is neither blank nor indented. Text outside sections is under ""."""
    lines = doc.splitlines()
    found: dict[str, list[str]] = {"": []}
    title, fenced = "", False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else TITLE.match(line)
        opens = match and (i == 0 or not lines[i - 1].strip()) and i + 1 < len(lines) and lines[i + 1][:1] == " "
        if opens:
            title = match["title"]
            found.setdefault(title, [])
        elif title and line.strip() and not line.startswith(" "):
            title = ""
            found[""].append(line)
        else:
            found[title].append(line)
    return found


def items(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """The entries of an ``Args:`` / ``Attributes:`` section: name (stars stripped) -> its
    description, and the lines griffe could not read as an entry or a continuation."""
    entries: dict[str, str] = {}
    bad: list[str] = []
    current = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if not line.strip():
            continue
        if indent >= 8 and current is not None:
            entries[current] += " " + line.strip()
        elif indent == 4 and (match := ITEM.match(line)):
            current = match["name"].lstrip("*")
            entries[current] = match["text"].strip()
        else:
            bad.append(line)
    return entries, bad


def documented(doc: str, title: str) -> dict[str, str]:
    return items(sections(doc).get(title, []))[0]


def constructor(cls: type):
    """The ``__init__`` a class is built with when npkit defines it, else None (``object``'s,
    an exception's or a protocol's take nothing to document)."""
    init = next((vars(k)["__init__"] for k in cls.__mro__ if "__init__" in vars(k)), None)
    return init if getattr(init, "__module__", "").startswith("npkit") else None


def parameters(obj) -> list[str]:
    """What a docstring must document: a function's parameters, a dataclass's fields or the
    parameters of a class's constructor (but ``self``)."""
    if not inspect.isclass(obj):
        return list(inspect.signature(obj).parameters)
    if dataclasses.is_dataclass(obj):
        return [f.name for f in dataclasses.fields(obj)]
    init = constructor(obj)
    return [] if init is None else list(inspect.signature(init).parameters)[1:]


def documented_fields(cls: type) -> dict[str, str]:
    """The ``Attributes:`` entries of a dataclass and of the npkit base classes its docstring
    names ("the fields of ModelConfig plus ..."), recursively."""
    doc = docstring(cls)
    found = documented(doc, "Attributes")
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("npkit") and re.search(rf"\b{base.__name__}\b", doc):
            found = {**documented_fields(base), **found}
    return found


def missing(obj) -> list[str]:
    """The parameters (fields) of ``obj`` with no entry, or an empty one, in its docstring."""
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        entries = documented_fields(obj)
    else:
        entries = documented(docstring(obj), "Args")
    return [name for name in parameters(obj) if not entries.get(name)]


# ----------------------------------------------------------------------------- the public names


def test_every_public_name_is_checked():
    """Names that are neither functions nor classes are the registries (plain dicts); anything
    else (a ``functools.partial``, an instance) would escape the checks below."""
    others = {name: getattr(npkit, name) for name in npkit.__all__ if name not in PUBLIC}
    assert all(isinstance(value, dict) for value in others.values()), {k: type(v) for k, v in others.items()}
    assert set(PUBLIC) | set(others) == set(npkit.__all__)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_summary_line(name):
    doc = docstring(PUBLIC[name])
    assert doc, f"npkit.{name} has no docstring"
    lines = doc.splitlines()
    assert lines[0].strip().endswith("."), f"npkit.{name}: the summary line must end with '.': {lines[0]!r}"
    assert len(lines) == 1 or not lines[1].strip(), f"npkit.{name}: the summary must be one line, then a blank line"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_parameters_documented(name):
    obj = PUBLIC[name]
    section = "Attributes" if name in DATACLASSES else "Args"
    absent = missing(obj)
    assert not absent, f"npkit.{name}: {absent} not documented under {section}: (as 'name: description')"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_no_stale_entries(name):
    """Every entry names a real parameter or field, and every line of the section is an entry or
    a continuation: a renamed parameter with the old name still documented fails here (and
    fails the strict docs build, where griffe warns about it)."""
    obj = PUBLIC[name]
    doc = docstring(obj)
    section = "Attributes" if name in DATACLASSES else "Args"
    entries, bad = items(sections(doc).get(section, []))
    assert not bad, f"npkit.{name}: lines of {section}: that are neither 'name: description' nor indented 8: {bad}"
    known = set(parameters(obj))
    if section == "Attributes":
        known |= {n for n in entries if hasattr(obj, n)}  # properties and class attributes
    unknown = sorted(set(entries) - known)
    assert not unknown, f"npkit.{name}: {section}: documents {unknown}, which {name} does not have"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_returns_documented(name):
    returned = inspect.signature(PUBLIC[name]).return_annotation
    if returned in (None, "None"):
        return
    found = sections(docstring(PUBLIC[name]))
    lines = [line for title in ("Returns", "Yields") for line in found.get(title, []) if line.strip()]
    assert lines, f"npkit.{name} returns {returned} but has no Returns: section"
    # griffe reads every line indented 4 as one more returned value (a tuple's), 8 as a continuation
    entries = [line for line in lines if len(line) - len(line.lstrip()) == 4]
    assert len(entries) == 1 or str(returned).startswith("tuple"), (
        f"npkit.{name}: Returns: reads as {len(entries)} values; indent its continuation lines by 8"
    )


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_examples_section_title(name):
    """mkdocstrings reads ``>>>`` lines as code only under ``Examples:``; under ``Example:`` they
    become an admonition in which Markdown shows them as block quotes."""
    assert "Example" not in sections(docstring(PUBLIC[name])), f"npkit.{name}: title the section 'Examples:'"


def test_griffe_reads_the_docstrings_without_warnings():
    """The docs build is strict: any griffe warning (an entry naming no parameter, a parameter
    without a type in the signature or the entry, a confusing indentation) fails it."""
    griffe = pytest.importorskip("griffe")
    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    logger, handler = logging.getLogger("griffe"), Collect()
    logger.addHandler(handler)
    try:
        source = str(Path(npkit.__file__).parent.parent)  # the npkit imported here
        package = griffe.load("npkit", search_paths=[source], docstring_parser="google", resolve_aliases=False)
        for name, obj in PUBLIC.items():
            loaded = package[f"{obj.__module__}.{obj.__qualname__}".removeprefix("npkit.")]
            before = len(warnings)
            loaded.docstring.parse("google")
            warnings[before:] = [f"npkit.{name}: {message}" for message in warnings[before:]]
    finally:
        logger.removeHandler(handler)
    assert not warnings, "\n".join(warnings)


# ----------------------------------------------------------------------------- the checker itself


def _example(xc, mask_c=None, **options) -> int:
    """Predict something from ``xc``, masked by ``mask_c``.

    Args:
        xc: context inputs `[batch, n_context, x_dim]`.
        **options: passed on.
    Returns:
        A number.
    """


def test_checker_reads_sections_not_words():
    """``mask_c`` is named in the prose only, and the ``Returns:`` title has no blank line
    above it, so griffe would render it as text: both count as missing."""
    assert missing(_example) == ["mask_c"]
    assert "Returns" not in sections(docstring(_example))


def test_checker_finds_a_new_parameter():
    def grown(xc, mask_c=None, num_samples: int = 1) -> int:
        """Predict something.

        Args:
            xc: context inputs.
            mask_c: context mask.

        Returns:
            A number.
        """

    assert missing(grown) == ["num_samples"]


def test_checker_reads_fields_of_named_bases_only():
    @dataclasses.dataclass
    class Base:
        """Options.

        Attributes:
            size: a size.
        """

        size: int = 1

    @dataclasses.dataclass
    class Named(Base):
        """More options: the fields of Base plus a name.

        Attributes:
            name: a name.
        """

        name: str = ""

    @dataclasses.dataclass
    class Unnamed(Base):
        """More options.

        Attributes:
            name: a name.
        """

        name: str = ""

    for cls in (Base, Named, Unnamed):
        cls.__module__ = "npkit.example"
    assert missing(Named) == []
    assert missing(Unnamed) == ["size"]


def test_every_registered_family_and_its_config_are_public():
    """Step 3 of the Design page's checklist cannot be forgotten: a family in ``MODELS`` without
    its class (and config dataclass) in ``npkit.__all__`` would have no documentation checks here
    and no entry in the API reference."""
    for family in npkit.MODELS.values():
        for cls in (family, family.config_class):
            assert PUBLIC.get(cls.__name__) is cls, f"npkit.{cls.__name__} (of MODELS[{family.name!r}]) is not public"
