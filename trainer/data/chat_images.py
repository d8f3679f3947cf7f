"""Chat conversations with images, as examples for a vision-language model, and their batches.

A record holds a conversation (the ``messages`` column: a list of ``{role, content}``) whose
content is a string or a list of parts in the Hugging Face or OpenAI style:

- ``{"type": "text", "text": "..."}``
- ``{"type": "image", "image": REF}`` (or ``"path"``/``"url"`` instead of ``"image"``), or a bare
  ``{"type": "image"}`` filled from the image column;
- ``{"type": "image_url", "image_url": {"url": REF}}``.

An image column (``columns.image``) holds one reference or a list; its images fill the bare image
parts in order, or, when the conversation has no image part, go before the text of the first user
turn. A reference is a file on the Dataset's claim (relative to the data file's folder, or absolute
from the claim's root; a path that resolves outside the claim is refused), a ``data:`` URI, a
``{"bytes": ...}`` object or an image object (what a hub dataset's image column gives). Remote
URLs are not fetched.

The conversation is rendered with the processor's own chat template and tokenized by the
processor, which replaces each image placeholder with the tokens of its image. The loss is on the
assistant turns only: their characters are found by rendering prefixes
(``trainer.data.examples.render_with_assistant_spans``), and the processor's record of where it
expanded placeholders (``return_text_replacement_offsets``) maps every token back to the rendered
text; image tokens and prompts are never learned.

Images are not kept in memory: an example keeps each image's file (or bytes) and digest, and a
batch decodes and processes them again. A file that changed since the data was read fails the run
(``DataError``) rather than silently training on other pixels, so a resume stays exact.

A row is bad (counted, the first few named, never a crash) when it is not a conversation of the
allowed roles and parts, has no assistant turn, names an image that is missing, outside the claim,
remote or unreadable, when the template or the processor refuses it, or when truncation to
``maxSeqLength`` would cut into its images or leave nothing to learn.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tensorone.api.v1alpha1.dataset import ColumnMapping
from tensorone.errors import ConfigurationError, DataError
from trainer.data.examples import (
    CHAT_ROLES,
    IGNORE_INDEX,
    BadRecord,
    BadRows,
    Example,
    render_with_assistant_spans,
    split_eval,
)
from trainer.data.records import Row

# The message part types a conversation may hold.
PART_TYPES = ("text", "image", "image_url")
# Keys of an image part that may hold its reference, in the order they are looked at.
IMAGE_REFERENCE_KEYS = ("image", "path", "url")


@dataclass(frozen=True)
class ImageFile:
    """One image of an example: where it is (a file, or its bytes) and the digest of its bytes."""

    name: str  # how the row refers to it, for messages
    sha256: str
    path: Path | None = None
    data: bytes | None = None

    def read(self) -> bytes:
        """The image's bytes, checked against the digest taken when the data was read."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        try:
            data = self.path.read_bytes()
        except OSError as error:
            raise DataError(
                f"image {self.name} ({self.path}) cannot be read any more: {error}", field="dataset"
            ) from None
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise DataError(
                f"image {self.name} ({self.path}) changed since the data was read; the run would train on other "
                "pixels than its checkpoints record. Restore it, or start over with resumeFrom: none",
                field="dataset",
            )
        return data

    def open(self) -> Any:
        """The decoded image, in RGB."""
        return decode_image(self.read(), self.name)


def decode_image(data: bytes, name: str) -> Any:
    """Decode image bytes to an RGB Pillow image; an undecodable image is a ``BadRecord``."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as error:
        raise BadRecord(f"image {name} is not a readable image ({error})") from None


@dataclass(frozen=True)
class ChatImageExample(Example):
    """A tokenized conversation with its images: labels align with input_ids (IGNORE_INDEX where no
    loss is taken; image tokens count in num_tokens), and the images in the order of their placeholders."""

    images: tuple[ImageFile, ...]

    def content(self) -> bytes:
        """The tokens and the labels as an Example's, then the images' digests, length-prefixed."""
        digests = "".join(image.sha256 for image in self.images).encode()
        return super().content() + struct.pack("<q", len(digests)) + digests


@dataclass(frozen=True)
class ChatImageData:
    """The examples of a multimodal run, the evaluation split held out, and the bad rows."""

    train: list[ChatImageExample]
    eval: list[ChatImageExample]
    bad_rows: BadRows
    images: int  # images in the usable examples


def build_chat_image_examples(
    rows: Iterable[Row],
    processor: Any,
    *,
    mapping: ColumnMapping | None,
    claim: Path | None,
    max_seq_length: int,
    max_bad_rows: float,
    eval_split: float,
    seed: int,
) -> ChatImageData:
    """Render and tokenize every conversation with ``processor``, count the bad rows, and hold out
    the evaluation split. ``claim`` is where the Dataset's claim is mounted (a pvc source), else
    None: image files are read only from a claim."""
    messages_key = mapping.messages if mapping is not None and mapping.messages else "messages"
    image_key = mapping.image if mapping is not None else None
    rows = list(rows)
    examples: list[ChatImageExample] = []
    bad = BadRows(total=len(rows))
    for row in rows:
        if row.record is None:
            bad.add(row, row.error or "unreadable")
            continue
        try:
            example = _example(
                row,
                processor,
                messages_key=messages_key,
                image_key=image_key,
                claim=claim,
                max_seq_length=max_seq_length,
            )
        except BadRecord as error:
            bad.add(row, str(error))
            continue
        examples.append(example)
    if bad.total == 0:
        raise DataError("the dataset has no rows", field="dataset.source")
    if bad.count / bad.total > max_bad_rows or not examples:
        raise DataError(
            f"{bad.count} of {bad.total} rows are bad ({bad.count / bad.total:.1%}), more than "
            f"config.training.maxBadRows={max_bad_rows:g} allows; first: " + "; ".join(bad.first),
            field="dataset",
        )
    train, held_out = split_eval(examples, eval_split, seed)
    return ChatImageData(
        train=train, eval=held_out, bad_rows=bad, images=sum(len(example.images) for example in examples)
    )


def _example(
    row: Row, processor: Any, *, messages_key: str, image_key: str | None, claim: Path | None, max_seq_length: int
) -> ChatImageExample:
    assert row.record is not None
    messages, references = _conversation(row.record, messages_key)
    if image_key is not None:
        references = _fill_from_column(messages, references, row.record, image_key)
    images = tuple(_image_file(reference, row, claim) for reference in references)
    full, spans = render_with_assistant_spans(processor, messages)
    decoded = [image.open() for image in images]
    try:
        encoded = processor(
            text=[full],
            images=decoded or None,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_text_replacement_offsets=True,
        )
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise BadRecord(f"the processor refused the conversation: {error}") from None
    if "text_replacement_offsets" not in encoded or "offset_mapping" not in encoded:
        raise ConfigurationError(
            f"the processor {type(processor).__name__} does not report where it expands image placeholders "
            "(transformers' return_text_replacement_offsets) or token offsets (a fast tokenizer), which locate "
            "the assistant turns",
            field="config.baseModel",
        )
    ids: list[int] = list(encoded["input_ids"][0])
    labels, last_image_token = _labels(ids, encoded["offset_mapping"][0], encoded["text_replacement_offsets"][0], spans)
    if len(ids) > max_seq_length:
        if last_image_token is not None and last_image_token >= max_seq_length:
            raise BadRecord(
                f"its image tokens run to position {last_image_token + 1}, past maxSeqLength={max_seq_length}; "
                "raise maxSeqLength or use fewer or smaller images"
            )
        ids, labels = ids[:max_seq_length], labels[:max_seq_length]
    example = ChatImageExample(ids, labels, images)
    if example.num_targets == 0:
        raise BadRecord(f"no token left to learn from after truncation to maxSeqLength={max_seq_length}")
    return example


def _labels(
    ids: list[int],
    offsets: Sequence[tuple[int, int]],
    replacements: Sequence[dict[str, Any]],
    spans: list[tuple[int, int]],
) -> tuple[list[int], int | None]:
    """Each token's label (itself inside an assistant turn, else IGNORE_INDEX) and the index of the
    last token the processor put in for an image (None without images).

    Offsets are in the processor's expanded text; a token inside an expansion is an image token,
    any other maps back to the rendered text by the characters the expansions before it added.
    """
    expansions = sorted((tuple(r["new_span"]), tuple(r["span"])) for r in replacements)
    labels: list[int] = []
    last_image_token: int | None = None
    for index, (token, (start, end)) in enumerate(zip(ids, offsets, strict=True)):
        rendered = _rendered_position(start, expansions)
        if rendered is None:
            last_image_token = index
            labels.append(IGNORE_INDEX)
        elif start < end and any(a <= rendered < b for a, b in spans):
            labels.append(token)
        else:
            labels.append(IGNORE_INDEX)
    return labels, last_image_token


def _rendered_position(start: int, expansions: Sequence[tuple[tuple[int, int], tuple[int, int]]]) -> int | None:
    """Where a character of the expanded text was in the rendered text; None inside an expansion."""
    added = 0
    for (new_start, new_end), (old_start, old_end) in expansions:
        if start >= new_end:
            added += (new_end - new_start) - (old_end - old_start)
        elif start >= new_start:
            return None
        else:
            break
    return start - added


def _conversation(record: dict[str, Any], key: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """The messages in the processor's form (content as a list of text and image parts), and the
    image references in the order of the image parts (None for a bare part)."""
    messages = record.get(key)
    if not isinstance(messages, list) or not messages:
        raise BadRecord(f"column {key!r} must be a non-empty list of {{role, content}} objects")
    normalized: list[dict[str, Any]] = []
    references: list[Any] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRecord(f"every message in {key!r} needs a string role and a content")
        if message["role"] not in CHAT_ROLES:
            raise BadRecord(f"role {message['role']!r} is not a chat role; allowed: {', '.join(CHAT_ROLES)}")
        content = message.get("content")
        if isinstance(content, str):
            parts: list[dict[str, Any]] = [{"type": "text", "text": content}]
        elif isinstance(content, list) and content:
            parts = []
            for part in content:
                normalized_part, reference, is_image = _part(part)
                parts.append(normalized_part)
                if is_image:
                    references.append(reference)
        else:
            raise BadRecord("a message's content must be a string or a non-empty list of parts")
        normalized.append({"role": message["role"], "content": parts})
    return normalized, references


def _part(part: Any) -> tuple[dict[str, Any], Any, bool]:
    """A message part in the processor's form, its image reference, and whether it is an image."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise BadRecord("a text part needs a string text")
        return {"type": "text", "text": part["text"]}, None, False
    if kind == "image":
        reference = next((part[k] for k in IMAGE_REFERENCE_KEYS if part.get(k) is not None), None)
        return {"type": "image"}, reference, True
    if kind == "image_url":
        url = part.get("image_url")
        reference = url.get("url") if isinstance(url, dict) else url
        if reference is None:
            raise BadRecord("an image_url part needs image_url.url")
        return {"type": "image"}, reference, True
    raise BadRecord(f"message part type {kind!r} is not allowed; allowed: {', '.join(PART_TYPES)}")


def _fill_from_column(
    messages: list[dict[str, Any]], references: list[Any], record: dict[str, Any], key: str
) -> list[Any]:
    """The references with the image column's images in the bare image parts, or, when the
    conversation has no image part, before the text of its first user turn."""
    if key not in record:
        raise BadRecord(f"missing column {key!r} (columns: {', '.join(sorted(record))})")
    value = record[key]
    # An empty cell (null, or "" in a CSV file) is a conversation without images.
    column = [image for image in (value if isinstance(value, list) else [value]) if image is not None and image != ""]
    bare = [index for index, reference in enumerate(references) if reference is None]
    if references and len(bare) != len(column):
        raise BadRecord(
            f"column {key!r} holds {len(column)} images for {len(bare)} image parts without a reference in the messages"
        )
    if not column:
        return references
    if references:
        filled = list(references)
        for index, image in zip(bare, column, strict=True):
            filled[index] = image
        return filled
    first_user = next((m for m in messages if m["role"] == "user"), None)
    if first_user is None:
        raise BadRecord(f"column {key!r} has images but the conversation has no user turn to put them in")
    first_user["content"] = [{"type": "image"} for _ in column] + first_user["content"]
    return column


def _image_file(reference: Any, row: Row, claim: Path | None) -> ImageFile:
    """Where an image reference points, checked readable now (a bad row otherwise)."""
    if reference is None:
        raise BadRecord("an image part has no image (set image, path or url, or the image column)")
    if isinstance(reference, dict) and isinstance(reference.get("bytes"), bytes):
        return _in_memory(reference["bytes"], str(reference.get("path") or "bytes"))
    if isinstance(reference, dict) and isinstance(reference.get("path"), str):
        reference = reference["path"]
    if not isinstance(reference, str):
        encoded = _encoded_image_object(reference)
        if encoded is None:
            raise BadRecord(f"an image must be a path, a data: URI or image bytes, got {type(reference).__name__}")
        return _in_memory(encoded, "image object")
    if reference.startswith("data:"):
        return _in_memory(_data_uri(reference), "data: URI")
    if reference.startswith(("http://", "https://", "s3://", "gs://")):
        raise BadRecord(
            f"image {reference} is remote; images are read from the Dataset's claim or inline as data: URIs"
        )
    return _claim_file(reference.removeprefix("file://"), row, claim)


def _in_memory(data: bytes, name: str) -> ImageFile:
    decode_image(data, name)
    return ImageFile(name=name, sha256=hashlib.sha256(data).hexdigest(), data=data)


def _data_uri(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    if not header.endswith(";base64"):
        raise BadRecord("a data: URI image must be base64 (data:image/png;base64,...)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRecord("the data: URI is not valid base64") from None


def _encoded_image_object(image: Any) -> bytes | None:
    """A Pillow image (a hub dataset's decoded image column) as PNG bytes, or None for anything else."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _claim_file(reference: str, row: Row, claim: Path | None) -> ImageFile:
    if claim is None:
        raise BadRecord(
            f"image {reference} is a file, and files are read from the Dataset's claim (source.pvc); with this "
            "source give images as data: URIs"
        )
    mount = claim.resolve()
    base = mount if reference.startswith("/") else Path(row.location).parent
    path = (base / reference.lstrip("/")).resolve()
    if not path.is_relative_to(mount):
        raise BadRecord(f"image {reference} resolves to {path}, outside the claim")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadRecord(f"image {reference} not found ({path})") from None
    except OSError as error:
        raise BadRecord(f"image {reference} cannot be read ({error.strerror})") from None
    decode_image(data, reference)
    return ImageFile(name=reference, sha256=hashlib.sha256(data).hexdigest(), path=path)


@dataclass(frozen=True)
class ChatImageBatch:
    """A micro-batch of conversations, right-padded, with the pixels of their images.

    ``supervised_positions`` index the flattened ``[batch * length]`` positions whose next token is
    learned and ``targets`` are those tokens, computed at collate time so the loss needs no device
    synchronisation to find them.
    """

    input_ids: torch.Tensor  # (batch, length)
    attention_mask: torch.Tensor  # (batch, length), 1 on real tokens
    supervised_positions: torch.Tensor  # (targets,)
    targets: torch.Tensor  # (targets,)
    image_inputs: dict[str, torch.Tensor]  # what the image processor made: pixel_values, ...

    def to(self, device: torch.device) -> ChatImageBatch:
        """The same batch with every tensor on ``device``."""
        return ChatImageBatch(
            input_ids=self.input_ids.to(device, non_blocking=True),
            attention_mask=self.attention_mask.to(device, non_blocking=True),
            supervised_positions=self.supervised_positions.to(device, non_blocking=True),
            targets=self.targets.to(device, non_blocking=True),
            image_inputs={k: v.to(device, non_blocking=True) for k, v in self.image_inputs.items()},
        )


def collate_chat_images(examples: Sequence[ChatImageExample], processor: Any, pad_token_id: int) -> ChatImageBatch:
    """Right-pad the examples to the longest one and process their images, in placeholder order."""
    length = max(e.num_tokens for e in examples)
    input_ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    shifted = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, example in enumerate(examples):
        n = example.num_tokens
        input_ids[row, :n] = torch.tensor(example.input_ids, dtype=torch.long)
        # The prediction made at token t is of token t + 1 of the same example.
        shifted[row, : n - 1] = torch.tensor(example.labels[1:], dtype=torch.long)
        attention_mask[row, :n] = 1
    flat = shifted.flatten()
    positions = torch.nonzero(flat != IGNORE_INDEX).flatten()
    images = [image for example in examples for image in example.images]
    image_inputs: dict[str, torch.Tensor] = {}
    if images:
        processed = processor.image_processor(images=[image.open() for image in images], return_tensors="pt")
        image_inputs = {k: v for k, v in processed.items() if isinstance(v, torch.Tensor)}
    return ChatImageBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        supervised_positions=positions,
        targets=flat.index_select(0, positions),
        image_inputs=image_inputs,
    )
