"""``t1 datasets list|get|create|delete``: the Datasets jobs train on, over the Kubernetes API
(:class:`tensorone.client.Datasets`; the gateway serves only the reference's job verbs). They
behave as the job verbs do: one-line errors with the exit status of their kind, ``-o
json|yaml|wide`` on what shows a Dataset or the list, ``delete`` says deleted or terminating and
``--wait`` waits until it is gone."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tensorone.api.v1alpha1.trainingjob import ConditionType
from tensorone.cli.connection import add_verb, kube_client
from tensorone.cli.output import (
    Results,
    add_output_argument,
    add_result_output_argument,
    add_wait_argument,
    print_deletion,
    print_document,
    print_results,
    print_table,
    when,
)
from tensorone.errors import ConfigurationError

if TYPE_CHECKING:
    from tensorone.api.v1alpha1 import Dataset


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser(
        "datasets", help="List, show, create and delete Datasets.", description="The Datasets jobs train on."
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    action = functools.partial(add_verb, actions)

    listing = action("list", "List the namespace's Datasets by name.", _list)
    add_output_argument(listing, "table")

    get = action("get", "Show a Dataset: its source, format, records and whether it is ready.", _get)
    get.add_argument("dataset")
    add_output_argument(get, "text")

    create = action(
        "create",
        "Create Datasets from a manifest file (-f), or one from options: NAME --format and one source.",
        _create,
    )
    create.add_argument("dataset", nargs="?", metavar="NAME", help="the Dataset's name (without -f)")
    create.add_argument("-f", "--filename", type=Path, help="YAML manifest of Datasets (several documents allowed)")
    create.add_argument("--format", help="jsonl, json, csv, parquet, text, imagefolder or coco")
    sources = create.add_mutually_exclusive_group()
    sources.add_argument("--uri", help="an http(s), s3 or gs URI of a file")
    sources.add_argument("--hugging-face", metavar="ID", help="a Hugging Face hub dataset id")
    sources.add_argument("--pvc", metavar="CLAIM[:PATH]", help="a PersistentVolumeClaim, and a path in it")
    sources.add_argument("--records", type=Path, metavar="FILE", help="a JSON Lines file, written inline (<= 1000)")
    create.add_argument("--description", help="free text")
    add_result_output_argument(create)

    delete = action("delete", "Delete a Dataset.", _delete)
    delete.add_argument("dataset")
    add_wait_argument(delete, "it")
    add_result_output_argument(delete, documents=False)


def _datasets(args: argparse.Namespace) -> Any:
    return kube_client(args, f"t1 datasets {args.action}").datasets


def _list(args: argparse.Namespace) -> int:
    datasets = sorted(_datasets(args).list(), key=lambda d: d.metadata.name or "")
    if args.output in ("json", "yaml"):
        print_document({"datasets": [d.to_wire() for d in datasets]}, args.output)
        return 0
    wide = args.output == "wide"
    header = ["NAME", "FORMAT", "SOURCE", "RECORDS", "READY", "CREATED"]
    rows = [header + (["REASON", "DESCRIPTION"] if wide else [])]
    for d in datasets:
        ready = _ready(d)
        cells = [d.metadata.name or "", str(d.spec.format), _source(d), _records(d), ready.get("status", "-")]
        cells.append(when(_created(d)))
        if wide:
            cells += [ready.get("reason") or "-", d.spec.description or "-"]
        rows.append(cells)
    print_table(rows)
    return 0


def _get(args: argparse.Namespace) -> int:
    dataset: Dataset = _datasets(args).get(args.dataset)
    if args.output in ("json", "yaml"):
        print_document(dataset.to_wire(), args.output)
        return 0
    ready = _ready(dataset)
    readiness = ready.get("status", "-") + (f" ({ready['reason']}: {ready.get('message', '')})" if ready else "")
    lines = [
        f"Dataset:     {dataset.metadata.name} ({dataset.metadata.namespace})",
        f"Format:      {dataset.spec.format}",
        f"Source:      {_source(dataset)}",
        f"Records:     {_records(dataset)}",
        f"Ready:       {readiness}",
        f"Created:     {when(_created(dataset))}",
    ]
    if dataset.spec.description:
        lines.append(f"Description: {dataset.spec.description}")
    if args.output == "wide" and dataset.spec.columns is not None:
        columns = ", ".join(f"{k}={v}" for k, v in dataset.spec.columns.to_wire().items())
        lines.append(f"Columns:     {columns}")
    print("\n".join(lines))
    return 0


def _create(args: argparse.Namespace) -> int:
    datasets = _datasets(args)
    if args.filename is not None:
        if args.dataset or args.format or _source_option(args):
            raise ConfigurationError("give a manifest (-f) or NAME with --format and a source, not both", field="-f")
        results = Results(args.output)
        for name, document_spec, namespace in _from_file(args.filename, args.namespace):
            dataset, created = datasets.apply(name=name, spec=document_spec, namespace=namespace)
            results.add(f"dataset/{name}", f"dataset/{name} {'created' if created else 'unchanged'}", dataset.to_wire())
        results.done()
        return 0
    if not args.dataset or not args.format or not _source_option(args):
        raise ConfigurationError(
            "give NAME, --format and one of --uri, --hugging-face, --pvc or --records (or a manifest with -f)",
            field="NAME",
        )
    spec: dict[str, Any] = {"format": args.format, "source": _source_spec(args)}
    if args.description:
        spec["description"] = args.description
    dataset, created = datasets.apply(name=args.dataset, spec=spec)
    sentence = f"dataset/{args.dataset} {'created' if created else 'unchanged'}"
    print_results(args.output, [(f"dataset/{args.dataset}", sentence, dataset.to_wire())])
    return 0


def _delete(args: argparse.Namespace) -> int:
    state = _datasets(args).delete(args.dataset, wait=args.wait)
    if args.output == "name":
        print(f"dataset/{args.dataset}")
        return 0
    print_deletion(f"dataset/{args.dataset}", state, args.wait, "finalizers hold it")
    return 0


def _from_file(path: Path, namespace_option: str | None) -> list[tuple[str, dict[str, Any], str | None]]:
    """The name, spec and namespace of every Dataset in a manifest file; another kind, or a
    namespace that disagrees with ``-n``, is refused before anything is created."""
    from tensorone.cli.manifests import document_namespace, load_manifests

    if not path.is_file():
        raise ConfigurationError(f"no such file: {path}", field="--filename")
    found = []
    for document in load_manifests(path.read_text()):
        if document.get("kind") != "Dataset":
            raise ConfigurationError(
                f"must be Dataset, got {document.get('kind')!r} (t1 create -f takes TrainingJobs too)", field="kind"
            )
        name = str((document.get("metadata") or {}).get("name") or "")
        found.append((name, document.get("spec") or {}, document_namespace(document, namespace_option)))
    return found


def _source_option(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.uri, args.hugging_face, args.pvc, args.records))


def _source_spec(args: argparse.Namespace) -> dict[str, Any]:
    if args.uri is not None:
        return {"uri": args.uri}
    if args.hugging_face is not None:
        return {"huggingFace": {"name": args.hugging_face}}
    if args.pvc is not None:
        claim, _, path = args.pvc.partition(":")
        return {"pvc": {"claimName": claim, **({"path": path} if path else {})}}
    return {"inline": {"records": _records_of(args.records)}}


def _records_of(path: Path) -> list[Any]:
    if not path.is_file():
        raise ConfigurationError(f"no such file: {path}", field="--records")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ConfigurationError(f"line {number} is not JSON: {error}", field="--records") from None
    return records


def _source(dataset: Dataset) -> str:
    source = dataset.spec.source
    if source.uri:
        return source.uri
    if source.hugging_face:
        return f"huggingFace:{source.hugging_face.name}"
    if source.pvc:
        return f"pvc:{source.pvc.claim_name}:{source.pvc.path}"
    return "inline"


def _records(dataset: Dataset) -> str:
    records = dataset.status.records if dataset.status else None
    return "-" if records is None else str(records)


def _ready(dataset: Dataset) -> dict[str, str]:
    """The Ready condition, as wire fields ({} before the operator has seen the Dataset)."""
    for condition in (dataset.status.conditions if dataset.status else None) or []:
        if condition.type == ConditionType.Ready:
            return {k: str(v) for k, v in condition.to_wire().items()}
    return {}


def _created(dataset: Dataset) -> Any:
    from tensorone.api.timestamps import parse_time

    return parse_time((dataset.metadata.model_extra or {}).get("creationTimestamp"))
