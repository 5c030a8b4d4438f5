"""Config checks that do not lie or hang: override errors name the override; models and data are looked
up offline first; the Hub is reached only when needed, with a timeout. HF_HUB_OFFLINE is unset here on
purpose (users often run online), and every socket connect fails, so nothing can touch the network.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from hyft.config import ConfigError, load_config


class Train(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float
    epochs: int = 1


class Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    train: Train
    models: list[Train] = []


@pytest.fixture
def online_without_network(monkeypatch):
    """HF_HUB_OFFLINE unset, yet any connection attempt fails the test loudly."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text("name: x\ntrain:\n  lr: 0.001\n  epochs: 2\nmodels:\n  - lr: 0.1\n", encoding="utf-8")
    return path


def test_an_error_in_an_override_names_the_override_not_a_line(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path), Cfg, ["train.lr=abc"])
    message = str(caught.value)
    assert "command-line override 'train.lr=abc'" in message
    assert "cfg.yaml:3" not in message  # line 3 holds the value the override replaced
    with pytest.raises(ConfigError, match=r"other\.yaml:4: train\.epochs"):  # file errors keep their line
        load_config(_write(tmp_path, "name: x\ntrain:\n  lr: 0.1\n  epochs: many\n"), Cfg, ["train.lr=0.2"])


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "other.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_overrides_index_lists_and_refuse_scalars_by_name(tmp_path):
    config = load_config(_config(tmp_path), Cfg, ["models.0.lr=0.5"])
    assert config.models[0].lr == 0.5
    with pytest.raises(ConfigError, match="command-line override 'models.0.lr=x'"):
        load_config(_config(tmp_path), Cfg, ["models.0.lr=x"])
    with pytest.raises(ConfigError, match=r"override 'name.first=a': 'name' is a str"):
        load_config(_config(tmp_path), Cfg, ["name.first=a"])
    with pytest.raises(ConfigError, match=r"override 'train.lr=\[': value is not valid YAML"):
        load_config(_config(tmp_path), Cfg, ["train.lr=["])


def _not_found(cls, message: str):
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


def test_a_cached_model_is_ok_without_any_hub_request(online_without_network, monkeypatch, tmp_path):
    import huggingface_hub

    from hyft.experiments import preflight

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(tmp_path))
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda *a, **k: pytest.fail("Hub reached"))
    assert preflight._model_problem(0, "someone/cached-model") is None


def test_an_unknown_hub_model_is_not_ok_when_online(online_without_network, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    from hyft.experiments import preflight
    from hyft.tasks.loading import HUB_TIMEOUT_S

    calls = []

    def not_cached(repo_id, **kwargs):
        assert kwargs.get("local_files_only") is True
        raise LocalEntryNotFoundError("not cached")

    def model_info(self, repo_id, **kwargs):
        calls.append(kwargs)
        if repo_id == "nobody/offline-net":
            raise TimeoutError("read timed out")
        raise _not_found(RepositoryNotFoundError, "404")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_cached)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    problem = preflight._model_problem(0, "nobody/does-not-exist-model")
    assert (
        problem is not None and "the Hub has no such model" in problem and "models.0.name_or_path" in problem
    )
    slow = preflight._model_problem(1, "nobody/offline-net")
    assert slow is not None and f"within {HUB_TIMEOUT_S:.0f} s" in slow and "TimeoutError" in slow
    assert calls == [{"timeout": HUB_TIMEOUT_S}] * 2  # reached only with a timeout
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = preflight._model_problem(0, "nobody/does-not-exist-model")
    assert offline is not None and "HF_HUB_OFFLINE" in offline and len(calls) == 2


def test_missing_xnli_data_dir_fails_fast_without_the_hub(online_without_network, monkeypatch, tmp_path):
    import time

    import datasets
    import huggingface_hub

    from hyft.tasks.loading import DataError, DataSource
    from hyft.tasks.registry import get_task

    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **k: pytest.fail("datasets.load_dataset reached")
    )
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", lambda *a, **k: pytest.fail("Hub reached"))
    started = time.monotonic()
    with pytest.raises(DataError, match="file not found") as caught:
        get_task("xnli").load("test", "en", DataSource.default(tmp_path / "no-such-data"))
    assert time.monotonic() - started < 5
    assert "no-such-data" in str(caught.value) and "data_dir" in str(caught.value)


def test_hub_mode_checks_the_dataset_with_a_timeout_first(online_without_network, monkeypatch, tmp_path):
    import datasets
    import huggingface_hub

    from hyft.tasks.loading import HUB_TIMEOUT_S, DataError, DataSource
    from hyft.tasks.registry import get_task

    calls = []

    def dataset_info(self, repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("datasets retried the Hub"))
    with pytest.raises(DataError, match=f"within {HUB_TIMEOUT_S:.0f} s"):
        get_task("xnli").load("test", "en", DataSource(tmp_path, "hub"))
    assert len(calls) == 1 and calls[0][1] == {"timeout": HUB_TIMEOUT_S}
