"""Batched greedy generation on a tiny random Llama: stop strings, token limits, batch = one-by-one."""

from __future__ import annotations

import torch

from hyft.evaluation.generate import cut_at_stop, greedy_generate

PROMPTS = [
    "English: The cat sat on the mat.\nGerman:",
    "Hello",
    "他说，妈妈，我回来了。 And then a much longer prompt follows here with many more words in it.",
]


def test_batched_generation_equals_one_by_one_and_respects_max_new_tokens(llama, tokenizer):
    batched = greedy_generate(llama, tokenizer, PROMPTS, max_new_tokens=10, batch_size=3, progress=False)
    single = [
        greedy_generate(llama, tokenizer, [p], max_new_tokens=10, batch_size=1, progress=False)[0]
        for p in PROMPTS
    ]
    assert [g.text for g in batched] == [g.text for g in single]
    for generation in batched:
        assert generation.new_tokens <= 10
        assert generation.stop_reason in ("max_new_tokens", "eos")
    # greedy = argmax at each step: check the first new token against a plain forward pass
    ids = torch.tensor([tokenizer(PROMPTS[1])["input_ids"]])
    with torch.no_grad():
        first = int(llama(ids).logits[0, -1].argmax())
    assert batched[1].text.startswith(tokenizer.decode([first]))


def test_generation_stops_at_a_stop_string_and_cuts_it(llama, tokenizer):
    prompt = PROMPTS[0]
    free = greedy_generate(llama, tokenizer, [prompt], max_new_tokens=12, progress=False)[0]
    ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        out = llama.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=1)
    new = out[0, len(ids) :].tolist()
    # a stop string = the text of a token generated at step j that did not appear earlier in the output
    for j in range(2, len(new)):
        stop = tokenizer.decode(new[j : j + 1])
        before = tokenizer.decode(new[:j])
        if (
            stop.strip()
            and "\ufffd" not in stop
            and stop not in before
            and before + stop == tokenizer.decode(new[: j + 1])
        ):
            break
    else:
        raise AssertionError("no usable stop token in the free generation")
    stopped = greedy_generate(
        llama,
        tokenizer,
        [prompt, PROMPTS[2]],
        max_new_tokens=12,
        stop_strings=[stop],
        batch_size=2,
        progress=False,
    )[0]
    assert stopped.stop_reason == "stop_string"
    assert stopped.new_tokens == j + 1
    assert stopped.text == before == free.text[: free.text.index(stop)]


def test_cut_at_stop_uses_the_earliest_stop():
    assert cut_at_stop("a\nb####c", ["####", "\n"]) == "a"
    assert cut_at_stop("abc", ["x"]) == "abc"
