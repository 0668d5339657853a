"""Versioned folders on disk: what the model registry and the retriever registry both publish into.

    <root>/<name>/<version>/<card file>   a finished version (v0001, v0002, ...) and its card
    <root>/<name>/latest                  one line: the version `latest` resolves to

A version is assembled in a hidden temporary folder and renamed into place in one step, and ``latest``
is rewritten with os.replace after that, so a crash at any point leaves either no new version or a
complete one; ``latest`` never points at a half-written folder. Two publishers racing for the same
number cannot both win the rename; the loser takes the next one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

LATEST = "latest"
_VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    path: Path
    card: dict[str, Any] = field(compare=False)


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def list_versions(root: Path, name: str, card_file: str) -> list[str]:
    """Finished versions of `name`, oldest first (temporary folders are hidden and not listed)."""
    folder = root / name
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p.name) for p in folder.iterdir()
             if (m := _VERSION.match(p.name)) and (p / card_file).exists()]
    return [v for _, v in sorted(found)]


def list_names(root: Path, card_file: str) -> dict[str, list[str]]:
    if not root.is_dir():
        return {}
    return {p.name: list_versions(root, p.name, card_file) for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith(".")}


def resolve(root: Path, name: str, version: str, card_file: str, missing: Callable[[], str]) -> Version:
    """A finished version: `version` is explicit (v0003) or 'latest'. `missing()` builds the error
    message (the caller knows which command publishes one)."""
    from .errors import ModelNotFoundError

    folder = root / name
    if version == LATEST:
        pointer = folder / LATEST
        if not pointer.exists():
            raise ModelNotFoundError(missing())
        version = pointer.read_text().strip()
    path = folder / version
    if not _VERSION.match(version) or not (path / card_file).exists():
        raise ModelNotFoundError(missing())
    return Version(name, version, path, json.loads((path / card_file).read_text()))


@contextmanager
def publishing(root: Path, name: str, card_file: str, card: dict[str, Any]) -> Iterator[tuple[Path, dict]]:
    """Yields (temporary folder, result): write the version's files into the folder; on a clean exit it
    becomes the next version with `card` (plus name, version, created_at) and `latest` points at the
    newest finished version; result["version"] names it. On an error the folder is removed."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".publishing-"))
    result: dict = {}
    try:
        yield tmp, result
        full = {"name": name, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **card}
        result["version"] = _rename_to_next_version(tmp, folder, card_file, full)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # `latest` names the newest finished version, so a slower concurrent publisher cannot move it back.
    write_text_atomic(folder / LATEST, list_versions(root, name, card_file)[-1] + "\n")


def _rename_to_next_version(tmp: Path, folder: Path, card_file: str, card: dict) -> str:
    for _ in range(100):
        existing = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
        version = f"v{max(existing, default=0) + 1:04d}"
        write_json_atomic(tmp / card_file, {**card, "version": version})
        try:
            tmp.rename(folder / version)  # fails if another publisher took this number first
            return version
        except OSError:
            continue
    raise RuntimeError(f"could not allocate a new version under {folder}")


def update_card(root: Path, name: str, version: str, card_file: str, missing: Callable[[], str],
                fields: dict[str, Any]) -> Version:
    """Add or replace card fields of a finished version; the card is rewritten atomically."""
    reserved = {"name", "version"} & set(fields)
    if reserved:
        raise ValueError(f"card fields {sorted(reserved)} identify the version and cannot change")
    current = resolve(root, name, version, card_file, missing)
    write_json_atomic(current.path / card_file, {**current.card, **fields})
    return resolve(root, current.name, current.version, card_file, missing)
