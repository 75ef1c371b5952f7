"""dlt's internals are reached from two modules only (CONTRIBUTING.md, "dlt's internals").

dlt's public API, here: `import dlt` and the names `dlt` exports (`dlt.__all__`; of
`dlt.destinations`, the destinations it exports), and `dlt.sources` with everything under it. Any
other dlt module is internal: only the adapters import one, and each says which dlt version it was
read from, so that an upgrade of dlt fails here until they are read again.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import dlt
import dlt.destinations

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ("pipelines/dlt_adapter.py", "sources/dlt_adapter.py")


def _public_module(module: str) -> bool:
    return module == "dlt" or module in {f"dlt.{name}" for name in ("sources", "destinations")} or (
        module.startswith("dlt.sources.")
    )


def _internal_reaches(tree: ast.AST) -> list[str]:
    """The dlt internals a module imports or reaches through `dlt.` attributes, as written."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names
                      if alias.name.startswith("dlt.") and not _public_module(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            if node.module == "dlt":
                found += [f"dlt.{alias.name}" for alias in node.names if alias.name not in dlt.__all__]
            elif node.module == "dlt.destinations":
                found += [f"dlt.destinations.{alias.name}" for alias in node.names
                          if alias.name not in dlt.destinations.__all__]
            elif node.module.startswith("dlt.") and not _public_module(node.module):
                found.append(node.module)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "dlt":
            if node.attr not in dlt.__all__ and not node.attr.startswith("__"):  # `dlt.__version__`
                found.append(f"dlt.{node.attr}")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
              and isinstance(node.value.value, ast.Name) and node.value.value.id == "dlt"
              and node.value.attr == "destinations" and node.attr not in dlt.destinations.__all__
              and not node.attr.startswith("__")):
            found.append(f"dlt.destinations.{node.attr}")
    return found


def _python_files() -> list[Path]:
    return sorted(
        path for path in ROOT.rglob("*.py")
        if not any(part.startswith(".") or part.endswith(".egg-info") for part in path.relative_to(ROOT).parts)
    )


def test_only_the_adapters_import_dlt_internals():
    reaches = {}
    for path in _python_files():
        name = path.relative_to(ROOT).as_posix()
        found = _internal_reaches(ast.parse(path.read_text(), name))
        if found and name not in ADAPTERS:
            reaches[name] = sorted(set(found))
    assert reaches == {}, "import these through pipelines/dlt_adapter.py or sources/dlt_adapter.py"


def test_the_check_finds_every_way_of_reaching_an_internal():
    source = (
        "import dlt\nimport dlt.common.storages\nfrom dlt.pipeline.exceptions import PipelineStepFailed\n"
        "from dlt import common\nfrom dlt.destinations import sql_client\nfrom dlt.sources import DltResource\n"
        "from dlt.sources.helpers.rest_client.auth import BearerTokenAuth\nfrom dlt.destinations import duckdb\n"
        "x = dlt.common.logger\ny = dlt.destinations.impl\nz = dlt.destinations.postgres\n"
        "w = dlt.current.source_state\nv = dlt.__version__\n"
    )
    assert sorted(_internal_reaches(ast.parse(source))) == [
        "dlt.common", "dlt.common", "dlt.common.storages", "dlt.destinations.impl", "dlt.destinations.sql_client",
        "dlt.pipeline.exceptions",
    ]


def test_each_adapter_says_the_dlt_version_it_was_read_from_and_it_is_the_installed_one():
    for name in ADAPTERS:
        docstring = ast.get_docstring(ast.parse((ROOT / name).read_text())) or ""
        read_from = re.search(r"Read from dlt (\S+?)\.?\s", docstring)
        assert read_from is not None, name
        assert read_from[1] == dlt.__version__, f"{name} was read from dlt {read_from[1]}: read it again"
