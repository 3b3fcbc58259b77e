"""The summaries the server knows: found below BASE_DIR, opened read-only, kept open, re-scanned on an interval.

Each summary directory gets an id made from its path relative to BASE_DIR (a slug plus a short hash), so a link
stays valid across restarts and never carries a filesystem path the server would have to trust. Directories that
cannot be opened stay listed with their error. Per-summary results that are costly to compute (the list row, score
tables) are memoised until the database file changes (its inode, size or modification time, or those of its WAL).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

from xaiboard.store import DB_NAME, Summary, SummaryError, file_signature, find_summary_dirs
from xaiboard.store.discovery import MAX_DEPTH

log = logging.getLogger(__name__)
T = TypeVar("T")


def summary_id(relative: str) -> str:
    """A URL-safe id that is stable for a relative path: a readable slug and 10 hex digits of its SHA-256."""
    slug = re.sub(r"[^a-z0-9]+", "-", relative.lower()).strip("-")[:48].strip("-") or "summary"
    return f"{slug}-{hashlib.sha256(relative.encode('utf-8', 'surrogateescape')).hexdigest()[:10]}"


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class Entry:
    """One summary directory below BASE_DIR: the opened :class:`Summary` or the reason it cannot be read."""

    def __init__(self, entry_id: str, relative: str, directory: Path) -> None:
        self.id = entry_id
        self.path = relative
        self.directory = directory
        self.summary: Optional[Summary] = None
        self.error: Optional[str] = None
        self.signature: Optional[tuple[int, ...]] = None
        self._memo: dict[Any, Any] = {}
        self._lock = threading.RLock()

    # -- opening and refreshing ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-open or forget memoised results when the database changed since last look (cheap when it did not)."""
        signature = file_signature(self.directory)
        if signature == self.signature and (self.summary is not None or self.error is not None):
            return
        with self._lock:
            if signature == self.signature and (self.summary is not None or self.error is not None):
                return
            previous, self.signature = self.signature, signature
            self._memo = {}
            if signature is None:
                self._close()
                self.error = f"{DB_NAME} is gone"
                return
            replaced = previous is None or previous[0] != signature[0]
            # A summary opened before its labels were written would keep an empty label list: reopen it too.
            unlabelled = self.summary is not None and not self.summary.labels()
            if self.summary is None or replaced or unlabelled:
                self._open()

    def _open(self) -> None:
        self._close()
        try:
            self.summary = Summary.open(self.directory)
            self.error = None
        except SummaryError as error:
            self.error = _one_line(error)
        except Exception as error:  # noqa: BLE001 - a broken file must never take the server down
            self.error = f"cannot open the summary ({type(error).__name__}: {_one_line(error)})"

    def _close(self) -> None:
        if self.summary is not None:
            try:
                self.summary.close()
            except Exception:  # noqa: BLE001
                pass
        self.summary = None

    def close(self) -> None:
        with self._lock:
            self._close()

    # -- memoised results ----------------------------------------------------------------------------------------

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        """``compute()`` once per version of the database file (refreshes first)."""
        self.refresh()
        memo = self._memo
        if key in memo:
            return memo[key]
        with self._lock:  # one thread computes; the others wait for its result instead of repeating the work
            if key in memo:
                return memo[key]
            value = compute()
            if memo is self._memo:
                memo[key] = value
        return value

    @property
    def token(self) -> str:
        """Changes when the directory holds a different run (overwritten): goes into image URLs for caching."""
        def compute() -> str:
            created = self.summary.run().created_at if self.summary is not None else None
            inode = self.signature[0] if self.signature else 0
            return hashlib.sha256(f"{created!r}:{inode}".encode()).hexdigest()[:12]

        return self.memo("token", compute)

    def row(self) -> dict[str, Any]:
        """The summary's line in the list (``GET /api/v1/summaries``)."""
        return self.memo("row", self._row)

    def _row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self.id, "name": self.directory.name if self.path != "." else self.directory.resolve().name,
            "path": self.path, "status": "error", "progress": {"done": 0, "total": None}, "created_at": None,
            "updated_at": None, "num_samples": 0, "explainers": [], "metrics": [], "error": self.error,
        }
        if self.summary is None:
            return row
        try:
            overview = self.summary.overview()
        except Exception as error:  # noqa: BLE001 - listed with its error, never crashing the list
            row["error"] = f"cannot read the summary ({_one_line(error)})"
            return row
        for key in ("name", "status", "progress", "created_at", "updated_at", "num_samples", "explainers",
                    "metrics", "error", "task"):
            row[key] = overview[key]
        row["num_labels"] = len(overview["labels"])
        row["num_failures"] = overview["num_failures"]
        return row


class Registry:
    """All summaries below a base directory, by id. ``scan()`` finds new, changed and removed ones; ``start()``
    re-scans in a background thread every ``reload_interval`` seconds."""

    def __init__(self, base_dir: str | Path, reload_interval: float = 5.0, max_depth: int = MAX_DEPTH) -> None:
        self.base_dir = Path(base_dir).resolve()
        if not self.base_dir.is_dir():
            raise NotADirectoryError(f"{base_dir} is not a directory")
        self.reload_interval = reload_interval
        self.max_depth = max_depth
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.scanned_at = 0.0

    def scan(self) -> None:
        """Find summary directories and refresh each; open new ones, drop those that disappeared."""
        found: dict[str, Entry] = {}
        current = self._entries
        for directory in find_summary_dirs(self.base_dir, self.max_depth):
            try:
                database = (directory / DB_NAME).resolve()
            except OSError:
                continue
            if not database.is_relative_to(self.base_dir):
                continue  # the database file itself links out of BASE_DIR
            relative = directory.relative_to(self.base_dir).as_posix() if directory != self.base_dir else "."
            entry_id = summary_id(relative)
            entry = current.get(entry_id) or Entry(entry_id, relative, directory)
            entry.row()  # refreshes, and has the list row ready before anyone asks for the list
            found[entry_id] = entry
        with self._lock:
            removed = [entry for key, entry in self._entries.items() if key not in found]
            self._entries = found
            self.scanned_at = time.time()
        for entry in removed:
            entry.close()

    def entries(self) -> list[Entry]:
        """Every known summary, sorted by relative path."""
        return sorted(self._entries.values(), key=lambda entry: entry.path)

    def get(self, entry_id: str) -> Optional[Entry]:
        return self._entries.get(entry_id)

    def start(self) -> None:
        """Re-scan in a daemon thread every ``reload_interval`` seconds (no-op when the interval is 0)."""
        if self.reload_interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="xaiboard-rescan", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.reload_interval):
            try:
                self.scan()
            except Exception:  # noqa: BLE001 - keep re-scanning; the next pass may succeed
                log.exception("re-scanning %s failed", self.base_dir)

    def close(self) -> None:
        """Stop re-scanning and close every summary."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.close()
