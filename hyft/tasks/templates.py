"""Prompt templates and label verbalisers for decoder models (per language, overridable in config).

A classification template is scored by the log-likelihood of each label's verbaliser right after the
prompt; a generation template is completed greedily until a stop string. The same templates build
causal-LM training examples (:mod:`hyft.tasks.causal_lm`), so training and evaluation see one format.

Templates are ``str.format`` strings over the example's fields (``{premise}``, ``{source}``, ...); for
translation also ``{source_name}`` and ``{target_name}`` (English language names).

Chat templates (``eval.chat_template: auto``): when the tokenizer has one, the rendered prompt (instruction,
shots and query) becomes one user message rendered by ``tokenizer.apply_chat_template`` with the
generation prompt, and the target (verbaliser or gold output) is the assistant's reply without its leading
whitespace (a plain-text continuation's space would be an odd first token of a reply). Training examples
and evaluation prompts go through the same :func:`chat_prompt` / :func:`chat_target`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataError


class ClassificationTemplate(BaseModel):
    """Prompt + one verbaliser per label; the label set is the task's (all labels must be covered)."""

    model_config = ConfigDict(extra="forbid")

    instruction: str = Field("", description="Text placed once before the shots and the prompt.")
    prompt: str = Field(description="Format string over the example's fields; the verbaliser follows it.")
    verbalizers: dict[str, str] = Field(
        description="Label name → continuation scored after the prompt (usually with a leading space)."
    )
    separator: str = Field("\n\n", description="Text between k-shot demonstrations and the query.")


class GenerationTemplate(BaseModel):
    """Prompt completed by greedy decoding; ``target`` formats the gold answer in shots and training."""

    model_config = ConfigDict(extra="forbid")

    instruction: str = Field("", description="Text placed once before the shots and the prompt.")
    prompt: str = Field(description="Format string over the example's fields; generation starts after it.")
    target: str = Field(" {target}", description="Format string of the gold output after the prompt.")
    stop_strings: list[str] = Field(
        default_factory=lambda: ["\n"], description="Generation stops at any of these."
    )
    separator: str = Field("\n\n", description="Text between k-shot demonstrations and the query.")


Template = ClassificationTemplate | GenerationTemplate
ChatTemplateMode = Literal["auto", "never"]

LANGUAGE_NAMES = {
    "en": "English", "zh": "Chinese", "zh_Hant": "Traditional Chinese", "es": "Spanish", "hi": "Hindi",
    "ar": "Arabic", "sw": "Swahili", "de": "German", "fr": "French", "ru": "Russian", "th": "Thai",
    "vi": "Vietnamese", "tr": "Turkish", "ur": "Urdu", "bg": "Bulgarian", "el": "Greek", "ja": "Japanese",
    "ko": "Korean", "pt": "Portuguese", "it": "Italian", "id": "Indonesian", "bn": "Bengali", "ta": "Tamil",
    "te": "Telugu", "fa": "Persian", "pl": "Polish", "nl": "Dutch", "uk": "Ukrainian", "he": "Hebrew",
    "fi": "Finnish", "et": "Estonian",
}  # fmt: skip

# (question word, answer word, yes, maybe, no) per XNLI language; NLI labels map to yes/maybe/no.
_NLI_WORDS = {
    "en": ("Question", "Answer", "Yes", "Maybe", "No"),
    "ar": ("سؤال", "جواب", "نعم", "ربما", "لا"),
    "bg": ("Въпрос", "Отговор", "Да", "Може би", "Не"),
    "de": ("Frage", "Antwort", "Ja", "Vielleicht", "Nein"),
    "el": ("Ερώτηση", "Απάντηση", "Ναι", "Ίσως", "Όχι"),
    "es": ("Pregunta", "Respuesta", "Sí", "Quizás", "No"),
    "fr": ("Question", "Réponse", "Oui", "Peut-être", "Non"),
    "hi": ("प्रश्न", "उत्तर", "हाँ", "शायद", "नहीं"),
    "ru": ("Вопрос", "Ответ", "Да", "Возможно", "Нет"),
    "sw": ("Swali", "Jibu", "Ndiyo", "Labda", "Hapana"),
    "th": ("คำถาม", "คำตอบ", "ใช่", "อาจจะ", "ไม่ใช่"),
    "tr": ("Soru", "Cevap", "Evet", "Belki", "Hayır"),
    "ur": ("سوال", "جواب", "ہاں", "شاید", "نہیں"),
    "vi": ("Câu hỏi", "Trả lời", "Có", "Có thể", "Không"),
    "zh": ("问题", "答案", "是", "也许", "否"),
}


def nli_template(lang: str) -> ClassificationTemplate:
    """The default NLI template in ``lang`` (English words for languages without a translation)."""
    question, answer, yes, maybe, no = _NLI_WORDS.get(lang, _NLI_WORDS["en"])
    return ClassificationTemplate(
        prompt=f"{{premise}}\n{question}: {{hypothesis}}\n{answer}:",
        verbalizers={"entailment": f" {yes}", "neutral": f" {maybe}", "contradiction": f" {no}"},
    )


def _default(task: Task, language: str) -> Template:
    if isinstance(task.extra.get("template"), ClassificationTemplate | GenerationTemplate):
        return task.extra["template"]  # a task that brings its own (custom: built from data.custom)
    if task.name in ("xnli", "mnli"):
        return nli_template(language)
    if task.name == "sst2":
        return ClassificationTemplate(
            prompt="{sentence}\nSentiment:", verbalizers={"negative": " negative", "positive": " positive"}
        )
    if task.name == "qnli":
        return ClassificationTemplate(
            prompt="Question: {question}\nSentence: {sentence}\n"
            "Does the sentence answer the question?\nAnswer:",
            verbalizers={"entailment": " Yes", "not_entailment": " No"},
        )
    if task.name == "qqp":
        return ClassificationTemplate(
            prompt="Question 1: {question1}\nQuestion 2: {question2}\nDo both ask the same thing?\nAnswer:",
            verbalizers={"duplicate": " Yes", "not_duplicate": " No"},
        )
    if task.kind == "translation":
        return GenerationTemplate(
            instruction="Translate from {source_name} to {target_name}.\n\n",
            prompt="{source_name}: {source}\n{target_name}:",
            target=" {target}",
            stop_strings=["\n"],
        )
    if task.name == "gsm8k":
        return GenerationTemplate(
            prompt="Question: {question}\nAnswer:", target=" {answer}", stop_strings=["\n\n", "Question:"]
        )
    if task.name == "humaneval":
        return GenerationTemplate(
            prompt="{prompt}",
            target="{canonical_solution}",
            stop_strings=["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"],
        )
    if task.name == "mtbench":
        return GenerationTemplate(
            prompt="User: {turn}\nAssistant:", target=" {answer}", stop_strings=["\nUser:"]
        )
    raise DataError(f"task {task.name!r} has no default prompt template; give one in the config's templates")


def template_for(task: Task, language: str, overrides: Mapping[str, Template] | None = None) -> Template:
    """The template for ``language``: ``overrides[language]``, else ``overrides['*']``, else the default.

    Raises when a classification template does not verbalise exactly the task's labels.
    """
    overrides = overrides or {}
    template = overrides.get(language) or overrides.get("*") or _default(task, language)
    if task.kind == "classification":
        if not isinstance(template, ClassificationTemplate):
            raise DataError(
                f"task {task.name!r} ({language}) needs a classification template with verbalizers"
            )
        if set(template.verbalizers) != set(task.labels):
            raise DataError(
                f"template for {task.name!r} ({language}) verbalises {sorted(template.verbalizers)}, "
                f"but the task's labels are {sorted(task.labels)}"
            )
    elif not isinstance(template, GenerationTemplate):
        raise DataError(f"task {task.name!r} ({language}) needs a generation template (prompt, target)")
    return template


def _fields(example: Example) -> dict:
    fields = dict(example)
    if "src_lang" in example:
        fields["source_name"] = LANGUAGE_NAMES.get(example["src_lang"], example["src_lang"])
        fields["target_name"] = LANGUAGE_NAMES.get(example["tgt_lang"], example["tgt_lang"])
    return fields


def _format(text: str, example: Example) -> str:
    try:
        return text.format_map(_fields(example))
    except (KeyError, IndexError) as exc:
        raise DataError(
            f"template {text!r} uses {exc} which example {example.get('id')} does not have"
        ) from None


def render_target(task: Task, template: Template, example: Example) -> str:
    """The gold continuation of ``example``: its label's verbaliser or its formatted gold output."""
    if isinstance(template, ClassificationTemplate):
        return template.verbalizers[example["label"]]
    return _format(template.target, {**example, "target": task.reference(example)})


def render_demonstration(task: Task, template: Template, example: Example) -> str:
    """A solved example: prompt followed by its gold verbaliser or gold output."""
    return _format(template.prompt, example) + render_target(task, template, example)


def render_prompt(task: Task, template: Template, example: Example, shots: Sequence[Example] = ()) -> str:
    """Instruction, then the k shots as solved demonstrations, then the query prompt (unsolved)."""
    parts = [render_demonstration(task, template, shot) for shot in shots]
    parts.append(_format(template.prompt, example))
    return _format(template.instruction, example) + template.separator.join(parts)


def verbalizers_in_label_order(task: Task, template: ClassificationTemplate) -> list[str]:
    """Continuations aligned with ``task.labels`` (index i = class id i)."""
    return [template.verbalizers[label] for label in task.labels]


def render_conversation(template: GenerationTemplate, example: Example, answers: Sequence[str]) -> str:
    """Multi-turn prompt (MT-Bench): earlier turns with the model's own answers, then the next turn."""
    parts = []
    for index, turn in enumerate(example["turns"][: len(answers) + 1]):
        text = _format(template.prompt, {**example, "turn": turn})
        if index < len(answers):
            text += _format(template.target, {**example, "answer": answers[index]})
        parts.append(text)
    return _format(template.instruction, example) + "\n".join(parts)


def uses_chat_template(tokenizer: Any, mode: ChatTemplateMode) -> bool:
    """Whether prompts for ``tokenizer`` go through its chat template: ``auto`` and the tokenizer has one."""
    return mode == "auto" and bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """``messages`` through the tokenizer's chat template, ending with the assistant's generation prompt.

    A BOS the template writes as text is removed: hyft's encoders add the tokenizer's leading special
    tokens themselves (:func:`hyft.tasks.causal_lm.leading_special_ids`), and it must not come twice.
    """
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    bos = getattr(tokenizer, "bos_token", None)
    return text[len(bos) :] if bos and text.startswith(bos) else text


def chat_prompt(tokenizer: Any, prompt: str, mode: ChatTemplateMode) -> str:
    """``prompt`` as the model reads it: one user message in the chat template (see
    :func:`uses_chat_template`), else unchanged."""
    return (
        render_chat(tokenizer, [{"role": "user", "content": prompt}])
        if uses_chat_template(tokenizer, mode)
        else prompt
    )


def chat_target(tokenizer: Any, target: str, mode: ChatTemplateMode) -> str:
    """A verbaliser or gold output after :func:`chat_prompt`:
    the reply without leading whitespace in chat mode."""
    return target.lstrip() if uses_chat_template(tokenizer, mode) else target


def chat_conversation(
    tokenizer: Any,
    template: GenerationTemplate,
    example: Example,
    answers: Sequence[str],
    mode: ChatTemplateMode,
) -> str:
    """Multi-turn prompt (MT-Bench): :func:`render_conversation`, or in chat mode the turns as user messages
    and the model's answers as assistant messages (the instruction before the first turn)."""
    if not uses_chat_template(tokenizer, mode):
        return render_conversation(template, example, answers)
    messages = []
    for index, turn in enumerate(example["turns"][: len(answers) + 1]):
        prefix = _format(template.instruction, example) if index == 0 else ""
        messages.append({"role": "user", "content": prefix + turn})
        if index < len(answers):
            messages.append({"role": "assistant", "content": answers[index]})
    return render_chat(tokenizer, messages)
