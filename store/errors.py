"""Errors of the store: a directory that cannot be opened as a summary, a query naming what it does not have; each
message is one line a user can act on."""

from __future__ import annotations


class SummaryError(Exception):
    """A directory is not a usable summary."""


class NotASummaryError(SummaryError):
    """The directory holds no summary database, or the file is not one of ours."""


class CorruptSummaryError(SummaryError):
    """The database file exists but cannot be read (truncated, not SQLite)."""


class OutdatedSummaryError(SummaryError):
    """The summary was written by an older xaiboard and must be upgraded before it can be read."""


class NewerSummaryError(SummaryError):
    """The summary was written by a newer xaiboard than this one."""


class QueryError(ValueError):
    """A query parameter names something the summary does not have (a label, type, explainer or sort key)."""
