"""CONTRIBUTING.md's list of every file that names a provider matches the repository, so the guide
to adding a provider cannot drift from the code."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pipelines.providers import PROVIDERS

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "CONTRIBUTING.md"
LIST_HEADING = "### Every file that names a provider"
# a provider's identifier, in any letter case (in prose, and in setting names such as `SOURCES__<PROVIDER>__...`)
NAMES_A_PROVIDER = re.compile("|".join(re.escape(name) for name in PROVIDERS), re.IGNORECASE)


def listed_files() -> set[str]:
    """The paths the guide's list gives (`- `path`: ...`), `<provider>` expanded to every provider."""
    section = re.split(r"\n#+ ", GUIDE.read_text().split(LIST_HEADING, 1)[1], maxsplit=1)[0]
    paths = re.findall(r"^- `([^`]+)`", section, flags=re.MULTILINE)
    return {path.replace("<provider>", name) for path in paths for name in PROVIDERS}


def repository_files() -> list[str]:
    """Every file of the work tree that git does not ignore, committed or not."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()
    return sorted(path for path in listing.split("\0") if path and (ROOT / path).is_file())


def names_a_provider(path: str) -> bool:
    """Whether the file's path or text names a provider's identifier."""
    text = (ROOT / path).read_bytes().decode("utf-8", errors="replace")
    return bool(NAMES_A_PROVIDER.search(path) or NAMES_A_PROVIDER.search(text))


def test_the_guide_lists_every_file_that_names_a_provider():
    listed = listed_files()
    unlisted = [path for path in repository_files() if names_a_provider(path) and path not in listed]
    assert unlisted == [], f"name a provider but are not in CONTRIBUTING.md's '{LIST_HEADING}': {unlisted}"


def test_every_listed_file_exists_and_names_a_provider():
    listed = listed_files()
    assert "pipelines/providers.py" in listed  # the list was found and read
    missing = sorted(path for path in listed if not (ROOT / path).is_file())
    assert missing == [], f"CONTRIBUTING.md lists files that do not exist: {missing}"
    stale = sorted(path for path in listed if not names_a_provider(path))
    assert stale == [], f"CONTRIBUTING.md lists files that name no provider: {stale}"


# every provider package holds these modules, and a provider that serves a second API version the pair for it
PACKAGE_SHAPE = {"__init__.py", "client.py", "mapping.py"}
SECOND_API_SHAPE = {"client_v2.py", "mapping_v2.py", "upgrade.py"}


def test_every_provider_package_has_the_one_module_shape():
    shapes = {
        name: {path.name for path in (ROOT / "sources" / name).glob("*.py")} for name in PROVIDERS
    }
    assert all(modules >= PACKAGE_SHAPE for modules in shapes.values()), shapes
    odd = {name: modules - PACKAGE_SHAPE for name, modules in shapes.items()
           if modules - PACKAGE_SHAPE not in (set(), SECOND_API_SHAPE)}
    assert odd == {}, f"provider packages outside the shape CONTRIBUTING.md gives: {odd}"
    assert any(modules == PACKAGE_SHAPE | SECOND_API_SHAPE for modules in shapes.values())  # one serves two APIs
