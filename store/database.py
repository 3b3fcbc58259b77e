"""Opening a summary database: engines in read-only or writing mode, schema revision checks, creation and upgrade.

Readers open the file with SQLite's ``mode=ro`` URI so that opening never changes it. Writers keep the database in
WAL mode so a live run can be read at the same time, and switch it back to ``journal_mode=DELETE`` on close so the
finished file opens from a read-only share.
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import tempfile
import time
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.pool import NullPool

from .errors import (
    CorruptSummaryError,
    NewerSummaryError,
    NotASummaryError,
    OutdatedSummaryError,
    SummaryError,
)

DB_NAME = "xaiboard.db"
#: the folder of a sharded run's per-rank databases
SHARDS = "shards"
BUSY_TIMEOUT_MS = 10_000


def db_path(directory: str | Path) -> Path:
    """The database file of a summary directory."""
    return Path(directory) / DB_NAME


def shard_dirs(directory: str | Path) -> list[Path]:
    """The shards of a run sharded over processes (``DIR/shards/rank-00000`` ...), by rank; [] for other runs."""
    try:
        return sorted(path.parent for path in (Path(directory) / SHARDS).glob("rank-*/" + DB_NAME) if path.is_file())
    except OSError:
        return []


def file_signature(directory: Path) -> tuple[int, ...] | None:
    """What changes when a summary database (or any shard of a sharded one) is written or replaced; None when the
    file is gone. Its first number changes only when the file is replaced."""
    if not db_path(directory).is_file():
        parts = [_one_signature(shard) for shard in shard_dirs(directory)]
        if not parts or any(part is None for part in parts):
            return None
        return (parts[0][0], len(parts)) + tuple(value for part in parts for value in part)  # type: ignore[index]
    return _one_signature(directory)


def _one_signature(directory: Path) -> tuple[int, ...] | None:
    db = db_path(directory)
    try:
        stat = os.stat(db)
    except OSError:
        return None
    signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    try:
        wal = os.stat(db.with_name(db.name + "-wal"))
        signature += (wal.st_size, wal.st_mtime_ns)
    except OSError:
        pass
    return signature


def is_summary_dir(directory: str | Path) -> bool:
    """A directory is a summary directory when it holds ``xaiboard.db``, or the shards of a sharded run."""
    return db_path(directory).is_file() or bool(shard_dirs(directory))


def alembic_config() -> Config:
    """The Alembic configuration shipped inside the package; needs no file in the working directory."""
    from xaiboard import migrations

    folder = Path(migrations.__file__).parent
    config = Config(str(folder / "alembic.ini"))
    config.set_main_option("script_location", str(folder))
    return config


@functools.cache
def head_revision() -> str:
    """The schema revision this xaiboard writes (read once from the shipped revisions)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this xaiboard can upgrade from."""
    return frozenset({script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()})


def _on_connect(readonly: bool, foreign_keys: bool = True):
    def configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if not readonly:
            cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return configure


def readonly_engine(path: str | Path, immutable: bool = False) -> Engine:
    """An engine that opens the database with ``mode=ro``; it cannot create, change or journal the file.

    Connections are not pooled: an idle reader holding the file open would keep a finishing run from leaving WAL
    mode. ``immutable`` also skips locking and the WAL index, for a complete file on a read-only share.
    """
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
    engine = create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
        poolclass=NullPool,
    )
    event.listen(engine, "connect", _on_connect(readonly=True))
    return engine


def writable_engine(path: str | Path, foreign_keys: bool = True) -> Engine:
    """An engine for the runner: transactions, foreign keys, WAL set by the writer.

    Migrations run with ``foreign_keys=False``: SQLite's batch migrations copy and drop tables, and a drop with
    foreign keys on would cascade-delete the rows that reference them.
    """
    engine = create_engine(f"sqlite:///{Path(path).resolve()}")
    event.listen(engine, "connect", _on_connect(readonly=False, foreign_keys=foreign_keys))
    return engine


def _readonly_share_engine(path: Path) -> Engine:
    """Open a file SQLite cannot open in place: on a read-only share without its ``-shm`` index.

    Without a ``-wal`` file the database is complete and opens ``immutable``; with one (a run that was killed), the
    file and its log are copied to a private temporary directory and read there, so nothing of the log is lost.
    """
    wal = path.with_name(path.name + "-wal")
    if not wal.exists():
        return readonly_engine(path, immutable=True)
    snapshot = Path(tempfile.mkdtemp(prefix="xaiboard-snapshot-"))
    shutil.copy2(path, snapshot / path.name)
    shutil.copy2(wal, snapshot / wal.name)
    engine = readonly_engine(snapshot / path.name)
    weakref.finalize(engine, shutil.rmtree, snapshot, True)
    return engine


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database, None when it has none; raises for files that are not SQLite."""
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            tables = set(inspect(connection).get_table_names())
            _check_length(connection, engine.url.database)
    except (DatabaseError, OperationalError) as error:
        reason = str(error.orig) if getattr(error, "orig", None) is not None else str(error)
        raise CorruptSummaryError(f"cannot read the summary database ({reason})") from None
    if revision is None:
        if "run" in tables:
            raise NotASummaryError("the database has xaiboard tables but no schema revision")
        raise NotASummaryError(f"{DB_NAME} is an SQLite file without xaiboard's tables")
    return revision


def _check_length(connection: Any, database: str | None) -> None:
    """Catch a truncated file cheaply: its header promises more pages than it holds (no WAL to hold the rest)."""
    raw = connection.connection.driver_connection
    path = Path(raw.execute("PRAGMA database_list").fetchone()[2] or (database or ""))
    if not path.is_file() or path.with_name(path.name + "-wal").exists():
        return
    page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    page_count = raw.execute("PRAGMA page_count").fetchone()[0]
    if page_size * page_count > path.stat().st_size:
        raise CorruptSummaryError(
            f"the database file is truncated ({path.stat().st_size} of {page_size * page_count} bytes)"
        )


#: older revisions whose files read as they are: the revisions after them only add tables (``0004`` the Integrated
#: Gradients paths and the perturbation curves, ``0005`` the layers' feature maps and attention), which such a
#: summary simply lacks
READABLE_OLDER = frozenset({"0003", "0004"})


def check_revision(revision: str, directory: str | Path, reading: bool = False) -> None:
    """Refuse a revision this xaiboard cannot read (``reading``) or write, saying what to do about it."""
    head = head_revision()
    if revision == head or (reading and revision in READABLE_OLDER):
        return
    if revision not in known_revisions():
        raise NewerSummaryError(
            f"the summary was written by a newer xaiboard (schema {revision}, this xaiboard knows up to {head}); "
            "upgrade xaiboard to read it"
        )
    raise OutdatedSummaryError(
        f"the summary's schema ({revision}) is older than this xaiboard's ({head}); "
        f"run `xaiboard upgrade {directory}` to upgrade it (a backup is kept)"
    )


def open_readonly(directory: str | Path) -> tuple[Engine, str]:
    """Open a summary for reading; returns the engine and the schema revision. Never writes to the directory."""
    path = db_path(directory)
    if not Path(directory).is_dir():
        raise NotASummaryError(f"{directory} is not a directory")
    if not path.is_file():
        raise NotASummaryError(f"{directory} holds no {DB_NAME}: not a summary directory")
    engine = readonly_engine(path)
    try:
        revision = current_revision(engine)
    except CorruptSummaryError:
        engine.dispose()
        if not os.access(path.parent, os.W_OK):
            engine = _readonly_share_engine(path)
            revision = current_revision(engine)
        else:
            raise
    assert revision is not None
    try:
        check_revision(revision, directory, reading=True)
    except SummaryError:
        engine.dispose()
        raise
    return engine, revision


def create_database(directory: str | Path) -> Engine:
    """Create ``xaiboard.db`` at the head revision in WAL mode and return a writing engine."""
    path = db_path(directory)
    engine = writable_engine(path)
    set_journal_mode(engine, "wal")
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return engine


def open_writable(directory: str | Path) -> Engine:
    """Open an existing summary to go on writing it (resume); the schema must be at head."""
    path = db_path(directory)
    if not path.is_file():
        raise NotASummaryError(f"{directory} holds no {DB_NAME}: not a summary directory")
    engine = writable_engine(path)
    try:
        revision = current_revision(engine)
        assert revision is not None
        check_revision(revision, directory)
    except SummaryError:
        engine.dispose()
        raise
    set_journal_mode(engine, "wal")
    return engine


def set_journal_mode(engine: Engine, mode: str, wait: float = 3.0) -> str:
    """Switch the journal mode; returns the mode SQLite reports.

    Leaving WAL needs the file to itself: while a reader holds it open, this retries for ``wait`` seconds and then
    leaves the database in WAL mode (checkpointed, so the main file holds every committed row).
    """
    deadline = time.monotonic() + wait
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        while True:
            try:
                if mode.lower() == "delete":
                    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                result = raw.execute(f"PRAGMA journal_mode={mode}").fetchone()
                return str(result[0]) if result else ""
            except sqlite3.OperationalError:
                if time.monotonic() >= deadline:
                    return str(raw.execute("PRAGMA journal_mode").fetchone()[0])
                time.sleep(0.1)


def _vacuum(path: Path) -> None:
    """Rewrite the file without the pages an upgrade freed (e.g. 0003 deletes most prediction rows)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        connection.execute("VACUUM")
    finally:
        connection.close()


def upgrade(directory: str | Path) -> tuple[str, str, Path | None]:
    """Upgrade a summary to the head revision after copying its database to a timestamped backup, then compact
    the file.

    Returns (old revision, new revision, backup path); no backup is made when it is already at head.
    """
    path = db_path(directory)
    if not path.is_file():
        raise NotASummaryError(f"{directory} holds no {DB_NAME}: not a summary directory")
    engine = writable_engine(path, foreign_keys=False)
    try:
        old = current_revision(engine)
        assert old is not None
        head = head_revision()
        if old == head:
            return old, head, None
        if old not in known_revisions():
            check_revision(old, directory)
        set_journal_mode(engine, "delete")
        engine.dispose()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        backup = path.with_name(f"{DB_NAME}.{old}.{stamp}.bak")
        shutil.copy2(path, backup)
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        set_journal_mode(engine, "delete")
        engine.dispose()
        _vacuum(path)
        return old, head, backup
    finally:
        engine.dispose()
