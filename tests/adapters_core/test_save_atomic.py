"""save_pretrained is atomic: a save that fails half-way leaves no folder or the previous complete one."""

from __future__ import annotations

import os

import pytest
import torch

import hyft
import hyft.adapters.model as model_module
from tests.conftest import tiny_llama


class _Boom(RuntimeError):
    pass


def _lora(seed: int = 0):
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora", r=4, alpha=8))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.copy_(
                    torch.randn(param.shape, generator=torch.Generator().manual_seed(seed + len(name)))
                )
    return model


def _contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _torn_save_file(monkeypatch):
    """save_file writes half of its file, then fails (a crash or a full disk in the middle of a save)."""
    real = model_module.save_file

    def torn(state, path, metadata=None):
        real(state, path, metadata=metadata)
        with open(path, "r+b") as handle:
            handle.truncate(max(1, handle.seek(0, 2) // 2))
        raise _Boom("disk full")

    monkeypatch.setattr(model_module, "save_file", torn)


def test_a_failed_first_save_leaves_no_folder(tmp_path, monkeypatch):
    target = tmp_path / "adapter"
    _torn_save_file(monkeypatch)
    with pytest.raises(_Boom):
        _lora().save_pretrained(target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # the temp folder is cleaned up too


def test_a_failed_resave_keeps_the_previous_complete_folder(tmp_path, monkeypatch):
    target = tmp_path / "adapter"
    first = _lora(seed=0)
    first.save_pretrained(target)
    before = _contents(target)
    assert sorted(before) == ["adapter_config.json", "adapter_model.safetensors"]
    _torn_save_file(monkeypatch)
    with pytest.raises(_Boom):
        _lora(seed=7).save_pretrained(target)
    assert _contents(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    monkeypatch.undo()
    loaded = hyft.load(tiny_llama(), target)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in first.state_dict().items())


def test_a_failed_full_save_keeps_the_previous_folder(tmp_path, monkeypatch):
    target = tmp_path / "full"
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="full"))
    model.save_pretrained(target)
    before = _contents(target)
    assert "model.safetensors" in before and "hyft_config.json" in before

    def torn(directory, **kwargs):
        (directory / "config.json").write_text("{}")
        (directory / "model.safetensors").write_bytes(b"half")
        raise _Boom("killed")

    monkeypatch.setattr(model.base_model, "save_pretrained", torn)
    with pytest.raises(_Boom):
        model.save_pretrained(target)
    assert _contents(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_a_resave_replaces_the_adapter_files_and_keeps_the_users_own(tmp_path):
    target = tmp_path / "adapter"
    _lora(seed=0).save_pretrained(target)
    (target / "NOTES.md").write_text("mine\n")
    second = _lora(seed=3)
    second.save_pretrained(target)
    assert sorted(p.name for p in target.iterdir()) == [
        "NOTES.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert (target / "NOTES.md").read_text() == "mine\n"
    loaded = hyft.load(tiny_llama(), target)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in second.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_the_saved_folder_has_the_usual_permissions(tmp_path):
    target = tmp_path / "adapter"
    _lora().save_pretrained(target)
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask
