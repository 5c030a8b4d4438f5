"""``eval.chat_template``: decoder prompts in the tokenizer's chat template,
the same in training and evaluation."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from tests.tasks.conftest import make_llama, make_tokenizer

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
EXAMPLE = {
    "id": "x/1",
    "premise": "The cat sat on the mat.",
    "hypothesis": "A cat is sitting.",
    "label": "entailment",
}


@pytest.fixture(scope="module")
def tokenizers():
    plain = make_tokenizer()
    chat = copy.deepcopy(plain)
    chat.chat_template = TEMPLATE
    return plain, chat


def chat_rendering(prompt: str) -> str:
    return f"<|user|>\n{prompt}\n<|assistant|>\n"  # TEMPLATE written out by hand for one user message


def test_training_example_uses_the_template_under_auto_and_todays_prompt_otherwise(tokenizers):
    from hyft.tasks.causal_lm import build_causal_lm_example, encode_context_continuation
    from hyft.tasks.registry import get_task
    from hyft.tasks.templates import chat_prompt, render_prompt, template_for

    plain, chat = tokenizers
    task = get_task("xnli")
    prompt = render_prompt(task, template_for(task, "en"), EXAMPLE)
    assert prompt == "The cat sat on the mat.\nQuestion: A cat is sitting.\nAnswer:"
    assert chat_prompt(chat, prompt, "auto") == chat_rendering(prompt)
    assert chat_prompt(chat, prompt, "never") == prompt and chat_prompt(plain, prompt, "auto") == prompt

    context, target = encode_context_continuation(
        chat, chat_rendering(prompt), "Yes"
    )  # reply: no leading space
    built = build_causal_lm_example(task, EXAMPLE, "en", chat, chat_template="auto")
    assert built["input_ids"] == context + target + [chat.eos_token_id]
    assert built["labels"] == [-100] * len(context) + target + [chat.eos_token_id]
    assert chat.decode(built["input_ids"]).startswith("<s><|user|>\nThe cat")  # one BOS, then the template

    today = build_causal_lm_example(task, EXAMPLE, "en", plain, chat_template="auto")
    context, target = encode_context_continuation(plain, prompt, " Yes")
    assert today["input_ids"] == context + target + [plain.eos_token_id]
    assert build_causal_lm_example(task, EXAMPLE, "en", chat, chat_template="never") == today


def test_classification_scores_see_the_training_format(tokenizers):
    from hyft.evaluation.classify import decoder_scores
    from hyft.evaluation.evaluate import classification_scores
    from hyft.tasks.registry import get_task
    from hyft.tasks.templates import render_prompt, template_for

    plain, chat = tokenizers
    task = get_task("xnli")
    template = template_for(task, "en")
    model = make_llama(len(plain), seed=3)
    prompt = render_prompt(task, template, EXAMPLE)
    scored = classification_scores(model, chat, task, [EXAMPLE], "decoder", template, progress=False)
    expected = decoder_scores(model, chat, [chat_rendering(prompt)], ["Yes", "Maybe", "No"], progress=False)
    torch.testing.assert_close(scored.scores, expected.scores, rtol=0, atol=0)
    never = classification_scores(
        model, chat, task, [EXAMPLE], "decoder", template, progress=False, chat_template="never"
    )
    plain_scores = decoder_scores(model, plain, [prompt], [" Yes", " Maybe", " No"], progress=False)
    torch.testing.assert_close(never.scores, plain_scores.scores, rtol=0, atol=0)
    assert not torch.equal(scored.scores, never.scores)  # the template really changed what was scored


def test_generation_prompts_single_and_multi_turn(tokenizers, monkeypatch):
    from hyft.evaluation import evaluate_generation
    from hyft.tasks.registry import get_task
    from hyft.tasks.templates import template_for

    plain, chat = tokenizers
    seen: list[list[str]] = []

    def record(model, tokenizer, prompts, *args):  # a spy: which prompts reach the generator
        seen.append(list(prompts))
        return [SimpleNamespace(text=" 4") for _ in prompts]

    monkeypatch.setattr(evaluate_generation, "greedy_generate", record)
    gsm8k = get_task("gsm8k")
    row = {"id": "g/1", "question": "What is 2+2?", "answer": "4"}
    for tokenizer, mode in ((chat, "auto"), (chat, "never"), (plain, "auto")):
        evaluate_generation._generate_answers(
            None, tokenizer, gsm8k, template_for(gsm8k, "en"), [row], [], 1, 8, False, mode
        )
    assert seen == [
        [chat_rendering("Question: What is 2+2?\nAnswer:")],
        ["Question: What is 2+2?\nAnswer:"],
        ["Question: What is 2+2?\nAnswer:"],
    ]

    seen.clear()
    mtbench = get_task("mtbench")
    row = {"id": "m/1", "turns": ["Hi there.", "And now?"], "answer": ""}
    evaluate_generation._generate_answers(
        None, chat, mtbench, template_for(mtbench, "en"), [row], [], 1, 8, False, "auto"
    )
    assert seen == [
        ["<|user|>\nHi there.\n<|assistant|>\n"],
        ["<|user|>\nHi there.\n<|assistant|>\n4\n<|user|>\nAnd now?\n<|assistant|>\n"],
    ]
