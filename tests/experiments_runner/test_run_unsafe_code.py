"""eval.allow_unsafe_code: a run with a HumanEval task refuses up front where there is no kernel sandbox."""

from __future__ import annotations

import pytest

import hyft.evaluation.sandbox as sandbox
from hyft.errors import UserError
from tests.experiments_runner.test_runner import _load, _reduced_demo

NO_KERNEL = ("rlimits", "audit-hook")  # what a machine without user namespaces gives


@pytest.fixture
def no_kernel_sandbox(monkeypatch):
    monkeypatch.setattr(sandbox, "kernel_isolation", lambda: NO_KERNEL)
    monkeypatch.setattr(sandbox, "kernel_sandbox_available", lambda: False)
    monkeypatch.setattr(sandbox, "_unsafe_code_allowed", False)  # restored after the test


def _humaneval_config(tmp_path, **changes):
    config = _reduced_demo(tmp_path, "code", **{"data.task": "humaneval", "data.k_shots": [0], **changes})
    config.pop("curation", None)
    config["data"]["languages"] = ["en"]
    return _load(config)


def test_allow_unsafe_code_defaults_to_off():
    from hyft.experiments.config import EvalSection

    assert EvalSection().allow_unsafe_code is False


def test_a_humaneval_run_is_refused_before_any_work_without_a_kernel_sandbox(tmp_path, no_kernel_sandbox):
    from hyft.experiments.runner import run

    config = _humaneval_config(tmp_path)
    with pytest.raises(UserError) as refused:
        run(config, show_progress=False)
    message = str(refused.value)
    assert "HumanEval" in message and "no kernel isolation" in message
    assert "eval.allow_unsafe_code: true" in message
    assert not config.run_dir.exists()  # nothing trained, nothing written
    assert sandbox._unsafe_code_allowed is False


def test_allow_unsafe_code_lets_it_through_and_sets_the_sandbox_permission(tmp_path, no_kernel_sandbox):
    from hyft.experiments.cell_run import check_code_sandbox

    check_code_sandbox(_humaneval_config(tmp_path, **{"eval.allow_unsafe_code": True}))
    assert sandbox._unsafe_code_allowed is True  # HumanEval's sandbox runs then use the permission


def test_a_run_without_humaneval_never_asks(tmp_path, monkeypatch):
    from hyft.experiments.cell_run import check_code_sandbox

    def refuse(_allow):
        raise AssertionError("no HumanEval task: the sandbox is not consulted")

    monkeypatch.setattr(sandbox, "check_code_execution_allowed", refuse)
    check_code_sandbox(_load(_reduced_demo(tmp_path, "topic")))
