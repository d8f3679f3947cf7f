"""Reading a Dataset's records, one row at a time, wherever they are and whatever their format.

Rows that cannot be read (a line that is not JSON, a CSV row with too many fields, bytes that are
not UTF-8) are not fatal here: each comes back as a ``Row`` with an ``error``, and the caller counts
them against ``config.training.maxBadRows``. Only a source that cannot be opened at all is an error.

Formats are read with plain readers (json, csv, pyarrow) rather than a dataset library, so a bad
row is reported with its own number instead of failing the whole file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tensorone.api.v1alpha1.dataset import DatasetFormat, DatasetSpec
from tensorone.errors import ConfigurationError, DataError

# The largest download of a uri source, in bytes; the training pod's disk holds it whole.
MAX_DOWNLOAD_BYTES_ENV = "TENSORONE_MAX_DATASET_BYTES"
DEFAULT_MAX_DOWNLOAD_BYTES = 20 * 1024**3
# Text files are decoded with surrogateescape, so a byte that is not UTF-8 becomes a surrogate and
# its row is reported as bad instead of being read as a replacement character. Text decoded from
# valid UTF-8 never holds a surrogate; one from an escape ("\\udcff" in inline JSON or YAML) is no
# more valid, and the tokenizer would fail on it.
_UNDECODABLE = re.compile("[\ud800-\udfff]")

# File name endings read from a folder, by format.
FORMAT_SUFFIXES: dict[DatasetFormat, tuple[str, ...]] = {
    DatasetFormat.jsonl: (".jsonl",),
    DatasetFormat.json: (".json",),
    DatasetFormat.csv: (".csv",),
    DatasetFormat.parquet: (".parquet",),
    DatasetFormat.text: (".txt", ".text"),
}


@dataclass(frozen=True)
class Row:
    """One row of the source: its record, or why it could not be read."""

    location: str  # file path, "inline" or the hub dataset id
    number: int  # 1-based within its location
    record: dict[str, Any] | None
    error: str | None = None

    def where(self) -> str:
        return f"row {self.number} of {self.location}"


def read_rows(spec: DatasetSpec, *, mount_path: Path, cache_dir: str | None) -> Iterator[Row]:
    """Every row of the Dataset, in source order; a row with text that is not valid UTF-8 is a bad row."""
    for row in _source_rows(spec, mount_path=mount_path, cache_dir=cache_dir):
        if row.record is not None and _undecodable(row.record):
            yield Row(row.location, row.number, None, "is not valid UTF-8")
        else:
            yield row


def _source_rows(spec: DatasetSpec, *, mount_path: Path, cache_dir: str | None) -> Iterator[Row]:
    source = spec.source
    dataset_format = DatasetFormat(spec.format)
    if source.inline is not None:
        for number, record in enumerate(source.inline.records, start=1):
            yield Row("inline", number, record)
    elif source.pvc is not None:
        # The claim is mounted at mount_path; source.pvc.path is absolute from the claim's root.
        path = inside_mount(mount_path, source.pvc.path)
        for file in _files_of(path, dataset_format, field="dataset.source.pvc.path"):
            yield from read_file(file, dataset_format)
    elif source.uri is not None:
        yield from read_file(_fetch(source.uri, cache_dir), dataset_format, location=source.uri)
    elif source.hugging_face is not None:
        yield from _read_hub(
            source.hugging_face.name,
            source.hugging_face.subset,
            source.hugging_face.split,
            source.hugging_face.revision,
            cache_dir,
        )
    else:
        raise ConfigurationError("must set one of pvc, uri, huggingFace or inline", field="dataset.source")


def inside_mount(mount_path: Path, claim_path: str) -> Path:
    """The file or folder ``claim_path`` names on the claim mounted at ``mount_path``; refused when
    it resolves (through '..' or a symbolic link) to a place outside the mount."""
    mount = mount_path.resolve()
    path = (mount / claim_path.lstrip("/")).resolve()
    if not path.is_relative_to(mount):
        raise ConfigurationError(
            f"{claim_path} resolves to {path}, outside the claim; allowed: a path inside the claim",
            field="dataset.source.pvc.path",
        )
    return path


def _undecodable(value: Any) -> bool:
    if isinstance(value, str):
        return _UNDECODABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_undecodable(k) or _undecodable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_undecodable(v) for v in value)
    return False


def read_file(path: Path, dataset_format: DatasetFormat, *, location: str | None = None) -> Iterator[Row]:
    """The rows of one file of the given format (bytes that are not UTF-8 kept as surrogates)."""
    where = location or str(path)
    if dataset_format == DatasetFormat.jsonl:
        yield from _read_json_lines(path, where)
    elif dataset_format == DatasetFormat.json:
        yield from _read_json(path, where)
    elif dataset_format == DatasetFormat.csv:
        yield from _read_csv(path, where)
    elif dataset_format == DatasetFormat.parquet:
        yield from _read_parquet(path, where)
    elif dataset_format == DatasetFormat.text:
        yield from _read_text(path, where)
    else:
        raise ConfigurationError(f"{dataset_format} is not a text format", field="dataset.format")


def _files_of(path: Path, dataset_format: DatasetFormat, *, field: str) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        suffixes = FORMAT_SUFFIXES[dataset_format]
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(suffixes))
        if not files:
            raise DataError(f"folder {path} holds no {'/'.join(suffixes)} file", field=field)
        return files
    raise DataError(f"{path} does not exist (is the claim mounted, and the path right?)", field=field)


def _read_json_lines(path: Path, where: str) -> Iterator[Row]:
    with path.open(encoding="utf-8", errors="surrogateescape") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            yield _json_row(where, number, line)


def _json_row(where: str, number: int, text: str) -> Row:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        return Row(where, number, None, f"not valid JSON ({error.msg})")
    if not isinstance(record, dict):
        return Row(where, number, None, f"a record must be a JSON object, got {type(record).__name__}")
    return Row(where, number, record)


def _read_json(path: Path, where: str) -> Iterator[Row]:
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        # Many ".json" datasets are really JSON Lines; read them as such, row by row.
        yield from _read_json_lines(path, where)
        return
    if isinstance(document, dict):
        raise DataError(
            f"{where} holds one JSON object; format json expects an array of records", field="dataset.format"
        )
    if not isinstance(document, list):
        raise DataError(f"{where} must hold a JSON array of records", field="dataset.format")
    for number, record in enumerate(document, start=1):
        if isinstance(record, dict):
            yield Row(where, number, record)
        else:
            yield Row(where, number, None, f"a record must be a JSON object, got {type(record).__name__}")


def _read_csv(path: Path, where: str) -> Iterator[Row]:
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise DataError(f"{where} has no header row", field="dataset.format")
        for number, record in enumerate(reader, start=1):
            # DictReader files surplus fields under the key None and missing ones as None values.
            if None in record:
                yield Row(where, number, None, f"has more fields than the {len(reader.fieldnames)} of the header")
            elif any(value is None for value in record.values()):
                yield Row(where, number, None, f"has fewer fields than the {len(reader.fieldnames)} of the header")
            else:
                yield Row(where, number, dict(record))


def _read_parquet(path: Path, where: str) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise DataError(f"{where} is not a readable parquet file: {error}", field="dataset.format") from error
    try:
        records = table.to_pylist()
    except UnicodeDecodeError:
        # A string that is not UTF-8 fails the whole conversion; row by row, only its row is bad.
        yield from _parquet_rows_one_by_one(table, where)
        return
    for number, record in enumerate(records, start=1):
        yield Row(where, number, record)


def _parquet_rows_one_by_one(table: Any, where: str) -> Iterator[Row]:
    for number in range(1, table.num_rows + 1):
        try:
            record = table.slice(number - 1, 1).to_pylist()[0]
        except UnicodeDecodeError:
            yield Row(where, number, None, "is not valid UTF-8")
            continue
        yield Row(where, number, record)


def _read_text(path: Path, where: str) -> Iterator[Row]:
    with path.open(encoding="utf-8", errors="surrogateescape") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.rstrip("\n")
            if text.strip():
                yield Row(where, number, {"text": text})


def _fetch(uri: str, cache_dir: str | None) -> Path:
    """Download a uri source once into the cache; s3:// and gs:// go through fsspec when installed."""
    cache = Path(cache_dir or Path.home() / ".cache" / "tensorone") / "datasets"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / (hashlib.sha256(uri.encode()).hexdigest()[:16] + "-" + Path(uri).name)
    if target.exists():
        return target
    # Per process: several processes of a pod may fetch at once; the last rename wins, whole.
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        if uri.startswith(("http://", "https://")):
            with urllib.request.urlopen(uri, timeout=60) as response, partial.open("wb") as out:
                _copy_capped(response, out, uri, announced=response.headers.get("Content-Length"))
        else:
            try:
                import fsspec
            except ImportError:
                raise ConfigurationError(
                    "s3:// and gs:// sources need fsspec with s3fs or gcsfs in the trainer image; use an "
                    "http(s) uri or a pvc source",
                    field="dataset.source.uri",
                ) from None
            with fsspec.open(uri, "rb") as remote, partial.open("wb") as out:
                _copy_capped(remote, out, uri, announced=None)
        os.replace(partial, target)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot fetch {uri}: {error}", field="dataset.source.uri") from error
    finally:
        partial.unlink(missing_ok=True)  # what a failed download left; gone after the rename
    return target


def _copy_capped(source: BinaryIO, out: BinaryIO, uri: str, *, announced: str | None) -> None:
    """Copy a download, refusing one larger than the limit (before it starts when its size is known)."""
    limit = _download_limit()
    too_large = (
        f"{uri} is larger than the limit of {limit} bytes for a dataset download; put it on a claim (pvc "
        f"source), or raise {MAX_DOWNLOAD_BYTES_ENV}"
    )
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise DataError(too_large, field="dataset.source.uri")
    written = 0
    while chunk := source.read(1 << 20):
        written += len(chunk)
        if written > limit:
            raise DataError(too_large, field="dataset.source.uri")
        out.write(chunk)


def _download_limit() -> int:
    text = os.environ.get(MAX_DOWNLOAD_BYTES_ENV)
    if text is None:
        return DEFAULT_MAX_DOWNLOAD_BYTES
    if not text.isdigit() or int(text) == 0:
        raise ConfigurationError(f"must be a positive number of bytes, got {text!r}", field=MAX_DOWNLOAD_BYTES_ENV)
    return int(text)


def _read_hub(name: str, subset: str | None, split: str, revision: str | None, cache_dir: str | None) -> Iterator[Row]:
    import datasets

    try:
        data = datasets.load_dataset(name, subset, split=split, revision=revision, cache_dir=cache_dir)
    except Exception as error:  # the hub client raises many types (network, auth, missing split)
        raise DataError(f"cannot load {name} split {split}: {error}", field="dataset.source.huggingFace") from error
    for number, record in enumerate(data, start=1):
        yield Row(name, number, dict(record))
