"""What the sources and their errors need of dlt beyond its public API, in one place.

Read from dlt 1.31.0. dlt's public API is `dlt` itself (the names it exports) and `dlt.sources` with
everything under it (`dlt.sources.DltResource`, `dlt.sources.helpers.requests`,
`dlt.sources.helpers.rest_client`, `dlt.sources.credentials`); the names below live in dlt's own
modules, which may change in any release. Only this module and `pipelines/dlt_adapter.py` import
them (CONTRIBUTING.md, "dlt's internals"; `tests/test_dlt_adapter.py` checks it): when dlt is
upgraded, read each name again against the new version and say so above.
"""

from __future__ import annotations

# dlt raises these from its configuration (`dlt.config`, `dlt.secrets`, a source's settings) and
# offers no public name for them: a setting it looked for and did not find (with where it looked,
# its `traces` of `LookupTrace` and, for a nested configuration, `LookupTraces`), and a setting it
# found and could not read as its type
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigValueCannotBeCoercedException,
    LookupTrace,
    LookupTraces,
)

# dlt's own `runtime` settings (`RUNTIME__...`): a wrong one is named as such (`sources/errors.py`)
from dlt.common.configuration.specs import RuntimeConfiguration

# the types of the table hints `dlt.resource` takes (`sources/canonical/tables.py`)
from dlt.common.schema.typing import TColumnSchema, TTableSchemaColumns, TWriteDisposition
from dlt.common.typing import TColumnNames

__all__ = [
    "ConfigFieldMissingException",
    "ConfigValueCannotBeCoercedException",
    "LookupTrace",
    "LookupTraces",
    "RuntimeConfiguration",
    "TColumnNames",
    "TColumnSchema",
    "TTableSchemaColumns",
    "TWriteDisposition",
]
