"""The completion marker names every file relative to its folder, however the caller spelled the paths."""

from __future__ import annotations

from hyft.io import file_sha256, read_marker, require_marker, write_marker


def test_marker_of_a_relative_folder_with_cwd_relative_and_folder_relative_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "runs" / "demo" / "curation"
    folder.mkdir(parents=True)
    (folder / "c0.jsonl").write_text("{}\n")
    (folder / "report.json").write_text("{}")
    marker = write_marker("runs/demo/curation", ["runs/demo/curation/c0.jsonl", "report.json"], kind="test")
    assert set(marker["files"]) == {"c0.jsonl", "report.json"}
    assert marker["files"]["c0.jsonl"] == file_sha256(folder / "c0.jsonl")
    assert read_marker(folder)["files"] == marker["files"]
    require_marker(folder, "curation folder")  # every listed file verifies


def test_marker_with_absolute_names(tmp_path):
    (tmp_path / "results.json").write_text("[]")
    marker = write_marker(tmp_path, [tmp_path / "results.json"], kind="test")
    assert list(marker["files"]) == ["results.json"]
