"""Imports follow the data: a part imports only parts below it (never back up, never in a circle).

Layers, lowest first: shared basics; the lake; what reads the lake directly (ingest, retrieval, sql);
instructions; the model (scorers, tuning, fusion); the Ray scoring job; evaluation; the pipeline that
runs stages; the CLI. Checked on the source with ``ast``, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "instructrec_batch"
LAYERS = [
    {"config", "errors", "logs", "text", "spark", "metrics", "tokenizers", "tables", "versions", "progress", "__init__"},
    {"lake"},
    {"ingest", "retrieval", "sql"},
    {"instructions"},
    {"model"},
    {"scoring"},
    {"evaluation"},
    {"pipeline"},
    {"cli"},
]
LEVEL = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> list[tuple[str, str, str]]:
    """(importing module, its part, imported part) for every import of the package by itself."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [target]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("instructrec_batch"):
                    found.append((module, _part(module), _part(name)))
    return found


def test_every_part_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())}
    assert parts <= set(LEVEL), f"parts without a layer: {sorted(parts - set(LEVEL))}"


def test_imports_never_go_back_up():
    upward = [(module, target) for module, part, target in imports()
              if part != target and LEVEL[target] >= LEVEL[part] and LEVEL[part] != 0]
    assert not upward, "imports against the data flow (module -> part): " + ", ".join(f"{m} -> {t}" for m, t in upward)


def test_shared_basics_import_no_other_part():
    basics = [(m, t) for m, p, t in imports() if LEVEL[p] == 0 and LEVEL[t] != 0]
    assert not basics, basics
