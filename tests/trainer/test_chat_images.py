"""Chat with images: the loss mask on assistant turns (checked token by token), every way to give an
image, the bad rows counted and named, and the batches the objective takes."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from tensorone.api.v1alpha1.dataset import ColumnMapping, DatasetSpec
from tensorone.errors import DataError
from tests.trainer.conftest import TINY_VLM
from trainer.data.chat_images import ChatImageData, build_chat_image_examples, collate_chat_images
from trainer.data.examples import IGNORE_INDEX
from trainer.data.records import Row, read_rows

IMAGE_TOKENS = 16  # the tiny LLaVA: a 32x32 image in 8x8 patches


@pytest.fixture(scope="module")
def processor() -> Any:
    return AutoProcessor.from_pretrained(TINY_VLM, backend="pil")


def png(colour: tuple[int, int, int], size: tuple[int, int] = (20, 12)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def claim(tmp_path: Path) -> Path:
    """A claim with a data folder holding two pictures."""
    (tmp_path / "data" / "pictures").mkdir(parents=True)
    (tmp_path / "data" / "pictures" / "red.png").write_bytes(png((255, 0, 0)))
    (tmp_path / "data" / "pictures" / "blue.png").write_bytes(png((0, 0, 255), (40, 40)))
    return tmp_path


def rows_of(claim: Path, records: list[dict[str, Any]]) -> list[Row]:
    """The records as read from a JSON Lines file in the claim's data folder."""
    path = claim / "data" / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    spec = DatasetSpec.model_validate({"format": "jsonl", "source": {"pvc": {"claimName": "c", "path": "/data"}}})
    return list(read_rows(spec, mount_path=claim, cache_dir=None))


def build(
    processor: Any, claim: Path | None, rows: list[Row], *, image_column: str | None = None, **options: Any
) -> ChatImageData:
    settings: dict[str, Any] = {"max_seq_length": 256, "max_bad_rows": 0.5, "eval_split": 0.0, "seed": 1} | options
    mapping = ColumnMapping(messages="messages", image=image_column)
    return build_chat_image_examples(rows, processor, mapping=mapping, claim=claim, **settings)


def conversation(*images: dict[str, Any]) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [*images, {"type": "text", "text": "What colour is it?"}]},
            {"role": "assistant", "content": "It is red."},
            {"role": "user", "content": "Sure?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]},
        ]
    }


def expected_labels(ids: list[int], processor: Any) -> list[int]:
    """The template's assistant turns read off the tokens: after each <|assistant|> marker, every
    token up to and including its <|end|>."""
    tokenizer = processor.tokenizer
    start, end = tokenizer.convert_tokens_to_ids(["<|assistant|>", "<|end|>"])
    labels, inside = [], False
    for token in ids:
        labels.append(token if inside else IGNORE_INDEX)
        if token == start:
            inside = True
        elif token == end:
            inside = False
    return labels


def test_the_loss_is_on_the_assistant_turns_only_never_on_image_tokens_or_prompts(processor: Any, claim: Path) -> None:
    data = build(processor, claim, rows_of(claim, [conversation({"type": "image", "image": "pictures/red.png"})]))
    (example,) = data.train
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert example.input_ids.count(image_token) == IMAGE_TOKENS
    assert example.labels == expected_labels(example.input_ids, processor)
    learned = [token for token in example.labels if token != IGNORE_INDEX]
    assert processor.tokenizer.decode(learned) == "It is red.<|end|>Yes.<|end|>"
    # The sequence is exactly what the processor makes of the rendered conversation and its image.
    rendered = processor.apply_chat_template(conversation({"type": "image"})["messages"], tokenize=False)
    direct = processor(text=[rendered], images=[Image.open(claim / "data/pictures/red.png")], add_special_tokens=False)
    assert example.input_ids == list(direct["input_ids"][0])
    assert example.num_targets == len(learned) and example.images[0].path == claim / "data/pictures/red.png"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image", "image": "pictures/red.png"},
        {"type": "image", "path": "/data/pictures/red.png"},
        {"type": "image_url", "image_url": {"url": "file://pictures/red.png"}},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(png((255, 0, 0))).decode()},
        },
    ],
    ids=["relative", "absolute-on-the-claim", "openai-file", "data-uri"],
)
def test_every_way_to_refer_to_an_image_gives_the_same_example(
    processor: Any, claim: Path, part: dict[str, Any]
) -> None:
    reference = build(processor, claim, rows_of(claim, [conversation({"type": "image", "image": "pictures/red.png"})]))
    data = build(processor, claim, rows_of(claim, [conversation(part)]))
    assert data.bad_rows.count == 0, data.bad_rows.first
    (got,), (want,) = data.train, reference.train
    assert (got.input_ids, got.labels, got.images[0].sha256) == (want.input_ids, want.labels, want.images[0].sha256)


def test_an_image_column_fills_bare_parts_or_goes_first_in_the_first_user_turn(processor: Any, claim: Path) -> None:
    with_parts = conversation({"type": "image"}, {"type": "image"}) | {"img": ["pictures/red.png", "pictures/blue.png"]}
    text_only = conversation() | {"img": "pictures/red.png"}
    no_image = conversation() | {"img": None}
    data = build(processor, claim, rows_of(claim, [with_parts, text_only, no_image]), image_column="img")
    assert data.bad_rows.count == 0, data.bad_rows.first
    two, one, none = data.train
    assert none.images == () and none.labels == expected_labels(none.input_ids, processor)
    assert [image.name for image in two.images] == ["pictures/red.png", "pictures/blue.png"]
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert two.input_ids.count(image_token) == 2 * IMAGE_TOKENS and one.input_ids.count(image_token) == IMAGE_TOKENS
    # The column's image went before the question, in the first user turn.
    user = processor.tokenizer.convert_tokens_to_ids("<|user|>")
    assert one.input_ids[one.input_ids.index(user) + 1] == image_token
    assert one.labels == expected_labels(one.input_ids, processor)


GOOD = conversation({"type": "image", "image": "pictures/red.png"})


def with_image(reference: str) -> dict[str, Any]:
    return conversation({"type": "image", "image": reference})


@pytest.mark.parametrize(
    ("record", "words"),
    [
        (with_image("pictures/missing.png"), "image pictures/missing.png not found"),
        (with_image("pictures/garbage.png"), "image pictures/garbage.png is not a readable image"),
        (with_image("../../outside.png"), "outside the claim"),
        (with_image("https://example.com/cat.png"), "is remote"),
        (with_image("data:image/png;base64,@@@"), "not valid base64"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "image": "pictures/red.png"}]}]},
            "no assistant turn",
        ),
        ({"messages": [{"role": "robot", "content": "beep"}]}, "role 'robot' is not a chat role"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "part type 'audio' is not allowed"),
        (conversation({"type": "image"}), "an image part has no image"),
        (conversation({"type": "image"}, {"type": "image"}) | {"img": "x"}, "holds 1 images for 2 image parts"),
        ({"text": "no messages"}, "column 'messages' must be a non-empty list"),
    ],
    ids=[
        "missing-file",
        "unreadable-image",
        "outside-the-claim",
        "remote",
        "bad-data-uri",
        "no-assistant-turn",
        "unknown-role",
        "unknown-part",
        "image-without-reference",
        "column-count",
        "no-messages",
    ],
)
def test_a_bad_row_is_counted_and_named_never_a_crash(
    processor: Any, claim: Path, record: dict[str, Any], words: str
) -> None:
    (claim / "data" / "pictures" / "garbage.png").write_bytes(b"not a picture at all")
    (claim.parent / "outside.png").write_bytes(png((0, 255, 0)))
    image_column = "img" if "img" in record else None
    good = GOOD | ({"img": []} if image_column else {})
    data = build(processor, claim, rows_of(claim, [good, record]), image_column=image_column)
    assert (data.bad_rows.count, data.bad_rows.total, len(data.train)) == (1, 2, 1)
    (first,) = data.bad_rows.first
    assert first.startswith(f"row 2 of {claim / 'data' / 'chat.jsonl'}: ") and words in first, first


def test_files_are_read_from_a_claim_only_and_images_must_fit_in_max_seq_length(processor: Any, claim: Path) -> None:
    inline = [Row("inline", 1, GOOD), Row("inline", 2, GOOD)]
    with pytest.raises(DataError) as raised:
        build(processor, None, inline)
    assert "files are read from the Dataset's claim" in str(raised.value) and raised.value.field == "dataset"

    rows = rows_of(claim, [GOOD, conversation({"type": "image", "image": "pictures/blue.png"})])
    with pytest.raises(DataError) as raised:
        build(processor, claim, rows, max_seq_length=IMAGE_TOKENS)
    assert "its image tokens run to position" in str(raised.value) and "maxSeqLength=16" in str(raised.value)


def test_too_many_bad_rows_fail_the_data_naming_the_first(processor: Any, claim: Path) -> None:
    rows = rows_of(claim, [GOOD, with_image("pictures/gone.png"), with_image("pictures/gone.png")])
    with pytest.raises(DataError) as raised:
        build(processor, claim, rows, max_bad_rows=0.5)
    assert "2 of 3 rows are bad" in str(raised.value) and "image pictures/gone.png not found" in str(raised.value)


def test_a_batch_pads_the_tokens_and_processes_every_image_in_order(processor: Any, claim: Path) -> None:
    two = conversation({"type": "image", "image": "pictures/red.png"}, {"type": "image", "image": "pictures/blue.png"})
    text_only = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
    data = build(processor, claim, rows_of(claim, [two, text_only]))
    batch = collate_chat_images(data.train, processor, processor.tokenizer.pad_token_id)
    longest = max(e.num_tokens for e in data.train)
    assert batch.input_ids.shape == (2, longest) and int(batch.attention_mask.sum()) == sum(
        e.num_tokens for e in data.train
    )
    assert batch.image_inputs["pixel_values"].shape == (2, 3, 32, 32)
    red = processor.image_processor(images=[Image.open(claim / "data/pictures/red.png")], return_tensors="pt")
    assert torch.equal(batch.image_inputs["pixel_values"][0], red["pixel_values"][0])
    # Every target is the next token of the same example, where the label says it is learned.
    expected = [
        label for e in data.train for label in [*e.labels[1:], IGNORE_INDEX] + [IGNORE_INDEX] * (longest - e.num_tokens)
    ]
    assert batch.targets.tolist() == [label for label in expected if label != IGNORE_INDEX]
    assert batch.supervised_positions.tolist() == [i for i, label in enumerate(expected) if label != IGNORE_INDEX]


def test_an_image_that_changed_since_it_was_read_fails_the_batch(processor: Any, claim: Path) -> None:
    data = build(processor, claim, rows_of(claim, [GOOD]))
    (claim / "data" / "pictures" / "red.png").write_bytes(png((250, 0, 0)))
    with pytest.raises(DataError) as raised:
        collate_chat_images(data.train, processor, 0)
    assert "changed since the data was read" in str(raised.value)
