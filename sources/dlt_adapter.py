"""What the sources and their errors need of dlt beyond its public API, in one place.

Read from dlt 1.31.0. dlt's public API is `dlt` itself (the names it exports) and `dlt.sources` with
everything under it (`dlt.sources.DltResource`, `dlt.sources.helpers.requests`,
`dlt.sources.helpers.rest_client`, `dlt.sources.credentials`); the names below live in dlt's own
modules, which may change in any release. Only this module and `pipelines/dlt_adapter.py` import
them (CONTRIBUTING.md, "dlt's internals"; `tests/test_dlt_adapter.py` checks it): when dlt is
upgraded, read each name again against the new version and say so above.
"""

from __future__ import annotations

from dataclasses import dataclass

# dlt raises these from its configuration (`dlt.config`, `dlt.secrets`, a source's settings) and
# offers no public name for them: a setting it looked for and did not find (with where it looked:
# `missing_fields`), and a setting it found and could not read as its type
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigValueCannotBeCoercedException,
    LookupTrace,
    LookupTraces,
)

# dlt's own `runtime` settings (`RUNTIME_SETTINGS`)
from dlt.common.configuration.specs import RuntimeConfiguration

# the types of the table hints `dlt.resource` takes (`sources/canonical/tables.py`)
from dlt.common.schema.typing import TColumnSchema, TTableSchemaColumns, TWriteDisposition
from dlt.common.typing import TColumnNames

__all__ = [
    "RUNTIME_SETTINGS",
    "ConfigFieldMissingException",
    "ConfigValueCannotBeCoercedException",
    "MissingField",
    "TColumnNames",
    "TColumnSchema",
    "TTableSchemaColumns",
    "TWriteDisposition",
    "missing_fields",
]

# the names of dlt's `runtime` settings (`RUNTIME__LOG_LEVEL`, `RUNTIME__REQUEST_TIMEOUT`, ...)
RUNTIME_SETTINGS = frozenset(RuntimeConfiguration.__annotations__)


@dataclass(frozen=True)
class MissingField:
    """A setting dlt looked for and did not find, as its exception's lookup traces tell."""

    name: str
    sections: tuple[str, ...]  # the sections of the first place it was looked for (`destination`, `postgres`)
    # a nested configuration (credentials given by parts): the fields it lacks, and the sections of
    # the first place one of them was looked for; None for a plain value
    lacking: tuple[str, ...] | None = None
    lacking_sections: tuple[str, ...] = ()


def missing_fields(missing: ConfigFieldMissingException) -> list[MissingField]:
    """The settings `missing` says dlt did not find, with where it looked."""
    fields = []
    for name, traces in missing.traces.items():
        sections = next((trace.sections for trace in traces if isinstance(trace, LookupTrace) and trace.sections), [])
        nested = [trace for trace in traces if isinstance(trace, LookupTraces)]
        if not nested:
            fields.append(MissingField(name, tuple(sections)))
            continue
        tried = [
            found.sections for trace in nested for lookups in trace.traces.values() for found in lookups
            if isinstance(found, LookupTrace) and found.sections
        ]
        lacking = tuple(sorted({field for trace in nested for field in trace.traces}))
        fields.append(MissingField(name, tuple(sections), lacking, tuple(tried[0]) if tried else ()))
    return fields
