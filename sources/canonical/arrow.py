"""Canonical rows as Arrow tables, and the deterministic `activity_id` of each event."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sources.canonical.reads import ReportRead
from sources.canonical.tables import DEFAULT_ACCOUNT, Row, TableHints
from sources.canonical.times import parse_utc

# at most this many rows per Arrow table handed to dlt: dlt's cost per item is fixed, so fewer, larger items
ARROW_BATCH_ROWS = 5_000


class ArrowBatch:
    """Arrow tables gathered into one of `ARROW_BATCH_ROWS` rows or more before they go to dlt: most
    reads are short, and dlt's Arrow extractor pays its schema work per item."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.rows = 0

    def add(self, table: pa.Table) -> pa.Table | None:
        """Add a table; the whole batch once it is full, else None."""
        self.tables.append(table)
        self.rows += table.num_rows
        return self.take() if self.rows >= ARROW_BATCH_ROWS else None

    def take(self) -> pa.Table | None:
        """The batch as one table (None when empty), and the batch emptied."""
        if not self.tables:
            return None
        batch = pa.concat_tables(self.tables, promote_options="default")
        self.tables, self.rows = [], 0
        return batch


def to_arrow(rows: list[Row], table: TableHints) -> pa.Table:
    """A page of canonical rows as an Arrow table, so dlt loads it without its per-row path.

    Canonical columns get their declared types. Any other field a provider sends is kept as a
    text column (JSON text when nested), so a field that changes type between runs never fails
    a load; a field with no value in this page is left out.
    """
    declared = table["columns"]
    keys = {*_names(table.get("primary_key")), *_names(table.get("merge_key"))}
    names = list(dict.fromkeys(chain.from_iterable(rows)))
    data_types = [declared.get(name, {}).get("data_type") for name in names]
    struct = pa.struct([
        (name, _ARROW_TYPES.get(data_type, pa.string())) for name, data_type in zip(names, data_types, strict=True)
    ])
    try:  # the whole page in one pass of Arrow's own, where every value already has its column's type
        columns = pa.array(rows, type=struct).flatten()
    except (pa.ArrowTypeError, pa.ArrowInvalid, OverflowError):  # a value to convert first: column by column
        columns = [
            _ARRAY_BUILDERS.get(data_type, _text_array)([row.get(name) for row in rows])
            for name, data_type in zip(names, data_types, strict=True)
        ]
    arrays, fields = [], []
    for name, data_type, array in zip(names, data_types, columns, strict=True):
        if data_type is None and array.null_count == len(array):
            continue
        arrays.append(array)
        fields.append(pa.field(name, array.type, nullable=name not in keys))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _text_array(values: list[Any]) -> pa.Array:
    """Text; an id that arrives as a number, or a nested value (as JSON), is still text."""
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([_as_text(value) for value in values], type=pa.string())


def _timestamp_array(values: list[Any]) -> pa.Array:
    """UTC timestamps from datetimes, or from ISO 8601 text with an offset (Arrow parses a whole
    column at once); anything else value by value through `parse_utc`."""
    try:
        return pa.array(values, type=_TIMESTAMP)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    try:
        return pa.array(values, type=pa.string()).cast(_TIMESTAMP)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([parse_utc(value) for value in values], type=_TIMESTAMP)


_TIMESTAMP = pa.timestamp("us", tz="UTC")
# the declared types as Arrow's; any other column is text
_ARROW_TYPES: dict[str | None, pa.DataType] = {
    "text": pa.string(), "timestamp": _TIMESTAMP, "bigint": pa.int64(), "bool": pa.bool_(),
}
_ARRAY_BUILDERS: dict[str | None, Callable[[list[Any]], pa.Array]] = {
    "text": _text_array,
    "timestamp": _timestamp_array,
    "bigint": lambda values: pa.array(values, type=pa.int64()),
    "bool": lambda values: pa.array(values, type=pa.bool_()),
}


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _names(key: str | Sequence[str] | None) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key or ())


def with_activity_ids(
    page: pa.Table, read: ReportRead, provider: str, account: str, occurrences: Counter[str]
) -> pa.Table:
    """Give each event of a page its deterministic `activity_id`: a hash of its identity fields
    and its occurrence number, so that identical events are told apart and a reread finds the
    same ids. The identity is built column-wise; only the hashing goes row by row. A named
    account's events have it in their identity; the default account's ids are those it always had."""
    rows = page.num_rows
    page = page.drop_columns([name for name in ("activity_id", "campaign_activity_id") if name in page.column_names])

    def column(name: str) -> pa.ChunkedArray | pa.Array:
        return page[name] if name in page.column_names else pa.nulls(rows, pa.string())

    identities = pc.binary_join_element_wise(
        column("activity_type"),
        column("contact_id"),
        pc.cast(pc.cast(column("occurred_at"), pa.int64()), pa.string()),  # microseconds since the epoch
        # the provider's link id where it has one: a URL looked up for it may change
        pc.coalesce(column("url_id"), column("link_id"), column("url"))
        if read.link_in_identity else pa.nulls(rows, pa.string()),
        "\x1f",
        null_handling="replace",
    )
    owner = provider if account == DEFAULT_ACCOUNT else f"{provider}\x1e{account}"
    prefix = f"{owner}\x1f{read.campaign_id}\x1f{read.campaign_activity_id or ''}\x1f"
    # each id hashes the prefix, then the event's identity: a copy of the prefix's hash saves hashing it again
    ids, seen, hashed_prefix = [], occurrences.get, hashlib.blake2b(prefix.encode(), digest_size=16).copy
    for identity in identities.to_pylist():
        occurrence = occurrences[identity] = seen(identity, 0) + 1
        digest = hashed_prefix()
        digest.update(f"{identity}\x1f{occurrence}".encode())
        ids.append(digest.hexdigest())
    page = page.append_column(pa.field("activity_id", pa.string(), nullable=False), pa.array(ids, pa.string()))
    return page.append_column("campaign_activity_id", pa.array([read.campaign_activity_id] * rows, pa.string()))
