"""What the pipelines need of dlt beyond its public API, in one place.

Read from dlt 1.31.0. dlt's public API is `dlt` itself (the names it exports: `dlt.pipeline`,
`dlt.attach`, `dlt.Pipeline` with its `state`, `extract`/`normalize`/`load`, `abort_packages`,
`set_local_state_val`; `dlt.destinations`, `dlt.dataset`, `dlt.progress`, `dlt.Schema`) and
`dlt.sources` with everything under it. What it does not offer is below: names from dlt's other
modules, each with why it is needed, and what the code relies on of how dlt keeps things (a state's
local part and version, the folder of extracted packages, when dlt sets its logger up). Only this
module and `sources/dlt_adapter.py` import dlt's other modules (CONTRIBUTING.md, "dlt's internals";
`tests/test_dlt_adapter.py` checks it): when dlt is upgraded, read each name again against the new
version and say so above.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

import dlt

# where dlt looks up the context a source runs in: its pipeline state (`source_state`)
from dlt.common.configuration.container import Container

# what a destination raises: any failure (down, refusing us, a file locked), and a dataset or table
# not created yet
from dlt.common.destination.exceptions import DestinationException, DestinationUndefinedEntity

# the naming dlt stores names under: `--dataset` is refused when dlt would store it as another name
from dlt.common.normalizers.naming.snake_case import NamingConvention as SnakeCaseNaming

# what `Pipeline.extract` returns (its `metrics` count the rows by table); the pipeline state a source
# reads outside a pipeline run (`source_state`); dlt's default pipelines folder (`pipelines_dir`)
from dlt.common.pipeline import ExtractInfo, StateInjectableContext, TPipelineState, get_dlt_pipelines_dir

# the extracted and the normalized packages of a pipeline's working folder (`delete_extracted_package`,
# `archive_completed_packages`)
from dlt.common.storages import (
    LoadStorage,
    LoadStorageConfiguration,
    NormalizeStorage,
    NormalizeStorageConfiguration,
)

# the file format `Pipeline.extract` writes (`loader_file_format`)
from dlt.common.typing import TLoaderFileFormat

# the credentials of DuckDB (a read-only file, its settings) and of PostgreSQL (a URL or its parts,
# with dlt's defaults: port 5432, a password required)
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.destinations.impl.postgres.configuration import PostgresCredentials

# the SQL client of `Pipeline.sql_client()` and of a job client (`execute_sql`, `make_qualified_table_name`)
from dlt.destinations.sql_client import SqlClientBase

# what iterating a resource outside a pipeline raises, with the resource's own error as its cause
from dlt.extract.exceptions import ResourceExtractionError

# a pipeline folder dlt cannot read (`dlt.attach`), and a failed step of a run (`step`: extract,
# normalize or load), with its cause
from dlt.pipeline.exceptions import CannotRestorePipelineException, PipelineStepFailed

# the pipeline state stored in the destination, read without a pipeline (`destination_state`)
from dlt.pipeline.state_sync import load_pipeline_state_from_destination

__all__ = [
    "CannotRestorePipelineException",
    "DestinationException",
    "DestinationUndefinedEntity",
    "DuckDbCredentials",
    "ExtractInfo",
    "PipelineStepFailed",
    "PostgresCredentials",
    "ResourceExtractionError",
    "SnakeCaseNaming",
    "SqlClientBase",
    "TLoaderFileFormat",
    "archive_completed_packages",
    "completed_packages",
    "delete_extracted_package",
    "destination_state",
    "dlt_logger",
    "local_state",
    "newer_state",
    "pipelines_dir",
    "source_state",
]


def pipelines_dir(configured: str | None) -> str:
    """The folder of the pipelines' working folders: `configured` (`--pipelines-dir`), else dlt's default."""
    return configured or get_dlt_pipelines_dir()


def dlt_logger() -> logging.Logger:
    """dlt's logger (`dlt`), set up. dlt sets it up as it first reads its settings, once a process: the
    level of RUNTIME__LOG_LEVEL, a stderr handler of its own, not propagating; what is done to it after
    that holds for the process."""
    dlt.config.get("runtime.log_level")
    return logging.getLogger("dlt")


def local_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The local part of a pipeline state (`Pipeline.state`): what `set_local_state_val` keeps, which
    never goes to the destination."""
    return dict(state.get("_local") or {})


def destination_state(pipeline_name: str, client: Any) -> dict[str, Any] | None:
    """The pipeline's state as last stored in the destination (`client`: a job client of its dataset,
    `runner.dataset_client`), without a pipeline; None when none is stored."""
    with suppress(DestinationUndefinedEntity):  # nothing loaded yet
        return cast(dict[str, Any] | None, load_pipeline_state_from_destination(pipeline_name, client))
    return None


def newer_state(local: Mapping[str, Any] | None, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The newer of a pipeline's local state and the one stored in the destination (by dlt's state
    version, as `Pipeline.sync_destination` compares them), with the local part of the local one."""
    if stored is not None and (local is None or stored["_state_version"] > local["_state_version"]):
        return {**stored, "_local": local_state(local or {})}
    return dict(local or {})


@contextmanager
def source_state(state: dict[str, Any]) -> Iterator[None]:
    """Sources built and resources iterated inside read and change `state` as their pipeline state
    (`dlt.current.source_state()`, `dlt.current.resource_state()`), outside any pipeline run."""
    with Container().injectable_context(StateInjectableContext(state=cast(TPipelineState, state))):
        yield


def delete_extracted_package(pipeline: dlt.Pipeline, load_id: str) -> None:
    """Delete one extracted load package from the pipeline's working folder (`normalize/extracted`).

    dlt offers only `abort_packages`, which drops every pending package and rewinds the state; this
    drops the extracted copy of a package whose normalized copy is complete (`runner.tidy_killed_packages`).
    """
    volume = NormalizeStorageConfiguration(normalize_volume_path=str(Path(pipeline.working_dir, "normalize")))
    NormalizeStorage(False, volume).extracted_packages.delete_package(load_id)


def completed_packages(pipeline: dlt.Pipeline) -> list[str]:
    """The normalized packages that dlt had completed, but not yet moved among the loaded ones.

    dlt completes a package by recording its load in the destination (`_dlt_loads`), writing a marker
    into the package, then renaming the package into `load/loaded`; a process killed between the marker
    and the rename leaves such a package, which every later load refuses (`LoadPackageAlreadyCompleted`).
    """
    normalized = pipeline.list_normalized_load_packages()
    if not normalized:
        return []
    storage = _load_storage(pipeline)
    return [load_id for load_id in normalized if storage.normalized_packages.is_package_completed(load_id)]


def archive_completed_packages(pipeline: dlt.Pipeline) -> list[str]:
    """Move the `completed_packages` among the loaded ones, as dlt would have; returns their load ids.
    Their data is loaded and their load recorded, so the rename is what is left to do."""
    completed = completed_packages(pipeline)
    if completed:
        storage = _load_storage(pipeline)
        for load_id in completed:
            package = storage.get_normalized_package_path(load_id)
            storage.storage.rename_tree(package, storage.get_loaded_package_path(load_id))
    return completed


def _load_storage(pipeline: dlt.Pipeline) -> LoadStorage:
    """The normalized and loaded packages of the pipeline's working folder (`load`)."""
    volume = LoadStorageConfiguration(load_volume_path=str(Path(pipeline.working_dir, "load")))
    return LoadStorage(False, LoadStorage.ALL_SUPPORTED_FILE_FORMATS, volume)
