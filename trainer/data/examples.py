"""Records turned into tokenized examples for a causal language model.

Three layouts, chosen by the Dataset's ``columns`` or, when absent, by the first readable record
(messages, then prompt and completion, then text):

- text: every token is learned;
- prompt and completion: the loss is on the completion only;
- messages (a list of {role, content}, each role one of CHAT_ROLES): rendered with the tokenizer's
  chat template, the loss is on the assistant turns only.

A record that does not fit its layout is a bad row; bad rows are counted and the data is refused
only when their share passes ``config.training.maxBadRows``, naming the first one.
"""

from __future__ import annotations

import random
import struct
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol, TypeVar

from tensorone.api.v1alpha1.dataset import ColumnMapping
from tensorone.errors import ConfigurationError, DataError
from trainer.data.records import Row

E = TypeVar("E")
IGNORE_INDEX = -100  # label of a token the loss skips (the convention of torch's cross_entropy)
# The roles a conversation's messages may have: the vocabulary chat templates are written for. A
# row with another role is bad, since a template would drop it or render it as something else.
CHAT_ROLES = ("system", "user", "assistant", "tool")


class Layout(StrEnum):
    text = "text"
    prompt_completion = "prompt-completion"
    messages = "messages"


@dataclass(frozen=True)
class Columns:
    """Which record keys hold what, for the chosen layout."""

    layout: Layout
    text: str = "text"
    prompt: str = "prompt"
    completion: str = "completion"
    messages: str = "messages"


@dataclass(frozen=True)
class Example:
    """One tokenized example: labels align with input_ids, IGNORE_INDEX where no loss is taken."""

    input_ids: list[int]
    labels: list[int]

    @cached_property
    def num_targets(self) -> int:
        """Tokens the loss is computed on (each is predicted from the one before it)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)

    @cached_property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    def content(self) -> bytes:
        """The tokens and the labels, each prefixed by its length."""
        return b"".join(
            struct.pack("<q", len(values)) + array("q", values).tobytes() for values in (self.input_ids, self.labels)
        )


@dataclass
class BadRows:
    """The rows that could not be used, and why (the first few kept for messages)."""

    count: int = 0
    total: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, row: Row, reason: str) -> None:
        self.add_at(row.where(), reason)

    def add_at(self, where: str, reason: str) -> None:
        """A bad row (or file) named by where it is."""
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{where}: {reason}")

    def refuse_if_too_many(self, max_bad_rows: float, *, usable: int, what: str = "rows") -> None:
        """A DataError when the bad share passes ``config.training.maxBadRows`` or nothing is usable."""
        if self.total == 0:
            raise DataError(f"the dataset has no {what}", field="dataset.source")
        if self.count / self.total > max_bad_rows or not usable:
            raise DataError(
                f"{self.count} of {self.total} {what} are bad ({self.count / self.total:.1%}), more than "
                f"config.training.maxBadRows={max_bad_rows:g} allows; first: " + "; ".join(self.first),
                field="dataset",
            )


@dataclass(frozen=True)
class TextData:
    """The examples of a run: the training set, the held-out evaluation set, and the bad rows."""

    train: list[Example]
    eval: list[Example]
    columns: Columns
    bad_rows: BadRows


class Tokenizer(Protocol):
    """What the layouts need of a Hugging Face tokenizer."""

    bos_token_id: int | None
    eos_token_id: int | None
    is_fast: bool

    def __call__(self, text: str, **kwargs: Any) -> Any: ...

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def choose_columns(mapping: ColumnMapping | None, first_record: dict[str, Any] | None) -> Columns:
    """The layout from the column mapping, or detected from the first readable record."""
    if mapping is not None:
        if mapping.messages:
            return Columns(Layout.messages, messages=mapping.messages)
        if mapping.prompt and mapping.completion:
            return Columns(Layout.prompt_completion, prompt=mapping.prompt, completion=mapping.completion)
        if mapping.text:
            return Columns(Layout.text, text=mapping.text)
    if first_record is None:
        raise DataError("no row could be read, so the layout cannot be detected", field="dataset")
    if "messages" in first_record:
        return Columns(Layout.messages)
    if "prompt" in first_record and "completion" in first_record:
        return Columns(Layout.prompt_completion)
    if "text" in first_record:
        return Columns(Layout.text)
    raise ConfigurationError(
        f"cannot detect the layout from the first record's keys {sorted(first_record)}; set columns.text, "
        "columns.prompt and columns.completion, or columns.messages",
        field="dataset.columns",
    )


def build_examples(
    rows: Iterable[Row],
    tokenizer: Tokenizer,
    *,
    mapping: ColumnMapping | None,
    max_seq_length: int,
    max_bad_rows: float,
    eval_split: float,
    seed: int,
) -> TextData:
    """Tokenize every row, count the bad ones, and hold out the evaluation split."""
    rows = list(rows)
    first_record = next((row.record for row in rows if row.record is not None), None)
    columns = choose_columns(mapping, first_record)
    if columns.layout == Layout.messages and not getattr(tokenizer, "chat_template", None):
        raise ConfigurationError(
            "the tokenizer has no chat template, which chat messages need; use a chat model or the "
            "prompt/completion layout",
            field="config.baseModel",
        )
    if columns.layout == Layout.messages and not tokenizer.is_fast:
        raise ConfigurationError(
            "chat messages need a fast tokenizer (offsets locate the assistant turns)", field="config.baseModel"
        )
    examples: list[Example] = []
    bad = BadRows(total=len(rows))
    for row in rows:
        if row.record is None:
            bad.add(row, row.error or "unreadable")
            continue
        try:
            example = _tokenize(row.record, columns, tokenizer, max_seq_length)
        except BadRecord as error:
            bad.add(row, str(error))
            continue
        examples.append(example)

    bad.refuse_if_too_many(max_bad_rows, usable=len(examples))
    train, held_out = split_eval(examples, eval_split, seed)
    return TextData(train=train, eval=held_out, columns=columns, bad_rows=bad)


def split_eval(examples: Sequence[E], eval_split: float, seed: int) -> tuple[list[E], list[E]]:
    """Hold out a seeded random share of the examples; at least one each side when evaluating."""
    if eval_split <= 0.0:
        return list(examples), []
    if len(examples) < 2:
        raise DataError(
            f"config.training.evalSplit={eval_split:g} needs at least 2 usable rows, the dataset has {len(examples)}",
            field="config.training.evalSplit",
        )
    order = list(range(len(examples)))
    random.Random(f"tensorone-eval:{seed}").shuffle(order)
    count = min(max(1, int(len(examples) * eval_split)), len(examples) - 1)
    held = set(order[:count])
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


class BadRecord(ValueError):
    """A record that does not fit its layout (counted as a bad row, not raised to the user)."""


def _tokenize(record: dict[str, Any], columns: Columns, tokenizer: Tokenizer, max_seq_length: int) -> Example:
    if columns.layout == Layout.text:
        text = _string(record, columns.text)
        ids = _with_bos_eos(_ids(tokenizer, text), tokenizer)
        example = Example(ids, list(ids))
    elif columns.layout == Layout.prompt_completion:
        prompt = _string(record, columns.prompt, allow_empty=True)
        completion = _string(record, columns.completion)
        prompt_ids = _ids(tokenizer, prompt)
        completion_ids = _ids(tokenizer, completion)
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        ids = bos + prompt_ids + completion_ids + eos
        labels = [IGNORE_INDEX] * (len(bos) + len(prompt_ids)) + completion_ids + eos
        example = Example(ids, labels)
    else:
        example = _tokenize_chat(record, columns.messages, tokenizer)
    example = Example(example.input_ids[:max_seq_length], example.labels[:max_seq_length])
    if example.num_targets == 0:
        raise BadRecord(f"no token left to learn from after truncation to maxSeqLength={max_seq_length}")
    return example


def _tokenize_chat(record: dict[str, Any], key: str, tokenizer: Tokenizer) -> Example:
    messages = record.get(key)
    if not isinstance(messages, list) or not messages:
        raise BadRecord(f"column {key!r} must be a non-empty list of {{role, content}} objects")
    for message in messages:
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise BadRecord(f"every message in {key!r} needs a string role and a string content")
        if message["role"] not in CHAT_ROLES:
            raise BadRecord(f"role {message['role']!r} is not a chat role; allowed: {', '.join(CHAT_ROLES)}")
    full, spans = render_with_assistant_spans(tokenizer, messages)
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoded["input_ids"])
    labels = [
        token if any(start < end and a <= start < b for a, b in spans) else IGNORE_INDEX
        for token, (start, end) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    return Example(ids, labels)


class ChatTemplate(Protocol):
    """What renders a conversation: a tokenizer, or a multimodal processor, with a chat template."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def render_with_assistant_spans(
    template: ChatTemplate, messages: list[dict[str, Any]]
) -> tuple[str, list[tuple[int, int]]]:
    """The conversation rendered by its chat template, and the characters of each assistant turn.

    A turn's characters are what the conversation adds to the rendering of everything before it
    plus the generation prompt, so any template that renders conversations prefix by prefix works.
    A conversation without an assistant turn, or a template that fails or does not render prefix
    by prefix, is a ``BadRecord``.
    """
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("the conversation has no assistant turn to learn from")
    try:
        full = _render(template, messages, add_generation_prompt=False)
        spans: list[tuple[int, int]] = []
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = _render(template, messages[:index], add_generation_prompt=True) if index else ""
            through = _render(template, messages[: index + 1], add_generation_prompt=False)
            if not full.startswith(through) or not through.startswith(before):
                raise BadRecord("the chat template does not render conversations prefix by prefix")
            spans.append((len(before), len(through)))
    except BadRecord:
        raise
    except Exception as error:  # jinja raises its own error types from the template
        raise BadRecord(f"the chat template failed: {error}") from error
    return full, spans


def _render(template: ChatTemplate, messages: list[dict[str, Any]], *, add_generation_prompt: bool) -> str:
    rendered = template.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    if not isinstance(rendered, str):
        raise BadRecord("the chat template did not render to text")
    return rendered


def _string(record: dict[str, Any], key: str, *, allow_empty: bool = False) -> str:
    if key not in record:
        raise BadRecord(f"missing column {key!r} (columns: {', '.join(sorted(record))})")
    value = record[key]
    if not isinstance(value, str):
        raise BadRecord(f"column {key!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise BadRecord(f"column {key!r} is empty")
    return value


def _ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _with_bos_eos(ids: list[int], tokenizer: Tokenizer) -> list[int]:
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return bos + ids + eos
