"""Manifests on disk: read and written as kubectl does (``load_manifests``, ``dump_manifest``, for
every verb that takes a manifest file, ``t1 train`` included), and the ``t1`` verbs that need no
cluster: ``validate`` (as the API server would) and ``convert`` (between the reference REST body
and a TrainingJob manifest)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from tensorone.errors import ConfigurationError, ValidationFailed, json_type

# --- reading and writing manifests as kubectl does -----------------------------------------------

# A number as go-yaml v2 reads one: PyYAML alone reads ``2e-4`` (no dot) as a string.
_KUBECTL_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


class _KubectlYamlLoader(yaml.SafeLoader):
    """YAML as kubectl reads it (go-yaml v2): ``2e-4`` is a number (PyYAML alone reads a string
    there), timestamps stay strings; unquoted yes/no/on/off are booleans in both."""


_KubectlYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_KubectlYamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", _KUBECTL_FLOAT, list("-+.0123456789"))


class _KubectlYamlDumper(yaml.SafeDumper):
    """Writes YAML that kubectl reads back the same: a string such as "2e-4" is quoted."""


_KubectlYamlDumper.add_implicit_resolver("tag:yaml.org,2002:float", _KUBECTL_FLOAT, list("-+.0123456789"))


def load_manifests(text: str) -> list[dict[str, Any]]:
    """The objects of a (multi-document) YAML or JSON text, read as kubectl reads them; empty
    documents are skipped. Raises ConfigurationError when a document is not a mapping."""
    objects: list[dict[str, Any]] = []
    try:
        documents = list(yaml.load_all(text, Loader=_KubectlYamlLoader))  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as error:
        raise ConfigurationError(f"not valid YAML: {error}") from error
    for index, document in enumerate(documents):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ConfigurationError(f"document {index + 1} is a {json_type(document)}, not an object")
        objects.append(document)
    return objects


def dump_manifest(obj: dict[str, Any]) -> str:
    """One object as YAML, keys in their given order, readable back by kubectl and load_manifests."""
    text: str = yaml.dump(obj, Dumper=_KubectlYamlDumper, sort_keys=False, allow_unicode=True)
    return text


# --- the verbs -----------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``validate`` and ``convert`` verbs."""
    check = subparsers.add_parser(
        "validate",
        help="Check TrainingJob and Dataset manifests as the cluster would (schema and CEL rules).",
        description="Check every TrainingJob and Dataset in the files against the CRDs: unknown fields, "
        "types, ranges, enums and the CEL rules, as `kubectl apply` would. Prints OK per object or every "
        "problem with its field; exits 1 if any object is invalid.",
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML or JSON manifest ('-' for stdin)")
    check.set_defaults(handler=_validate)

    convert = subparsers.add_parser(
        "convert",
        help="Convert a REST create-job JSON body into a TrainingJob manifest (or back).",
        description="Read a create-job body of the reference REST API (JSON) and print the equivalent "
        "TrainingJob manifest (YAML), validated; with --to-rest, read a manifest and print the body.",
    )
    convert.add_argument("file", type=Path, metavar="FILE", help="the body or manifest ('-' for stdin)")
    convert.add_argument("--to-rest", action="store_true", help="manifest -> REST body (JSON)")
    convert.add_argument("-n", "--namespace", help="namespace to write into the manifest")
    convert.set_defaults(handler=_convert)


def _read(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    if not path.is_file():
        raise ConfigurationError(f"no such file: {path}", field=str(path))
    return path.read_text()


def _describe(obj: dict[str, Any]) -> str:
    name = (obj.get("metadata") or {}).get("name") or "<unnamed>"
    return f"{obj.get('kind', '<no kind>')}/{name}"


def _validate(args: argparse.Namespace) -> int:
    # Imported here, not at the top: every `t1` start-up builds the parser of every verb, and the
    # schema and CEL machinery is only needed by these two.
    from tensorone.api.admission import validate

    invalid = 0
    for path in args.files:
        try:
            objects = load_manifests(_read(path))
        except ConfigurationError as error:
            print(f"{path}: {error}")
            invalid += 1
            continue
        if not objects:
            print(f"{path}: no objects")
            invalid += 1
        for obj in objects:
            try:
                validate(obj)
            except ValidationFailed as failed:
                invalid += 1
                print(f"{path}: {_describe(obj)}: invalid")
                for problem in failed.errors:
                    print(f"  {problem}")
            else:
                print(f"{path}: {_describe(obj)}: OK")
    return 1 if invalid else 0


def _convert(args: argparse.Namespace) -> int:
    from tensorone.api.admission import validate
    from tensorone.api.rest import rest_from_job, validated_job_from_rest

    text = _read(args.file)
    if args.to_rest:
        jobs = [obj for obj in load_manifests(text) if obj.get("kind") == "TrainingJob"]
        if len(jobs) != 1:
            raise ConfigurationError(f"expected exactly one TrainingJob in {args.file}, found {len(jobs)}")
        validate(jobs[0])
        print(json.dumps(rest_from_job(jobs[0]), indent=2))
        return 0
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{args.file} is not JSON: {error}") from error
    try:
        manifest = validated_job_from_rest(body, namespace=args.namespace)
    except ValidationFailed as failed:
        print(f"{args.file}: invalid create-job body", file=sys.stderr)
        for problem in failed.errors:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(dump_manifest(manifest), end="")
    return 0
