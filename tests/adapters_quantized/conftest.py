"""One tiny random Llama per test module, saved once and loaded fresh (quantized) by each test."""

from __future__ import annotations

import pytest

from tests.adapters_quantized.tiny import save_tiny_llama


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
