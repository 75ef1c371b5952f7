"""The command line's logs: dlt's records go where the command's go, from the level the command
sets (DEBUG with --debug, else RUNTIME__LOG_LEVEL, else none), and a command leaves nothing in the
process (no environment variable, no level) that changes the next one."""

from __future__ import annotations

import logging
import os

from pipelines.cli import main


def test_each_command_sets_dlts_level_and_leaves_nothing_for_the_next(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("RUNTIME__LOG_LEVEL", raising=False)
    argv = ["status", "--pipelines-dir", str(tmp_path / "pipelines"), "--duckdb-path", str(tmp_path / "x.duckdb")]
    caplog.set_level(logging.DEBUG)
    dlt_logs = logging.getLogger("dlt")

    assert main([*argv, "--debug"]) == 0
    dlt_logs.debug("probe: after --debug")
    assert main(argv) == 0
    dlt_logs.error("probe: after a command without --debug")
    assert "RUNTIME__LOG_LEVEL" not in os.environ
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "info")
    assert main(argv) == 0
    dlt_logs.debug("probe: below RUNTIME__LOG_LEVEL")
    dlt_logs.info("probe: at RUNTIME__LOG_LEVEL")

    probes = [record.getMessage() for record in caplog.records if record.getMessage().startswith("probe:")]
    assert probes == ["probe: after --debug", "probe: at RUNTIME__LOG_LEVEL"]
    assert dlt_logs.handlers == [] and dlt_logs.propagate  # through the command's handlers (and their redaction)
    assert not tmp_path.joinpath("pipelines").exists()  # status made nothing
