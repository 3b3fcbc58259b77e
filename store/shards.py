"""A run sharded over processes (``torchrun``, ``srun``) read as one summary, and merged into one file.

Each rank writes an ordinary summary database, ``DIR/shards/rank-0000r/xaiboard.db``, holding the samples whose
dataset index is r mod N (sample ids are the global indices, so shards never share one); labels, explainers,
metrics and internal layers are registered from the same configuration in the same order, so their ids agree.

Reading: one SQLite connection opens rank 0's shard read-only, attaches the others read-only, and defines a
temporary view per table over all of them (SQLite resolves unqualified table names in ``temp`` first, so every query
of the store reads the union unchanged): per-sample tables are ``UNION ALL``; ``boxes`` and ``failures``, which
number their own rows, get ids ``id * N + rank``; ``run`` is a temporary table of rank 0's row with the progress
summed and the status merged (``running`` while any shard runs, then ``failed`` or ``interrupted`` if any is, ``complete`` when all are).
SQLite attaches at most :data:`MAX_SHARDS` - 1 databases to one connection: a run with more ranks is read through
a private copy brought up to date as the shards grow (:mod:`.snapshot`).

Merging (:func:`merge_shards`) writes ``DIR/xaiboard.db`` with the union of the rows, in a temporary directory
renamed into place at the end (a killed merge leaves nothing half-written). The shards stay; a merged file is read
in their place, so a run relaunched after ``merge --partial`` sets that file aside (:func:`set_aside_partial_merge`)
and is read live from its shards again until it is merged anew.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from .database import DB_NAME, create_database, shard_dirs
from .errors import SummaryError

#: SQLite's default limit of attached databases (10) plus the main one
MAX_SHARDS = 11
#: tables every shard holds alike: read from rank 0's shard
SHARED_TABLES = ("alembic_version", "labels", "explainers", "metrics", "internal_layers")
#: tables that number their own rows: renumbered so ids stay unique
RENUMBERED_TABLES = ("boxes", "failures")
#: configuration keys that differ between ranks by design
RANK_KEYS = ("shard", "plan")


class ShardError(SummaryError):
    """Shards that do not make one run (another configuration, missing or unfinished ranks)."""


def _uri(path: Path) -> str:
    return f"file:{quote(str(path.resolve()))}?mode=ro"


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(_uri(path / DB_NAME), uri=True, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout = 10000")
    return connection


def _tables(connection: sqlite3.Connection, schema: str = "main") -> list[str]:
    rows = connection.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table' "
                              "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
    return [name for (name,) in rows]


def _columns(connection: sqlite3.Connection, table: str) -> list[str]:
    """The table's column names, quoted (some, such as ``values``, are SQL keywords)."""
    return [f'"{row[1]}"' for row in connection.execute(f'PRAGMA main.table_info("{table}")')]


def _comparable(config: Optional[str]) -> dict[str, Any]:
    values = json.loads(config) if config else {}
    return {key: value for key, value in values.items() if key not in RANK_KEYS}


def describe_shards(directory: str | Path) -> list[dict[str, Any]]:
    """Per shard: its rank, status, progress and the world size it was launched with; raises :class:`ShardError`
    when the shards disagree on labels, explainers, metrics, layers or configuration."""
    shards = shard_dirs(directory)
    if not shards:
        raise ShardError(f"{directory} holds no shards")
    facts, reference = [], None
    for shard in shards:
        connection = _connect(shard)
        try:
            status, done, total, config, updated = connection.execute(
                "SELECT status, progress_done, progress_total, config, updated_at FROM run").fetchone()
            agreed = {table: connection.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
                      for table in ("labels", "explainers", "metrics", "internal_layers")
                      if table in _tables(connection)}
        except (sqlite3.Error, TypeError) as error:
            raise ShardError(f"{shard} is not a readable shard: {error}") from None
        finally:
            connection.close()
        agreed["config"] = _comparable(config)
        if reference is None:
            reference = agreed
        elif agreed != reference:
            differing = sorted(key for key in agreed if agreed[key] != reference.get(key))
            raise ShardError(f"{shard.name} does not belong to the run of {shards[0].name} ({', '.join(differing)} "
                             "differ): remove the shards of the other run")
        world = (json.loads(config) if config else {}).get("shard") or {}
        facts.append({"directory": shard, "rank": int(shard.name.rsplit("-", 1)[-1]), "status": status,
                      "done": done or 0, "total": total, "world_size": world.get("world_size"), "updated": updated})
    return facts


def missing_ranks(facts: Sequence[dict[str, Any]]) -> list[int]:
    """The ranks of the run's world size that have no shard yet."""
    world = max((f["world_size"] or 0 for f in facts), default=0)
    present = {f["rank"] for f in facts}
    return [rank for rank in range(world) if rank not in present]


def merged_status(statuses: Sequence[str]) -> str:
    if any(s == "running" for s in statuses):
        return "running"
    for status in ("failed", "interrupted"):
        if status in statuses:
            return status
    return "complete"


def merged_file_status(facts: Sequence[dict[str, Any]]) -> str:
    """The status a merged file records: a run with ranks missing, or with a rank that stopped while running
    (killed), is ``interrupted``, since nothing writes the merged file."""
    status = merged_status([f["status"] for f in facts])
    return "interrupted" if missing_ranks(facts) or status == "running" else status


def _run_table(connection: sqlite3.Connection, facts: Sequence[dict[str, Any]]) -> None:
    """A temporary ``run`` table holding the whole run's row as of this connection (see :func:`run_row`)."""
    columns, values = run_row(connection, "main", facts, live=True)
    connection.execute("CREATE TEMP TABLE run AS SELECT * FROM main.run WHERE 0")
    connection.execute(f"INSERT INTO temp.run ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)
    connection.commit()


def _open_union(shards: Sequence[Path]) -> sqlite3.Connection:
    """One read-only connection over every shard, with the temporary views that make them one summary."""
    facts = describe_shards(shards[0].parent.parent)
    connection = _connect(shards[0])
    schemas = ["main"]
    for index, shard in enumerate(shards[1:], start=1):
        connection.execute(f"ATTACH DATABASE ? AS s{index}", (_uri(shard / DB_NAME),))
        schemas.append(f"s{index}")
    count = len(shards)
    for table in _tables(connection):
        if table in SHARED_TABLES:
            continue
        if table == "run":
            _run_table(connection, facts)
            continue
        columns = _columns(connection, table)
        parts = []
        for rank, schema in enumerate(schemas):
            if table in RENUMBERED_TABLES:
                listed = ", ".join(f'"id" * {count} + {rank} AS "id"' if c == '"id"' else c for c in columns)
            else:
                listed = ", ".join(columns)
            parts.append(f'SELECT {listed} FROM {schema}."{table}"')
        connection.execute(f'CREATE TEMP VIEW "{table}" AS ' + " UNION ALL ".join(parts))
    return connection


def sharded_engine(directory: str | Path) -> Engine:
    """A read-only engine over a sharded summary directory (see the module's docstring)."""
    shards = shard_dirs(directory)
    describe_shards(directory)  # refuse shards of different runs now, with the reason
    if len(shards) > MAX_SHARDS:
        from .snapshot import copied_engine

        return copied_engine(directory)
    engine = create_engine("sqlite://", creator=lambda: _open_union(shards), poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    return engine


def merge_shards(directory: str | Path, partial: bool = False) -> dict[str, Any]:
    """Write ``DIR/xaiboard.db`` holding every shard's rows (see the module's docstring); returns what was merged.
    Refuses missing or unfinished ranks unless ``partial``."""
    directory = Path(directory)
    facts = describe_shards(directory)
    missing = missing_ranks(facts)
    unfinished = [f"rank {f['rank']} ({f['status']}, {f['done']}/{f['total']})" for f in facts
                  if f["status"] != "complete"]
    if not partial and (missing or unfinished):
        reasons = ([f"ranks {', '.join(map(str, missing))} have no shard"] if missing else []) + unfinished
        raise ShardError(f"{directory} is not complete: {'; '.join(reasons)}; relaunch the run to finish it, or "
                         "merge what is there with --partial")
    work = directory / f".merging-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        create_database(work).dispose()
        target = sqlite3.connect(work / DB_NAME)
        try:
            _copy_rows(target, [f["directory"] for f in facts], facts)
            target.execute("PRAGMA journal_mode = DELETE")
        finally:
            target.close()
        os.replace(work / DB_NAME, directory / DB_NAME)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"shards": len(facts), "samples": sum(f["done"] for f in facts), "missing": missing,
            "status": merged_file_status(facts)}


def set_aside_partial_merge(directory: str | Path) -> Optional[Path]:
    """Rename a merged ``DIR/xaiboard.db`` whose run is not complete (``merge --partial``) to
    ``xaiboard.db.partial.<time>.bak``, which no reader opens; returns the new path, or ``None`` when there was none
    to set aside. Called by rank 0 when a sharded run starts again, so the run reads live from its growing shards."""
    merged = Path(directory) / DB_NAME
    if not merged.is_file():
        return None
    connection = _connect(merged.parent)
    try:
        row = connection.execute("SELECT status FROM run").fetchone()
    except sqlite3.DatabaseError:
        row = None  # not a merged summary this function knows how to judge: leave it
    finally:
        connection.close()
    if row is None or row[0] == "complete":
        return None
    target = merged.with_name(f"{DB_NAME}.partial.{time.strftime('%Y%m%dT%H%M%S')}.bak")
    os.replace(merged, target)
    return target


def run_row(connection: sqlite3.Connection, schema: str, facts: Sequence[dict[str, Any]], live: bool
            ) -> tuple[list[str], list[Any]]:
    """Rank 0's ``run`` row (in ``schema``) standing for the whole run: progress summed over the shards, status
    merged, the latest update. ``live``: a run with ranks not started yet is ``running`` and the configuration's
    ``shard`` entry gives the world size and the ranks present; merged: :func:`merged_file_status`, and the entry
    goes."""
    columns = _columns(connection, "run")
    row = connection.execute(f"SELECT {', '.join(columns)} FROM {schema}.run").fetchone()
    values = dict(zip([c.strip('"') for c in columns], row))
    config = json.loads(values["config"]) if values["config"] else {}
    if live:
        status = merged_status([f["status"] for f in facts])
        status = "running" if missing_ranks(facts) and status == "complete" else status
        config["shard"] = {"world_size": max((f["world_size"] or 0 for f in facts), default=0),
                           "ranks": sorted(f["rank"] for f in facts)}
    else:
        status = merged_file_status(facts)
        config.pop("shard", None)
    totals = [f["total"] for f in facts]
    updated = [f["updated"] for f in facts if f.get("updated")]
    values.update(config=json.dumps(config), progress_done=sum(f["done"] for f in facts),
                  progress_total=None if any(t is None for t in totals) else sum(totals), status=status,
                  updated_at=max(updated) if updated else values["updated_at"])
    return columns, [values[c.strip('"')] for c in columns]


def _copy_rows(target: sqlite3.Connection, shards: Sequence[Path], facts: Sequence[dict[str, Any]]) -> None:
    """Every shard's rows into ``target``, one shard attached at a time (SQLite attaches at most 10)."""
    for index, shard in enumerate(shards):
        target.execute("ATTACH DATABASE ? AS shard", (_uri(shard / DB_NAME),))
        try:
            with target:
                for table in _tables(target):
                    columns = _columns(target, table)
                    listed = ", ".join(columns)
                    if table == "alembic_version" or (index and (table == "run" or table in SHARED_TABLES)):
                        continue  # created at head by create_database; rank 0's stand for all
                    if table == "run":
                        columns, values = run_row(target, "shard", facts, live=False)
                        target.execute(f"INSERT INTO run ({', '.join(columns)}) VALUES "
                                       f"({', '.join('?' * len(columns))})", values)
                    elif table in RENUMBERED_TABLES:
                        rest = ", ".join(c for c in columns if c != '"id"')
                        target.execute(f'INSERT INTO "{table}" ({rest}) SELECT {rest} FROM shard."{table}" ORDER BY id')
                    else:
                        target.execute(f'INSERT INTO "{table}" ({listed}) SELECT {listed} FROM shard."{table}"')
        finally:
            target.execute("DETACH DATABASE shard")
