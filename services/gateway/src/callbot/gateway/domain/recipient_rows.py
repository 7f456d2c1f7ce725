"""Reading a campaign's recipient list (CSV or JSON objects) into rows, one
at a time, so an upload of any length is parsed in bounded memory.

CSV: a header row with `to` (required), `timezone` (optional) and any other
columns, which become the recipient's fields (`{recipient.<column>}` in the
agent's templates). A row that does not fit the header (more or fewer cells),
an empty `to`, a header without `to` or with a column twice: `BadRecipientRow`
naming the line. An invalid phone number is not a bad row: the campaigns
service records it as skipped (`invalid_number`). Pure: no I/O.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from callbot.common.campaigns import RecipientRow

MAX_FIELD_CHARS = 10_000
_SPECIAL = ("to", "timezone")


class BadRecipientRow(ValueError):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


def csv_rows(lines: Iterable[str]) -> Iterator[RecipientRow]:
    """Rows of a CSV list; `row` is the line number in the file (the header is 1)."""
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise BadRecipientRow(1, f"not valid CSV: {exc}") from None
    if header is None:
        raise BadRecipientRow(1, "the file is empty; the first line must be a header with 'to'")
    header = [name.strip().lstrip("\ufeff") for name in header]
    if "to" not in header:
        raise BadRecipientRow(1, f"the header {header} has no 'to' column")
    if len(set(header)) != len(header) or "" in header:
        raise BadRecipientRow(1, f"the header {header} has an empty or repeated column name")
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise BadRecipientRow(reader.line_num, f"not valid CSV: {exc}") from None
        line = reader.line_num
        if not cells or cells == [""]:
            continue  # a blank line
        if len(cells) != len(header):
            raise BadRecipientRow(
                line, f"{len(cells)} cells where the header has {len(header)} columns"
            )
        yield _row(line, dict(zip(header, cells, strict=True)))


def json_rows(recipients: Iterable[dict[str, Any]]) -> Iterator[RecipientRow]:
    """Rows of a JSON list: each object's `to` and `timezone`; the rest are fields."""
    for index, item in enumerate(recipients, start=1):
        yield _row(index, item)


def _row(line: int, values: dict[str, Any]) -> RecipientRow:
    to = values.get("to")
    if not isinstance(to, str) or not to.strip():
        raise BadRecipientRow(line, "'to' is empty; give the number to call (E.164)")
    timezone = values.get("timezone") or None
    if timezone is not None and not isinstance(timezone, str):
        raise BadRecipientRow(line, "'timezone' must be a time zone name (e.g. America/Chicago)")
    fields = {key: value for key, value in values.items() if key not in _SPECIAL}
    try:
        return RecipientRow(row=line, to=to.strip(), timezone=timezone, fields=fields)
    except ValidationError as exc:
        raise BadRecipientRow(line, exc.errors()[0]["msg"]) from None
