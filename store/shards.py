"""A run sharded over processes (``torchrun``, ``srun``) read as one summary, and merged into one file.

Each rank writes an ordinary summary database, ``DIR/shards/rank-0000r/xaiboard.db``, holding the samples whose
dataset index is r mod N (sample ids are the global indices, so shards never share one); labels, explainers,
metrics and internal layers are registered from the same configuration in the same order, so their ids agree.

Reading: one SQLite connection opens rank 0's shard read-only, attaches the others read-only, and defines a
temporary view per table over all of them (SQLite resolves unqualified table names in ``temp`` first, so every query
of the store reads the union unchanged): per-sample tables are ``UNION ALL``; ``boxes`` and ``failures``, which
number their own rows, get ids ``id * N + rank``; ``run`` is rank 0's row with the progress summed and the status
merged (``running`` while any shard runs, then ``failed`` or ``interrupted`` if any is, ``complete`` when all are).
SQLite attaches at most :data:`MAX_SHARDS` - 1 databases to one connection: a run with more ranks is read after
``xaiboard merge DIR --partial``.

Merging (:func:`merge_shards`) writes ``DIR/xaiboard.db`` with the union of the rows, in a temporary directory
renamed into place at the end (a killed merge leaves nothing half-written). The shards stay; a merged file is read
in their place.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
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
            status, done, total, config = connection.execute(
                "SELECT status, progress_done, progress_total, config FROM run").fetchone()
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
                      "done": done or 0, "total": total, "world_size": world.get("world_size")})
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


def _run_view(connection: sqlite3.Connection, facts: Sequence[dict[str, Any]], schemas: Sequence[str]) -> str:
    columns = _columns(connection, "run")
    status = merged_status([f["status"] for f in facts])
    if missing_ranks(facts) and status == "complete":
        status = "running"  # a rank has not started yet
    totals = [f["total"] for f in facts]
    done = " + ".join(f"(SELECT progress_done FROM {s}.run)" for s in schemas)
    total = "NULL" if any(t is None for t in totals) else " + ".join(
        f"(SELECT progress_total FROM {s}.run)" for s in schemas)
    updated = ", ".join(f"(SELECT updated_at FROM {s}.run)" for s in schemas)
    chosen = {'"status"': f"'{status}'", '"progress_done"': done, '"progress_total"': total,
              '"updated_at"': f"max({updated})" if len(schemas) > 1 else '"updated_at"',
              '"config"': _sql_text(_union_config(connection, facts))}
    select = ", ".join(f"{chosen.get(c, c)} AS {c}" for c in columns)
    return f"CREATE TEMP VIEW run AS SELECT {select} FROM main.run"


def _union_config(connection: sqlite3.Connection, facts: Sequence[dict[str, Any]]) -> Optional[str]:
    """Rank 0's configuration with its ``shard`` entry describing the whole run: the world size and the ranks
    that have a shard so far (rather than rank 0 alone)."""
    (config,) = connection.execute("SELECT config FROM main.run").fetchone()
    if not config:
        return config
    values = json.loads(config)
    world = max((f["world_size"] or 0 for f in facts), default=0)
    values["shard"] = {"world_size": world, "ranks": sorted(f["rank"] for f in facts)}
    return json.dumps(values)


def _sql_text(value: Optional[str]) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


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
            connection.execute(_run_view(connection, facts, schemas))
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
    if len(shards) > MAX_SHARDS:
        raise ShardError(f"{directory} has {len(shards)} shards; at most {MAX_SHARDS} are read live: run "
                         f"`xaiboard merge {directory} --partial` to read it")
    describe_shards(directory)  # refuse shards of different runs now, with the reason
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
            "status": merged_status([f["status"] for f in facts]) if not missing else "interrupted"}


def _copy_rows(target: sqlite3.Connection, shards: Sequence[Path], facts: Sequence[dict[str, Any]]) -> None:
    schemas = []
    for index, shard in enumerate(shards):
        target.execute(f"ATTACH DATABASE ? AS s{index}", (_uri(shard / DB_NAME),))
        schemas.append(f"s{index}")
    with target:
        for table in _tables(target):
            columns = _columns(target, table)
            listed = ", ".join(columns)
            if table == "alembic_version":
                continue  # created at head by create_database
            if table == "run":
                row = list(target.execute(f"SELECT {listed} FROM s0.run").fetchone())
                values = dict(zip([c.strip('"') for c in columns], row))
                config = json.loads(values["config"]) if values["config"] else {}
                config.pop("shard", None)
                totals = [f["total"] for f in facts]
                values.update(config=json.dumps(config), progress_done=sum(f["done"] for f in facts),
                              progress_total=None if any(t is None for t in totals) else sum(totals),
                              status=merged_status([f["status"] for f in facts]) if not missing_ranks(facts)
                              else "interrupted")
                target.execute(f"INSERT INTO run ({listed}) VALUES ({', '.join('?' * len(columns))})",
                               [values[c.strip('"')] for c in columns])
            elif table in SHARED_TABLES:
                target.execute(f'INSERT INTO "{table}" ({listed}) SELECT {listed} FROM s0."{table}"')
            elif table in RENUMBERED_TABLES:
                rest = ", ".join(c for c in columns if c != '"id"')
                for schema in schemas:
                    target.execute(f'INSERT INTO "{table}" ({rest}) SELECT {rest} FROM {schema}."{table}" ORDER BY id')
            else:
                for schema in schemas:
                    target.execute(f'INSERT INTO "{table}" ({listed}) SELECT {listed} FROM {schema}."{table}"')
