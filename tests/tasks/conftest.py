"""Fixtures for task/evaluation tests: a tiny byte-level BPE tokenizer and tiny random causal LMs.

Everything is built offline in milliseconds: the tokenizer is trained on FLORES/XNLI lines from
../shared/data (or a few fixed sentences when that folder is absent), so any UTF-8 text encodes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import SHARED_DATA, require_shared_data

_FALLBACK_TEXT = [
    "The cat sat on the mat. Question: Answer: Yes Maybe No",
    "Der Hund schläft. Frage: Antwort: Ja Vielleicht Nein",
    "他说，妈妈，我回来了。 问题 答案 是 也许 否",
]


def training_text() -> list[str]:
    lines = list(_FALLBACK_TEXT)
    for name in ("flores/devtest.en.txt", "flores/devtest.de.txt", "flores/devtest.zh.txt"):
        path = SHARED_DATA / name
        if path.is_file():
            lines += path.read_text(encoding="utf-8").splitlines()[:200]
    return lines


def make_tokenizer(vocab_size: int = 1000, pad: bool = False):
    """Byte-level BPE with a Llama-like layout: BOS prepended, EOS known, no pad token by default."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(training_text(), trainer)
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", core.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>")
    if pad:
        tokenizer.pad_token = "<pad>"
    return tokenizer


def make_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=512,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=None,
    )
    return LlamaForCausalLM(config).eval()


def make_gpt2(vocab_size: int, seed: int = 0):
    """Absolute position embeddings: catches left padding without matching position_ids."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_embd=64, n_layer=2, n_head=4, vocab_size=vocab_size, n_positions=512, bos_token_id=0, eos_token_id=1
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def llama(tokenizer):
    return make_llama(len(tokenizer))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require_shared_data()
