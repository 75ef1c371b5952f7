"""`make bench` removes what it made: the sandbox it serves in a child process keeps its v3 refresh token in a
folder of its own, and each `Ours` loads into a folder of its own; stopping the sandbox removes both."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from benchmarks.run import Ours, SandboxProcess


def test_a_stopped_bench_sandbox_leaves_nothing_in_the_temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the sandbox's process is forked with it
    sandbox = SandboxProcess((2, 20))
    try:
        Ours(sandbox, budget=0)  # asks the served sandbox for its settings: it makes its token's folder
        made = sorted(path.name.split("-")[0] for path in tmp_path.iterdir())
        assert made == ["bench", "campaign"], made
    finally:
        sandbox.stop()
    assert list(tmp_path.iterdir()) == []
