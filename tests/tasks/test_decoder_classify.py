"""Decoder classification by verbaliser log-likelihood on tiny random causal LMs (Llama: RoPE; GPT-2:
absolute positions, which would break if left padding were not matched by position_ids)."""

from __future__ import annotations

import pytest
import torch

from hyft.evaluation.classify import continuation_logprobs, decoder_scores
from hyft.tasks import get_task
from hyft.tasks.causal_lm import IGNORE_INDEX, build_causal_lm_example, encode_context_continuation
from hyft.tasks.templates import nli_template, render_prompt, template_for, verbalizers_in_label_order

from .conftest import make_gpt2, make_llama
from .oracles import nll_slope_in_temperature, textbook_ece

EXAMPLES = [
    {
        "id": "a",
        "premise": "The cat sat on the mat.",
        "hypothesis": "A cat is sitting.",
        "label": "entailment",
    },
    {
        "id": "b",
        "premise": "Der Hund schläft seit dem frühen Morgen tief und fest im warmen Korb neben dem Ofen.",
        "hypothesis": "Der Hund rennt.",
        "label": "contradiction",
    },
    {"id": "c", "premise": "他说，妈妈，我回来了。", "hypothesis": "他没说一句话。", "label": "neutral"},
    {"id": "d", "premise": "Short.", "hypothesis": "Fine.", "label": "neutral"},
]


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request, tokenizer):
    return {"llama": make_llama, "gpt2": make_gpt2}[request.param](len(tokenizer), seed=3)


def _prompts(lang="en"):
    task = get_task("xnli")
    template = template_for(task, lang)
    return [render_prompt(task, template, ex) for ex in EXAMPLES], verbalizers_in_label_order(task, template)


def test_probabilities_sum_to_one_and_prediction_is_the_argmax(model, tokenizer):
    prompts, verbalizers = _prompts("de")
    scored = decoder_scores(model, tokenizer, prompts, verbalizers, batch_size=5, progress=False)
    assert scored.scores.shape == scored.probs.shape == (len(EXAMPLES), 3)
    torch.testing.assert_close(scored.probs.sum(-1), torch.ones(len(EXAMPLES)), rtol=0, atol=1e-6)
    assert scored.predictions == scored.scores.argmax(-1).tolist() == scored.probs.argmax(-1).tolist()
    assert (scored.scores < 0).all()  # log-likelihoods of multi-token continuations
    assert scored.probs.max(-1).values.min() < 0.999  # a real distribution, not a one-hot


def test_batched_left_padded_scoring_equals_one_by_one(model, tokenizer):
    prompts, verbalizers = _prompts("en")
    lengths = {len(tokenizer(p)["input_ids"]) for p in prompts}
    assert len(lengths) == len(prompts)  # different lengths, so the batch really is padded
    batched = decoder_scores(model, tokenizer, prompts, verbalizers, batch_size=12, progress=False).scores
    single = torch.stack(
        [
            decoder_scores(model, tokenizer, [p], verbalizers, batch_size=1, progress=False).scores[0]
            for p in prompts
        ]
    )
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-5)


def test_scores_equal_an_unpadded_full_forward_sum(model, tokenizer):
    """Independent oracle: sum of log p(token) over the continuation in a plain forward pass."""
    context, continuation = "Frage: Der Hund rennt.\nAntwort:", " Vielleicht"
    got = continuation_logprobs(
        model, tokenizer, [(context, continuation), ("x", " y z")], batch_size=2, progress=False
    )[0]
    context_ids, continuation_ids = encode_context_continuation(tokenizer, context, continuation)
    assert tokenizer.decode(continuation_ids) == continuation and context_ids[0] == tokenizer.bos_token_id
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)
    expected = sum(logprobs[len(context_ids) - 1 + j, t] for j, t in enumerate(continuation_ids))
    assert abs(float(got) - float(expected)) < 1e-4
    mean = continuation_logprobs(
        model, tokenizer, [(context, continuation)], normalization="mean", progress=False
    )
    assert abs(float(mean[0]) - float(expected) / len(continuation_ids)) < 1e-4


def test_causal_lm_example_masks_the_prompt_and_matches_scoring(tokenizer):
    task = get_task("xnli")
    example = EXAMPLES[1]
    built = build_causal_lm_example(task, example, "de", tokenizer, shots=[EXAMPLES[0]])
    assert len(built["input_ids"]) == len(built["labels"]) == len(built["attention_mask"])
    prompt = render_prompt(task, nli_template("de"), example, [EXAMPLES[0]])
    context_ids, target_ids = encode_context_continuation(tokenizer, prompt, " Nein")
    n = len(context_ids)
    assert built["input_ids"] == context_ids + target_ids + [tokenizer.eos_token_id]
    assert built["labels"][:n] == [IGNORE_INDEX] * n
    assert built["labels"][n:] == target_ids + [tokenizer.eos_token_id]
    assert "Ja" in prompt and prompt.endswith("Antwort:")  # the shot is solved, the query is not
    short = build_causal_lm_example("xnli", example, "de", tokenizer, shots=[EXAMPLES[0]], max_length=12)
    assert len(short["input_ids"]) == 12 and short["input_ids"][0] == tokenizer.bos_token_id
    assert short["labels"][-len(target_ids) - 1 :] == target_ids + [tokenizer.eos_token_id]
    translation = build_causal_lm_example(
        "flores",
        {"id": "t", "src_lang": "en", "tgt_lang": "de", "source": "Hello.", "target": "Hallo."},
        "en-de",
        tokenizer,
    )
    supervised = [
        t for t, label in zip(translation["input_ids"], translation["labels"], strict=True) if label != -100
    ]
    assert tokenizer.decode(supervised, skip_special_tokens=True) == " Hallo."


def test_template_overrides_must_cover_the_labels():
    from hyft.tasks.loading import DataError
    from hyft.tasks.templates import ClassificationTemplate

    task = get_task("xnli")
    override = ClassificationTemplate(
        prompt="{premise} ? {hypothesis} =>", verbalizers={"entailment": " yes"}
    )
    with pytest.raises(DataError, match="verbalises"):
        template_for(task, "en", {"*": override})
    good = override.model_copy(
        update={"verbalizers": {"entailment": " y", "neutral": " m", "contradiction": " n"}}
    )
    assert template_for(task, "fr", {"*": good}) is good and template_for(task, "fr", {"en": good}) != good


def test_decoder_xnli_evaluation_rebuilds_from_its_parts(llama, tokenizer, data_dir):
    """evaluate_task with 8 shots and given dev scores == the same pipeline assembled by hand."""
    from hyft.evaluation.evaluate import evaluate_task
    from hyft.tasks.kshot import sample_k_shot
    from hyft.tasks.loading import DataSource

    task, data = get_task("xnli"), DataSource(data_dir, "local")
    generator = torch.Generator().manual_seed(0)
    # Dev scores whose argmax is right 3 times in 4: the fitted T lies inside (0.05, 20), not on a bound
    dev_logits = [torch.randn(30, 3, generator=generator) * 3 for _ in range(2)]
    dev_scores = {
        lang: (logits, [top if i % 4 else (top + 1) % 3 for i, top in enumerate(logits.argmax(1).tolist())])
        for lang, logits in zip(("en", "hi"), dev_logits, strict=True)
    }
    results = evaluate_task(
        llama,
        tokenizer,
        task,
        ["en", "hi"],
        model_kind="decoder",
        num_fewshot=8,
        seed=1,
        max_examples=5,
        batch_size=6,
        data=data,
        dev_scores=dev_scores,
        progress=False,
    )
    for lang in ("en", "hi"):
        shots = sample_k_shot(task.load("dev", lang, data), 8, seed=1)
        assert results["shot_ids"][lang] == [shot["id"] for shot in shots]
        rows = task.load("test", lang, data)[:5]
        template = template_for(task, lang)
        prompts = [render_prompt(task, template, row, shots) for row in rows]
        assert prompts[0].count(template.separator) == 8  # 8 solved demonstrations, then the query
        scored = decoder_scores(
            llama, tokenizer, prompts, verbalizers_in_label_order(task, template), progress=False
        )
        samples = [s for s in results["samples"] if s["lang"] == lang]
        torch.testing.assert_close(
            torch.tensor([s["probs"] for s in samples]), scored.probs, rtol=0, atol=1e-5
        )
        gold = [task.label_index(row) for row in rows]
        entry = results["per_language"][lang]
        # T was fitted on the given dev scores: the dev NLL is flat in T there, and rises on either side
        temperature = entry["temperature"]
        assert 1 < temperature < 10
        assert nll_slope_in_temperature(*dev_scores[lang], temperature) == pytest.approx(0, abs=1e-7)
        assert nll_slope_in_temperature(*dev_scores[lang], 0.9 * temperature) < 0
        assert nll_slope_in_temperature(*dev_scores[lang], 1.1 * temperature) > 0
        scaled = torch.softmax(scored.scores.double() / temperature, dim=-1).numpy()
        assert entry["ece_temperature_scaled"] == pytest.approx(textbook_ece(scaled, gold), abs=1e-6)
        assert entry["ece"] == pytest.approx(textbook_ece(scored.probs.double().numpy(), gold), abs=1e-6)
