"""Data: every format read from real files, the three layouts and their loss masks, truncation,
bad rows, the evaluation split, and the seeded plan that exact resume rests on."""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tensorone.api.v1alpha1.dataset import ColumnMapping, DatasetFormat, DatasetSpec
from tensorone.errors import ConfigurationError, DataError
from tests.kube.loopback import LOOPBACK, free_port
from tests.trainer.conftest import TINY_MODEL
from trainer.data.batches import pad_batch
from trainer.data.examples import IGNORE_INDEX, Example, Layout, TextData, build_examples
from trainer.data.plan import DataPlan, eval_batches
from trainer.data.records import Row, read_rows

RECORDS = [
    {"prompt": "What is one plus two?", "completion": " One plus two is three."},
    {"prompt": "What color is the sky?", "completion": " The sky is blue."},
    {"prompt": "What is the capital of Peru?", "completion": " The capital of Peru is Lima."},
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(TINY_MODEL)


def write_format(folder: Path, dataset_format: str, records: list[dict[str, Any]]) -> Path:
    if dataset_format == "jsonl":
        path = folder / "data.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif dataset_format == "json":
        path = folder / "data.json"
        path.write_text(json.dumps(records))
    elif dataset_format == "csv":
        path = folder / "data.csv"
        lines = ["prompt,completion"] + [f'"{r["prompt"]}","{r["completion"]}"' for r in records]
        path.write_text("\n".join(lines) + "\n")
    elif dataset_format == "parquet":
        path = folder / "data.parquet"
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        path = folder / "data.txt"
        path.write_text("\n".join(r["prompt"] + r["completion"] for r in records) + "\n")
    return path


def read_claim(mount_path: Path, path: str, dataset_format: str) -> list[Row]:
    """The rows of a Dataset on a claim mounted at ``mount_path``, ``path`` from the claim's root."""
    spec = DatasetSpec.model_validate(
        {"format": dataset_format, "source": {"pvc": {"claimName": "data", "path": path}}}
    )
    return list(read_rows(spec, mount_path=mount_path, cache_dir=None))


def inline_rows(records: list[dict[str, Any]]) -> list[Row]:
    """The rows of an inline Dataset of ``records``."""
    spec = DatasetSpec.model_validate({"format": "jsonl", "source": {"inline": {"records": records}}})
    return list(read_rows(spec, mount_path=Path("/"), cache_dir=None))


def examples_of(
    rows: list[Row],
    tokenizer: PreTrainedTokenizerBase,
    *,
    mapping: ColumnMapping | None = None,
    max_seq_length: int = 64,
    max_bad_rows: float = 0,
    eval_split: float = 0,
    seed: int = 1,
) -> TextData:
    """build_examples with the options a test does not set: detected columns, 64 tokens, no bad
    rows allowed, no evaluation split."""
    return build_examples(
        rows,
        tokenizer,
        mapping=mapping,
        max_seq_length=max_seq_length,
        max_bad_rows=max_bad_rows,
        eval_split=eval_split,
        seed=seed,
    )


@pytest.mark.parametrize("dataset_format", ["jsonl", "json", "csv", "parquet"])
def test_every_file_format_reads_the_same_records(tmp_path: Path, dataset_format: str) -> None:
    file = write_format(tmp_path, dataset_format, RECORDS)
    rows = read_claim(tmp_path, "/" + file.name, dataset_format)
    assert [row.record for row in rows] == RECORDS
    assert [row.number for row in rows] == [1, 2, 3]


def test_text_files_are_one_example_per_line(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    write_format(tmp_path, "text", RECORDS)
    rows = read_claim(tmp_path, "/data.txt", "text")
    data = examples_of(rows, tokenizer)
    assert data.columns.layout == Layout.text
    assert len(data.train) == 3
    first = data.train[0]
    assert first.labels == first.input_ids, "plain text: every token is learned"
    assert first.input_ids[0] == tokenizer.bos_token_id and first.input_ids[-1] == tokenizer.eos_token_id


def test_a_folder_means_every_file_of_the_format_in_it(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "b.jsonl").write_text(json.dumps(RECORDS[1]) + "\n")
    (tmp_path / "shards" / "a.jsonl").write_text(json.dumps(RECORDS[0]) + "\n")
    (tmp_path / "shards" / "notes.txt").write_text("not data\n")
    rows = read_claim(tmp_path, "/shards", "jsonl")
    assert [row.record for row in rows] == RECORDS[:2]


def test_a_missing_path_is_a_data_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(DataError) as raised:
        read_claim(tmp_path, "/nowhere.jsonl", "jsonl")
    assert raised.value.field == "dataset.source.pvc.path"


def test_unreadable_rows_come_back_numbered_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text('{"text": "fine"}\n{not json\n\n[1, 2]\n')
    rows = read_claim(tmp_path, "/data.jsonl", "jsonl")
    assert [(r.number, r.record is None) for r in rows] == [(1, False), (2, True), (4, True)]
    assert "not valid JSON" in (rows[1].error or "")
    assert "JSON object" in (rows[2].error or "")
    (tmp_path / "data.csv").write_text('prompt,completion\n"a","b"\n"c","d","e"\n"f"\n')
    rows = read_claim(tmp_path, "/data.csv", "csv")
    assert [r.error is None for r in rows] == [True, False, False]


def test_prompt_completion_learns_the_completion_only(tokenizer: PreTrainedTokenizerBase) -> None:
    data = examples_of(inline_rows(RECORDS), tokenizer)
    assert data.columns.layout == Layout.prompt_completion
    example = data.train[0]
    learned = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    assert tokenizer.decode(learned) == " One plus two is three.</s>"
    assert example.num_targets == len(learned)


def test_chat_messages_learn_the_assistant_turns_only(tokenizer: PreTrainedTokenizerBase) -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of Peru?"},
        {"role": "assistant", "content": "Lima."},
        {"role": "user", "content": "And Chile?"},
        {"role": "assistant", "content": "Santiago."},
    ]
    data = examples_of(
        inline_rows([{"conversation": conversation}]),
        tokenizer,
        mapping=ColumnMapping(messages="conversation"),
        max_seq_length=128,
    )
    example = data.train[0]
    learned = [t if label != IGNORE_INDEX else None for t, label in zip(example.input_ids, example.labels, strict=True)]
    spans: list[str] = []
    current: list[int] = []
    for token in [*learned, None]:
        if token is None and current:
            span = tokenizer.decode(current)
            assert isinstance(span, str)  # decode's type also covers batches
            spans.append(span)
            current = []
        elif token is not None:
            current.append(token)
    assert spans == ["Lima.<|end|>", "Santiago.<|end|>"]


def test_truncation_keeps_max_seq_length_tokens_and_drops_rows_with_nothing_to_learn(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    records = [{"text": "word " * 100}, {"prompt": "long prompt " * 50, "completion": " done"}]
    data = examples_of(inline_rows(records[:1]), tokenizer, max_seq_length=16)
    assert data.train[0].num_tokens == 16
    data = examples_of(inline_rows(records[1:] + RECORDS), tokenizer, max_seq_length=16, max_bad_rows=0.5)
    assert data.bad_rows.count == 1 and "maxSeqLength=16" in data.bad_rows.first[0]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"prompt": "q"}, "missing column 'completion'"),
        ({"prompt": "q", "completion": 3}, "must be a string"),
        ({"prompt": "q", "completion": "   "}, "is empty"),
    ],
)
def test_records_that_do_not_fit_the_layout_are_bad_rows(
    tokenizer: PreTrainedTokenizerBase, record: dict[str, Any], reason: str
) -> None:
    with pytest.raises(DataError) as raised:
        examples_of(inline_rows([*RECORDS, record]), tokenizer, max_bad_rows=0.2)
    assert "1 of 4 rows" in str(raised.value) and "row 4 of inline" in str(raised.value) and reason in str(raised.value)


def test_chat_messages_need_a_chat_template() -> None:
    plain = AutoTokenizer.from_pretrained(TINY_MODEL)
    plain.chat_template = None
    records = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    with pytest.raises(ConfigurationError) as raised:
        examples_of(inline_rows(records), plain)
    assert raised.value.field == "config.baseModel" and "chat template" in str(raised.value)


def test_chat_rows_without_an_assistant_turn_are_bad(tokenizer: PreTrainedTokenizerBase) -> None:
    records: list[dict[str, Any]] = [{"messages": [{"role": "user", "content": "hi"}]}, {"messages": "hello"}]
    with pytest.raises(DataError) as raised:
        examples_of(inline_rows(records), tokenizer, max_bad_rows=0.5)
    assert "no assistant turn" in str(raised.value)


def test_an_undetectable_layout_names_the_columns_to_set(tokenizer: PreTrainedTokenizerBase) -> None:
    with pytest.raises(ConfigurationError) as raised:
        examples_of(inline_rows([{"body": "x"}]), tokenizer)
    assert raised.value.field == "dataset.columns" and "body" in str(raised.value)


def test_the_eval_split_is_seeded_and_disjoint(tokenizer: PreTrainedTokenizerBase) -> None:
    records = [{"text": f"sentence number {i}"} for i in range(20)]

    def split(seed: int) -> tuple[list[Example], list[Example]]:
        data = examples_of(inline_rows(records), tokenizer, eval_split=0.25, seed=seed)
        return data.train, data.eval

    train, held = split(1)
    assert (len(train), len(held)) == (15, 5)
    assert not {tuple(e.input_ids) for e in train} & {tuple(e.input_ids) for e in held}
    assert split(1) == (train, held)
    assert split(2)[1] != held


def examples_of_lengths(lengths: list[int]) -> list[Example]:
    return [Example(list(range(n)), [IGNORE_INDEX, *range(1, n)]) for n in lengths]


def test_the_plan_is_a_pure_function_of_seed_and_epoch() -> None:
    examples = examples_of_lengths([3 + i % 5 for i in range(23)])
    plan = DataPlan(examples, seed=5, batch_size=3, accumulation=2)
    assert plan.steps(0) == DataPlan(examples, seed=5, batch_size=3, accumulation=2).steps(0)
    assert plan.order(0) != plan.order(1)
    assert DataPlan(examples, seed=6, batch_size=3, accumulation=2).order(0) != plan.order(0)
    # 23 examples: 8 micro-batches of 3 (the last of 2), 4 steps of 2 micro-batches.
    steps = plan.steps(0)
    assert (plan.micro_batches_per_epoch, plan.steps_per_epoch, len(steps)) == (8, 4, 4)
    assert sorted(i for step in steps for batch in step.micro_batches for i in batch) == list(range(23))
    first = steps[0]
    assert first.global_targets == sum(examples[i].num_targets for batch in first.micro_batches for i in batch)


def test_processes_get_disjoint_equal_shards_like_distributed_sampler() -> None:
    examples = examples_of_lengths([4] * 11)
    plans = [DataPlan(examples, seed=1, batch_size=2, accumulation=1, rank=r, world_size=3) for r in range(3)]
    shards = [plan.shard(0, plan.rank) for plan in plans]
    assert all(len(shard) == 4 for shard in shards)  # 11 padded to 12
    seen = [i for shard in shards for i in shard]
    assert set(seen) == set(range(11)) and len(seen) == 12  # every example, one repeated as padding
    # Every process computes the same global totals for a step.
    assert len({plan.steps(0)[0].global_targets for plan in plans}) == 1
    assert plans[0].steps(0)[0].global_samples == 6


def test_eval_batches_cover_each_example_once() -> None:
    batches = [eval_batches(7, 2, rank, 2) for rank in range(2)]
    assert sorted(i for per_rank in batches for batch in per_rank for i in batch) == list(range(7))


def test_padding_masks_labels_and_attention() -> None:
    batch = pad_batch(examples_of_lengths([2, 4]), pad_token_id=0)
    assert batch.input_ids.tolist() == [[0, 1, 0, 0], [0, 1, 2, 3]]
    assert batch.attention_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch.labels.tolist() == [[IGNORE_INDEX, 1, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX, 1, 2, 3]]


def test_formats_listed_by_the_api_that_are_text_are_all_readable() -> None:
    from trainer.data.records import FORMAT_SUFFIXES

    assert set(FORMAT_SUFFIXES) == set(DatasetFormat) - {DatasetFormat.imagefolder, DatasetFormat.coco}


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """An HTTP server on the loopback serving ``folder``; yields its base URL."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer((LOOPBACK, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_uri_source_is_fetched_once_into_the_cache(tmp_path: Path) -> None:
    served_folder = tmp_path / "served"
    served_folder.mkdir()
    write_format(served_folder, "jsonl", RECORDS)
    with served(served_folder) as base:
        uri = f"{base}/data.jsonl"
        spec = DatasetSpec.model_validate({"format": "jsonl", "source": {"uri": uri}})
        rows = list(read_rows(spec, mount_path=tmp_path, cache_dir=str(tmp_path / "cache")))
        assert [row.record for row in rows] == RECORDS and rows[0].location == uri
    # Served no more: the cached copy is read.
    assert [row.record for row in read_rows(spec, mount_path=tmp_path, cache_dir=str(tmp_path / "cache"))] == RECORDS


def test_an_unreachable_uri_is_a_data_error(tmp_path: Path) -> None:
    # A port nobody listens on (not a well-known one such as 9, which a machine may serve).
    uri = f"http://{LOOPBACK}:{free_port()}/none.jsonl"
    spec = DatasetSpec.model_validate({"format": "jsonl", "source": {"uri": uri}})
    with pytest.raises(DataError) as raised:
        list(read_rows(spec, mount_path=tmp_path, cache_dir=str(tmp_path)))
    assert raised.value.field == "dataset.source.uri"
    assert not list((tmp_path / "datasets").glob("*.partial*"))


def test_chat_rows_with_a_role_outside_the_chat_roles_are_bad(tokenizer: PreTrainedTokenizerBase) -> None:
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    robot = {"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "hello"}]}
    data = examples_of(inline_rows([good, good, good, robot]), tokenizer, max_bad_rows=0.5)
    assert (data.bad_rows.total, data.bad_rows.count, len(data.train)) == (4, 1, 3)
    assert data.bad_rows.first == [
        "row 4 of inline: role 'robot' is not a chat role; allowed: system, user, assistant, tool"
    ]


@pytest.mark.parametrize("dataset_format", ["jsonl", "json", "csv", "text"])
def test_invalid_utf8_is_a_bad_row_not_replaced(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, dataset_format: str
) -> None:
    path = write_format(tmp_path, dataset_format, RECORDS)
    data = path.read_bytes()
    # A byte that never occurs in UTF-8, inside the second record's text.
    second = data.index(RECORDS[1]["prompt"].encode())
    path.write_bytes(data[: second + 2] + b"\xff" + data[second + 2 :])
    rows = read_claim(tmp_path, f"/{path.name}", dataset_format)
    bad = [row for row in rows if row.error is not None]
    assert [(row.number, row.error) for row in bad] == [(rows[1].number, "is not valid UTF-8")]
    assert all("\ufffd" not in json.dumps(row.record) for row in rows if row.record is not None)
    with pytest.raises(DataError, match=r"1 of 3 rows are bad.*is not valid UTF-8"):
        examples_of(rows, tokenizer)


def test_an_unpaired_surrogate_in_inline_records_is_a_bad_row(tokenizer: PreTrainedTokenizerBase) -> None:
    """An escape such as "\\udcff" in a manifest's inline records decodes to text no UTF-8 can hold;
    the tokenizer would fail on it, so it is a bad row like an undecodable byte in a file."""
    rows = inline_rows([{"text": "fine"}, {"text": "broken \udcff here"}, {"text": "fine too"}])
    assert [(row.number, row.error) for row in rows] == [(1, None), (2, "is not valid UTF-8"), (3, None)]
    data = examples_of(rows, tokenizer, max_bad_rows=0.5)
    assert (data.bad_rows.count, len(data.train)) == (1, 2)


def test_invalid_utf8_in_a_parquet_string_is_a_bad_row(tmp_path: Path) -> None:
    prompts = [r["prompt"].encode() for r in RECORDS]
    prompts[1] = prompts[1][:2] + b"\xff" + prompts[1][2:]
    # pyarrow validates strings it builds from Python; these bytes are laid out as a string column directly.
    binary = pa.array(prompts, type=pa.binary())
    column = pa.Array.from_buffers(pa.string(), len(prompts), binary.buffers())
    completions = pa.array([r["completion"] for r in RECORDS])
    pq.write_table(pa.table({"prompt": column, "completion": completions}), tmp_path / "data.parquet")
    rows = read_claim(tmp_path, "/data.parquet", "parquet")
    assert [(row.number, row.error) for row in rows] == [(1, None), (2, "is not valid UTF-8"), (3, None)]
    assert [rows[0].record, rows[2].record] == [RECORDS[0], RECORDS[2]]


def test_a_claim_path_that_resolves_outside_the_mount_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text('{"text": "not yours"}\n')
    mount = tmp_path / "claim"
    mount.mkdir()
    (mount / "data").symlink_to(outside)
    with pytest.raises(ConfigurationError) as raised:
        read_claim(mount, "/data/secret.jsonl", "jsonl")
    assert raised.value.field == "dataset.source.pvc.path"
    assert "outside the claim" in str(raised.value)


def test_a_uri_download_over_the_size_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORONE_MAX_DATASET_BYTES", "64")
    served_folder = tmp_path / "served"
    served_folder.mkdir()
    write_format(served_folder, "jsonl", RECORDS * 10)
    with served(served_folder) as base:
        spec = DatasetSpec.model_validate({"format": "jsonl", "source": {"uri": f"{base}/data.jsonl"}})
        with pytest.raises(DataError) as raised:
            list(read_rows(spec, mount_path=tmp_path, cache_dir=str(tmp_path / "cache")))
    assert raised.value.field == "dataset.source.uri"
    assert "larger than the limit of 64 bytes" in str(raised.value)
    assert "TENSORONE_MAX_DATASET_BYTES" in str(raised.value)
    assert not list((tmp_path / "cache" / "datasets").iterdir())
