"""The schema is owned by the models and versioned by Alembic: both agree, old summaries upgrade, newer ones refuse."""

from __future__ import annotations

import hashlib

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import text

from xaiboard.server.cli import main
from xaiboard.store import NewerSummaryError, OutdatedSummaryError, Summary, head_revision
from xaiboard.store.database import alembic_config, writable_engine
from xaiboard.store.models import Base


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def downgrade(directory, revision: str) -> None:
    engine = writable_engine(directory / "xaiboard.db", foreign_keys=False)
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
    engine.dispose()


def test_models_and_migrations_agree(make_summary):
    engine = writable_engine(make_summary() / "xaiboard.db")
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_new_summary_is_at_head(make_summary):
    with Summary.open(make_summary()) as summary:
        assert summary.revision == head_revision() == "0002"


def test_old_revision_is_refused_then_upgraded_with_a_backup(make_summary):
    directory = make_summary()
    with Summary.open(directory) as summary:
        counts = summary.counts()
    downgrade(directory, "0001")
    database = directory / "xaiboard.db"
    before = digest(database)

    with pytest.raises(OutdatedSummaryError, match=f"run `xaiboard upgrade {directory}`"):
        Summary.open(directory)
    result = CliRunner().invoke(main, ["info", str(directory)])
    assert result.exit_code == 1
    assert "xaiboard upgrade" in result.output and "Traceback" not in result.output
    assert digest(database) == before, "opening never writes"
    assert sorted(p.name for p in directory.iterdir()) == ["xaiboard.db"]

    result = CliRunner().invoke(main, ["upgrade", str(directory)])
    assert result.exit_code == 0, result.output
    assert "from schema 0001 to 0002" in result.output
    (backup,) = directory.glob("xaiboard.db.0001.*.bak")
    assert digest(backup) == before

    with Summary.open(directory) as summary:
        assert summary.revision == "0002"
        assert summary.counts() == counts, "the upgrade keeps every row"
        top = max(summary.predictions(0), key=lambda p: p.prob)
        assert summary.samples(sort="-prob", limit=100).total == 12
        engine = summary.engine
        with engine.connect() as connection:
            max_prob = connection.execute(text("SELECT max_prob FROM samples WHERE id = 0")).scalar_one()
        assert max_prob == pytest.approx(top.prob), "the upgrade fills the new column for existing samples"

    result = CliRunner().invoke(main, ["upgrade", str(directory)])
    assert "already at schema 0002" in result.output


def test_newer_revision_fails_with_a_clear_message(make_summary):
    directory = make_summary()
    engine = writable_engine(directory / "xaiboard.db")
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe'"))
    engine.dispose()
    with pytest.raises(NewerSummaryError, match="newer xaiboard"):
        Summary.open(directory)
    for command_line in (["info", str(directory)], ["upgrade", str(directory)]):
        result = CliRunner().invoke(main, command_line)
        assert result.exit_code == 1
        assert "newer xaiboard" in result.output and "Traceback" not in result.output
