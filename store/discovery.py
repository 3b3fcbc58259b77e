"""Finding summary directories below a base directory, the way ``xaiboard ls`` and the server do."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .database import SHARDS, is_summary_dir

MAX_DEPTH = 6


def find_summary_dirs(base: str | Path, max_depth: int = MAX_DEPTH) -> Iterator[Path]:
    """Yield every directory below ``base`` (itself included) that holds ``xaiboard.db`` or a sharded run's
    ``shards/`` (not the shards themselves), sorted by path.

    Descends at most ``max_depth`` levels, skips hidden directories, and ignores symlinks that resolve outside
    ``base``; directories it cannot list are skipped.
    """
    root = Path(base).resolve()

    def walk(directory: Path, depth: int) -> Iterator[Path]:
        summary = is_summary_dir(directory)
        if summary:
            yield directory
        if depth >= max_depth:
            return
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(".") or (summary and entry.name == SHARDS):
                continue  # a sharded run's shards are parts of it, not summaries of their own
            try:
                if not entry.is_dir():
                    continue
                path = Path(entry.path)
                if entry.is_symlink():
                    target = path.resolve()
                    if not target.is_relative_to(root) or target == root:
                        continue
            except OSError:
                continue
            yield from walk(path, depth + 1)

    if root.is_dir():
        yield from walk(root, 0)


def contained_path(base: str | Path, relative: str) -> Path | None:
    """Resolve ``relative`` below ``base``; None when it points outside (``..``, absolute paths, symlinks out)."""
    root = Path(base).resolve()
    if "\\" in relative or relative.startswith("/") or "\x00" in relative:
        return None
    target = (root / relative).resolve()
    return target if target.is_relative_to(root) else None
