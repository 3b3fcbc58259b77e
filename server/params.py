"""Parsing query parameters into typed values; every bad value becomes an :class:`ApiError` 400 naming it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .security import ApiError


def integer(args: Mapping[str, str], name: str, default: int, maximum: int | None = None) -> int:
    """A non-negative integer parameter; values above ``maximum`` are capped to it."""
    text = args.get(name)
    if text is None or text == "":
        return default
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise ApiError(400, f"{name} must be a non-negative integer, got {text[:40]!r}")
    value = int(text)
    return min(value, maximum) if maximum is not None else value


def flag(args: Mapping[str, str], name: str) -> bool:
    """A yes/no parameter: absent, empty, 0 or false is no; 1 or true is yes; anything else a 400."""
    value = args.get(name, "").strip().lower()
    if value in ("", "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise ApiError(400, f"{name} must be 1 or 0, got {value[:20]!r}")


def items(args: Mapping[str, str], name: str) -> list[str]:
    """A comma-separated list parameter, without empty items or duplicates, in the given order."""
    text = args.get(name, "")
    return list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def labels(args: Mapping[str, str], names: Mapping[int, str], name: str = "labels") -> list[int]:
    """A label list parameter (``labels``, ``truth``): each item is a label index or an exact label name."""
    by_name = {label: index for index, label in names.items()}
    result = []
    for item in items(args, name):
        if item.lstrip("-").isdigit() and item.isascii():
            index = int(item)
            if index not in names:
                raise ApiError(400, f"unknown label {item!r} in {name} (labels are 0..{len(names) - 1})")
        elif item in by_name:
            index = by_name[item]
        else:
            raise ApiError(400, f"unknown label {item[:60]!r} in {name} (give label indices or exact names)")
        result.append(index)
    return list(dict.fromkeys(result))


def choices(args: Mapping[str, str], name: str, known: Sequence[str], what: str) -> list[str]:
    """A list parameter whose items must be among ``known``."""
    values = items(args, name)
    for value in values:
        if value not in known:
            raise ApiError(400, f"unknown {what} {value[:60]!r} (this summary has: {', '.join(known) or 'none'})")
    return values


def one_of(args: Mapping[str, str], name: str, known: Sequence[str], what: str) -> str:
    """A single parameter among ``known``; the first known value when absent."""
    value = args.get(name)
    if value is None or value == "":
        if not known:
            raise ApiError(400, f"this summary has no {what}")
        return known[0]
    if value not in known:
        raise ApiError(400, f"unknown {what} {value[:60]!r} (this summary has: {', '.join(known) or 'none'})")
    return value


def weights(args: Mapping[str, str], metrics: Sequence[str]) -> dict[str, float] | None:
    """``weights=MetricA:1,MetricB:0.5`` for the comprehensive score; metrics left out weigh 0."""
    values = items(args, "weights")
    if not values:
        return None
    result = {}
    for value in values:
        name, sep, number = value.rpartition(":")
        if not sep or name not in metrics:
            raise ApiError(400, f"weights must look like Metric:1.5 with a metric of this summary, got {value[:60]!r}")
        try:
            weight = float(number)
        except ValueError:
            raise ApiError(400, f"weight of {name!r} must be a number, got {number[:40]!r}") from None
        if not 0.0 <= weight < float("inf"):
            raise ApiError(400, f"weight of {name!r} must be a finite number >= 0, got {number[:40]!r}")
        result[name] = weight
    return result
