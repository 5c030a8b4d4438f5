"""Missing ../shared/data fails the data-backed tests with one message naming the path; opting out skips."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

# One data-backed test of the k-shot sampler (reads XNLI dev from the data folder).
TARGET = "tests/tasks/test_kshot.py::test_sampling_is_deterministic_and_changes_with_the_seed"


def _pytest(tmp_path, **env) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if key != "HYFT_ALLOW_MISSING_DATA"}
    environ.update(env, HYFT_DATA_DIR=str(tmp_path / "absent"))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", TARGET],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_data_fails_naming_the_path_and_the_opt_out_skips(tmp_path):
    failed = _pytest(tmp_path)
    assert failed.returncode == 1, failed.stdout
    assert f"benchmark data not found at {tmp_path / 'absent'}" in failed.stdout
    assert "1 error" in failed.stdout and "HYFT_ALLOW_MISSING_DATA=1" in failed.stdout
    skipped = _pytest(tmp_path, HYFT_ALLOW_MISSING_DATA="1")
    assert skipped.returncode == 0, skipped.stdout
    assert "1 skipped" in skipped.stdout and str(tmp_path / "absent") in skipped.stdout
