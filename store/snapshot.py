"""A sharded run with more ranks than SQLite attaches to one connection, read live through a private copy.

SQLite attaches at most 10 databases to a connection, so the temporary views of :mod:`.shards` cover at most 11
ranks. For more, the reader keeps its own copy of the shards' rows in a temporary folder (never in the summary
directory, which may be read-only or shared) and brings it up to date before each connection whenever a shard has
changed. The copy is incremental: a rank only ever appends rows, one transaction per batch, so per shard and table
the rows after the last row id copied are exactly what is new; each shard is read in one transaction, a consistent
state of it. Rows that number their own ids get ``id * world_size + rank`` as in the live views; the ``run`` row
and the tables every shard holds alike are rewritten on each update. The copy weighs what the shards weigh and is
removed when the summary is closed.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from .database import DB_NAME, file_signature, shard_dirs
from .shards import RENUMBERED_TABLES, SHARED_TABLES, _columns, _tables, _uri, describe_shards, run_row


#: below every row id (ids of tables keyed by sample start at 0)
NOTHING = -(2 ** 63)


class ShardCopy:
    """The private, incrementally updated copy of a sharded run's rows (see the module docstring)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.folder = Path(tempfile.mkdtemp(prefix="xaiboard-shards-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, True)
        self.path = self.folder / DB_NAME
        self._copied: dict[tuple[int, str], int] = {}  # (rank, table) -> last row id copied
        self._signature: Any = None
        self._lock = threading.Lock()
        self._create()
        self.update()

    def _create(self) -> None:
        """The tables and indexes of rank 0's shard (its schema revision, whatever this version's head is)."""
        source = sqlite3.connect(_uri(shard_dirs(self.directory)[0] / DB_NAME), uri=True)
        try:
            statements = [sql for (sql,) in source.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                "ORDER BY type = 'index', name")]
        finally:
            source.close()
        target = sqlite3.connect(self.path)
        try:
            with target:
                for sql in statements:
                    target.execute(sql)
        finally:
            target.close()

    def update(self) -> None:
        """Copy what the shards appended since the last update (nothing to do when no shard changed)."""
        signature = file_signature(self.directory)
        if signature is not None and signature == self._signature:
            return
        with self._lock:
            if signature is not None and signature == self._signature:
                return
            facts = describe_shards(self.directory)
            world = max([f["world_size"] or 0 for f in facts] + [f["rank"] + 1 for f in facts])
            target = sqlite3.connect(self.path, isolation_level=None)
            try:
                target.execute("PRAGMA busy_timeout = 10000")
                for fact in facts:
                    self._append(target, fact, world)
                self._rewrite_shared(target, facts)
            finally:
                target.close()
            self._signature = signature

    def _append(self, target: sqlite3.Connection, fact: dict[str, Any], world: int) -> None:
        rank, copied = fact["rank"], {}
        target.execute("ATTACH DATABASE ? AS shard", (_uri(fact["directory"] / DB_NAME),))
        try:
            target.execute("BEGIN")  # one read of the shard: a consistent state of it
            for table in _tables(target, "shard"):
                if table in SHARED_TABLES or table == "run":
                    continue
                last = self._copied.get((rank, table), NOTHING)
                (newest,) = target.execute(f'SELECT max(rowid) FROM shard."{table}"').fetchone()
                if newest is None or newest <= last:
                    continue
                columns = _columns(target, table)
                listed = ", ".join(columns)
                chosen = ", ".join(f'"id" * {world} + {rank}' if c == '"id"' and table in RENUMBERED_TABLES else c
                                   for c in columns)
                target.execute(f'INSERT INTO main."{table}" ({listed}) SELECT {chosen} FROM shard."{table}" '
                               "WHERE rowid > ? AND rowid <= ? ORDER BY rowid", (last, newest))
                copied[(rank, table)] = newest
            target.execute("COMMIT")
            self._copied.update(copied)  # only once the rows are in
        except BaseException:
            if target.in_transaction:
                target.execute("ROLLBACK")
            raise
        finally:
            target.execute("DETACH DATABASE shard")

    def _rewrite_shared(self, target: sqlite3.Connection, facts: list[dict[str, Any]]) -> None:
        target.execute("ATTACH DATABASE ? AS shard", (_uri(facts[0]["directory"] / DB_NAME),))
        try:
            target.execute("BEGIN")
            for table in [t for t in _tables(target, "shard") if t in SHARED_TABLES or t == "run"]:
                target.execute(f'DELETE FROM main."{table}"')
                if table == "run":
                    columns, values = run_row(target, "shard", facts, live=True)
                    target.execute(f"INSERT INTO main.run ({', '.join(columns)}) VALUES "
                                   f"({', '.join('?' * len(columns))})", values)
                else:
                    listed = ", ".join(_columns(target, table))
                    target.execute(f'INSERT INTO main."{table}" ({listed}) SELECT {listed} FROM shard."{table}"')
            target.execute("COMMIT")
        except BaseException:
            if target.in_transaction:
                target.execute("ROLLBACK")
            raise
        finally:
            target.execute("DETACH DATABASE shard")

    def close(self) -> None:
        self._finalizer()


def copied_engine(directory: str | Path) -> Engine:
    """A read-only engine over the private copy of a sharded run, updated before each new connection."""
    copy = ShardCopy(directory)

    def connect() -> sqlite3.Connection:
        copy.update()
        connection = sqlite3.connect(_uri(copy.path), uri=True, check_same_thread=False)
        connection.execute("PRAGMA query_only = ON")
        return connection

    engine = create_engine("sqlite://", creator=connect, poolclass=NullPool)
    # the copy goes when the summary is closed (the engine disposed), else with the engine, or at exit
    event.listen(engine, "engine_disposed", lambda _engine: copy.close())
    weakref.finalize(engine, copy.close)
    return engine
