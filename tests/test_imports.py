"""Imports run one way: the command line on top, the stages below it, each stage importing only the
stages before it. Checked over the real import graph of every module prefkit installs (plus the
repository's `app.py`), read from the source with `ast`: relative imports resolved, and imports inside
functions (the lazy ones) counted like any other.

The rules (docs/architecture.md draws them):
- `prefkit.cli` (the command line), `prefkit.score` and `prefkit.demo` sit on top: they may import any
  stage. Nothing below them imports them.
- `prefkit.annotate` imports no other stage; its app (`prefkit.annotate.app`) is imported only by
  itself, the top and `app.py`.
- `prefkit.curate` → `prefkit.annotate`; `prefkit.export` → `prefkit.curate`, `prefkit.annotate`;
  `prefkit.train` → no other stage.
- Every layer may import the leaves `prefkit` (the package itself) and `prefkit.files`.
- Nothing imports `app.py`, nor the bare names `annotate`, `curate`, `export`, `train` (they are
  `prefkit.*` now), nor a prefkit module by a name computed at run time.
- argparse is the command line's: no stage imports it.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]

TOP = ("prefkit.cli", "prefkit.score", "prefkit.demo")
LEAVES = ("prefkit", "prefkit.files")
STAGES = ("prefkit.annotate", "prefkit.curate", "prefkit.export", "prefkit.train")
APP_UI = "prefkit.annotate.app"
APP_SCRIPT = "app"  # the repository's app.py, which `streamlit run` starts
# The stages each stage may import, besides itself and the leaves.
MAY_IMPORT = {
    "prefkit.annotate": (),
    "prefkit.curate": ("prefkit.annotate",),
    "prefkit.export": ("prefkit.curate", "prefkit.annotate"),
    "prefkit.train": (),
}
OLD_NAMES = ("annotate", "curate", "export", "train", APP_SCRIPT)
# Calls to importlib.import_module with a name computed at run time: invisible to this check, so each
# one is listed with why it can never name a prefkit module.
DYNAMIC_OK = {"prefkit.annotate.ai.transport": "finds the httpx that the installed openai is built on"}
# A stage module that may import argparse, and why.
ARGPARSE_OK = {"prefkit.annotate.demo_store": "maintainers' `python -m` tool that rebuilds data/demo, not a command"}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int


@dataclass(frozen=True)
class Source:
    text: str
    is_package: bool  # an __init__.py: relative imports resolve against the module itself
    path: str = ""


def installed_sources(root: Path = ROOT) -> dict[str, Source]:
    """Every module under the folders pyproject maps into `prefkit` (`annotate/` is `prefkit.annotate`,
    …), and app.py, by dotted name."""
    mapping = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    sources: dict[str, Source] = {}
    for package, folder in mapping.items():
        for file in sorted((root / folder).rglob("*.py")):
            parts = [*package.split("."), *file.relative_to(root / folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            sources[name] = Source(file.read_text(), is_package, str(file.relative_to(root)))
    sources[APP_SCRIPT] = Source((root / "app.py").read_text(), False, "app.py")
    return sources


def _resolve(module: str, source: Source, level: int, name: str | None) -> str:
    package = module if source.is_package else module.rpartition(".")[0]
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - level + 1]) if level > 1 else package
    return f"{base}.{name}" if name else base


def imports(sources: Mapping[str, Source]) -> tuple[list[Import], list[str]]:
    """Every import of every module (top level, in functions, under TYPE_CHECKING), as the most precise
    module it names (`from prefkit.cli import ai` → `prefkit.cli.ai`); and the problems found on the way
    (an import_module with a computed name)."""
    found: list[Import] = []
    problems: list[str] = []
    for module, source in sources.items():
        tree = ast.parse(source.text, filename=source.path or module)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(module, alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, source, node.level, node.module) if node.level else node.module
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.append(Import(module, sub if sub in sources else base, node.lineno))
            elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append(Import(module, arg.value, node.lineno))
                elif module not in DYNAMIC_OK:
                    problems.append(
                        f"{source.path or module}:{node.lineno}: imports a module by a name computed at run time; "
                        "import it by name so the import graph shows it"
                    )
    return found, problems


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def _within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _layer(module: str) -> str | None:
    """The rule a module follows: a top module, a stage, a leaf, the app script; None if unknown."""
    if module == APP_SCRIPT:
        return APP_SCRIPT
    for prefix in (*TOP, *STAGES):
        if _within(module, [prefix]):
            return prefix
    return module if module in LEAVES else None


def violations(sources: Mapping[str, Source]) -> list[str]:
    """Every import that breaks a rule, one line each naming the file, line and what to do."""
    found, problems = imports(sources)
    for module in sources:
        if _layer(module) is None:
            where = sources[module].path or module
            problems.append(
                f"{where}: {module} is a new top-level prefkit module; give it a layer in tests/test_imports.py"
            )
    for imp in found:
        where = f"{sources[imp.importer].path or imp.importer}:{imp.line}"
        layer, target = _layer(imp.importer), imp.target
        if target.split(".")[0] in OLD_NAMES:
            what = "app.py" if target == APP_SCRIPT else f"the bare name {target!r}"
            problems.append(f"{where}: imports {what}; nothing imports app.py, and stages are prefkit.<stage>")
            continue
        if not _within(target, ["prefkit"]) or layer is None:
            if target == "argparse" and _within(imp.importer, STAGES) and imp.importer not in ARGPARSE_OK:
                problems.append(f"{where}: a stage imports argparse; flags belong in prefkit/cli/")
            continue
        if layer in TOP or target in LEAVES:
            continue
        if _within(target, TOP):
            problems.append(f"{where}: {imp.importer} imports {target}, which sits above it (the command line)")
        elif _within(target, [APP_UI]) and not (layer == APP_SCRIPT or _within(imp.importer, [APP_UI])):
            problems.append(f"{where}: {imp.importer} imports the labelling app ({target}); only the app does")
        elif layer == APP_SCRIPT:
            if not _within(target, [APP_UI]):
                problems.append(f"{where}: app.py imports {target}; it starts the app's pages only")
        elif layer in LEAVES:
            problems.append(f"{where}: the leaf {imp.importer} imports {target}; leaves import no other prefkit")
        elif not _within(target, [layer, *MAY_IMPORT[layer]]):
            allowed = ", ".join(MAY_IMPORT[layer]) or "no other stage"
            problems.append(f"{where}: {layer} imports {target}; it may import {allowed}")
    return list(dict.fromkeys(problems))  # `from x import a, b` is one line to fix, not two


# ---------------------------------------------------------------- the real tree


def test_the_real_tree_follows_the_rules():
    problems = violations(installed_sources())
    assert not problems, "\n".join(problems)


def test_tests_and_benchmarks_use_the_prefkit_names():
    """They are not installed, but a bare `import train` there would test a module no user has."""
    sources = {}
    for folder in ("tests", "bench"):
        for file in sorted((ROOT / folder).rglob("*.py")):
            parts = file.relative_to(ROOT).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            sources[name] = Source(file.read_text(), is_package, str(file.relative_to(ROOT)))
    found, _ = imports(sources)
    bare = [f"{sources[i.importer].path}:{i.line}: {i.target}" for i in found if i.target.split(".")[0] in OLD_NAMES]
    assert not bare, "\n".join(bare)


def test_the_graph_sees_lazy_relative_and_from_imports():
    """The check is only as good as the graph: it holds the imports it must see."""
    found, _ = imports(installed_sources())
    edges = {(i.importer, i.target) for i in found}
    assert ("prefkit.cli", "prefkit.cli.ai") in edges  # `from prefkit.cli import ai`, inside a function
    assert ("prefkit.cli.ai", "prefkit.annotate.ai.judge") in edges  # lazy, inside cmd_judge
    assert ("prefkit.cli.train", "prefkit.train.config") in edges
    assert ("app", "prefkit.annotate.app.pages.annotate") in edges
    modules = installed_sources()
    assert {"prefkit.cli", "prefkit.cli.train", "prefkit.annotate.store", "prefkit.train.losses"} <= set(modules)
    assert not any(m.endswith(".cli") and m != "prefkit.cli" for m in modules), "a stage still has a cli module"


def test_relative_imports_resolve_against_the_package():
    sources = {
        "prefkit.train": Source("from . import losses\n", True),
        "prefkit.train.losses": Source("", False),
        "prefkit.train.trainer": Source("from .losses import x\nfrom ..annotate import store\n", False),
        "prefkit.annotate": Source("", True),
        "prefkit.annotate.store": Source("", False),
    }
    found, _ = imports(sources)
    assert {(i.importer, i.target) for i in found} == {
        ("prefkit.train", "prefkit.train.losses"),
        ("prefkit.train.trainer", "prefkit.train.losses"),
        ("prefkit.train.trainer", "prefkit.annotate.store"),
    }


# ---------------------------------------------------------------- planted back-up imports


def _clean() -> dict[str, Source]:
    return {
        "prefkit": Source("", True),
        "prefkit.files": Source("import os\n", False),
        "prefkit.cli": Source("def f():\n    from prefkit.cli import train\n", True),
        "prefkit.cli.train": Source("import argparse\nfrom prefkit.train import config\n", False),
        "prefkit.score": Source("from prefkit.annotate import store\nfrom prefkit.cli import add_command\n", False),
        "prefkit.annotate": Source("", True),
        "prefkit.annotate.store": Source("from prefkit import files\n", False),
        "prefkit.annotate.app": Source("", True),
        "prefkit.annotate.app.pages": Source("from prefkit.annotate import store\n", False),
        "prefkit.curate": Source("", True),
        "prefkit.curate.pipeline": Source("from prefkit.annotate.store import Store\n", False),
        "prefkit.export": Source("", True),
        "prefkit.export.exporter": Source("from prefkit.curate import pipeline\nimport prefkit.annotate\n", False),
        "prefkit.train": Source("", True),
        "prefkit.train.config": Source("from . import losses\n", False),
        "prefkit.train.losses": Source("import torch\n", False),
        APP_SCRIPT: Source("from prefkit.annotate.app import pages\n", False),
    }


def test_a_clean_synthetic_tree_passes():
    assert violations(_clean()) == []


PLANTED = [
    ("prefkit.train.x", "def f():\n    from prefkit.annotate.store import Store\n", "prefkit.train imports"),
    ("prefkit.train.x", "from ..annotate import store\n", "prefkit.train imports prefkit.annotate.store"),
    ("prefkit.annotate.y", "from prefkit.cli import add_command\n", "sits above it"),
    ("prefkit.export.y", "import prefkit.cli.export\n", "sits above it"),
    ("prefkit.train.y", "from prefkit import score\n", "sits above it"),
    ("prefkit.annotate.y", "from prefkit.curate import pipeline\n", "prefkit.annotate imports prefkit.curate"),
    ("prefkit.curate.y", "from prefkit.export import exporter\n", "prefkit.curate imports prefkit.export"),
    ("prefkit.curate.y", "from prefkit.annotate.app import pages\n", "only the app does"),
    ("prefkit.files", "from prefkit.annotate import store\n", "the leaf prefkit.files"),
    ("prefkit.curate.y", "import app\n", "imports app.py"),
    ("prefkit.cli.z", "from annotate.store import Store\n", "the bare name 'annotate.store'"),
    ("prefkit.train.y", "import train.losses\n", "the bare name 'train.losses'"),
    ("prefkit.export.y", "from curate import pipeline\n", "the bare name 'curate'"),
    ("prefkit.curate.y", "import export\n", "the bare name 'export'"),
    ("prefkit.cli.z", "import importlib\nfor n in ['a']:\n    importlib.import_module(n)\n", "computed at run time"),
    ("prefkit.train.y", "import importlib\nimportlib.import_module('prefkit.curate')\n", "prefkit.train imports"),
    ("prefkit.train.y", "import argparse\n", "a stage imports argparse"),
    ("prefkit.newthing", "", "a new top-level prefkit module"),
    ("app", "from prefkit.train import losses\n", "app.py imports prefkit.train.losses"),
]


@pytest.mark.parametrize(("module", "code", "message"), PLANTED, ids=[f"{m}:{c.strip()[:40]}" for m, c, _ in PLANTED])
def test_a_planted_back_up_import_fails(module, code, message):
    sources = _clean()
    sources[module] = Source(code, False, module.replace(".", "/") + ".py")
    problems = violations(sources)
    assert len(problems) == 1 and message in problems[0], problems
    assert problems[0].startswith(sources[module].path)


def test_one_line_per_import_statement():
    sources = _clean()
    sources["prefkit.train.y"] = Source("from prefkit.annotate.store import Store, StoreError\n", False, "y.py")
    assert len(violations(sources)) == 1


def test_a_back_up_import_planted_in_a_copy_of_the_tree_fails(tmp_path):
    """The whole path, from files on disk: a copy of the repository's modules with one bad import added."""
    for name in ("pyproject.toml", "app.py"):
        shutil.copy2(ROOT / name, tmp_path / name)
    for folder in ("prefkit", "annotate", "curate", "export", "train"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(installed_sources(tmp_path)) == []
    losses = tmp_path / "train" / "losses.py"
    losses.write_text(losses.read_text() + "\n\ndef _planted():\n    from prefkit.annotate.store import Store\n")
    problems = violations(installed_sources(tmp_path))
    assert len(problems) == 1 and problems[0].startswith("train/losses.py:"), problems
    assert "prefkit.train imports prefkit.annotate.store" in problems[0]
