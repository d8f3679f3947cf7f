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


# How many values aliases may add to one document once expanded. Manifests need few aliases (a
# merge key or a repeated block); a few hundred bytes of aliases of aliases can expand to billions
# of values, which would hold ``t1`` (and whatever walks the result) for hours.
MAX_ALIAS_EXPANSION = 10_000
# How deep lists and mappings may nest. A TrainingJob is under 10 levels deep; the YAML reader
# recurses once per level and would otherwise die on a few kilobytes of brackets.
MAX_NESTING = 100


class _KubectlYamlLoader(yaml.SafeLoader):
    """YAML as kubectl reads it (go-yaml v2): ``2e-4`` is a number (PyYAML alone reads a string
    there), timestamps stay strings; unquoted yes/no/on/off are booleans in both. Like go-yaml, it
    refuses an anchor that contains itself and a document that aliases expand beyond a bound."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """A node, once it is known to nest no deeper than MAX_NESTING."""
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                mark = self.peek_event().start_mark
                raise _UnboundedDocument(
                    f"lists and mappings nest deeper than {MAX_NESTING} levels at line {mark.line + 1}, "
                    f"column {mark.column + 1}"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        """The document's value, once its aliases are known to expand to a bounded size."""
        written, expanded = _value_counts(node)
        if expanded - written > MAX_ALIAS_EXPANSION:
            raise _UnboundedDocument(
                f"its aliases expand it to more than {MAX_ALIAS_EXPANSION} values beyond the {written} written; "
                "write the repeated values out or use fewer aliases"
            )
        return super().construct_document(node)


class _UnboundedDocument(yaml.YAMLError):
    """A document nested too deep, whose aliases expand too far, or with an anchor that contains an
    alias of itself: valid YAML that no manifest needs and that would hold or crash the reader."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _value_counts(root: yaml.Node) -> tuple[int, int]:
    """How many values a document's node graph holds as written, and once every alias is expanded
    (each node is counted once, so a bomb costs as much as its text). Depth-first without recursion."""
    expanded: dict[int, int] = {}
    on_path = {id(root)}
    stack = [(root, iter(_children(root)))]
    while stack:
        node, pending = stack[-1]
        child = next(pending, None)
        if child is None:
            stack.pop()
            on_path.discard(id(node))
            expanded[id(node)] = 1 + sum(expanded[id(part)] for part in _children(node))
        elif id(child) in on_path:
            mark = child.start_mark
            raise _UnboundedDocument(
                f"the anchored value at line {mark.line + 1}, column {mark.column + 1} contains an alias of itself"
            )
        elif id(child) not in expanded:
            on_path.add(id(child))
            stack.append((child, iter(_children(child))))
    return len(expanded), expanded[id(root)]


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
    documents: list[Any] = []
    loader = _KubectlYamlLoader(text)  # a SafeLoader subclass: no arbitrary objects
    try:
        while loader.check_data():
            documents.append(loader.get_data())
    except _UnboundedDocument as error:
        raise ConfigurationError(f"document {len(documents) + 1}: {error}") from error
    except yaml.YAMLError as error:
        raise ConfigurationError(f"not valid YAML: {error}") from error
    finally:
        loader.dispose()
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
        "problem with its field, and a TrainingJob the operator would refuse (a model type this release's "
        "trainer does not train); exits 1 if any object is invalid or refused.",
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


def document_namespace(document: dict[str, Any], namespace_option: str | None) -> str | None:
    """The namespace a manifest's object goes to: its own metadata.namespace, or ``-n``'s (None:
    the client's default). Both given and different is refused, as kubectl refuses it."""
    own = (document.get("metadata") or {}).get("namespace")
    if own and namespace_option and own != namespace_option:
        raise ConfigurationError(
            f"{_describe(document)} names namespace {own!r} and -n says {namespace_option!r}; "
            "drop one of them, or make them agree",
            field="metadata.namespace",
        )
    return str(own) if own else namespace_option


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
    checked: list[tuple[Path, dict[str, Any], dict[str, Any] | ValidationFailed]] = []
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
                checked.append((path, obj, validate(obj)))
            except ValidationFailed as failed:
                checked.append((path, obj, failed))
    # A job's Dataset given in the same files is checked with it, as the operator will.
    datasets = {
        _key(result): result for _, _, result in checked if isinstance(result, dict) and result.get("kind") == "Dataset"
    }
    for path, obj, result in checked:
        if isinstance(result, ValidationFailed):
            invalid += 1
            print(f"{path}: {_describe(obj)}: invalid")
            for problem in result.errors:
                print(f"  {problem}")
            continue
        refused = _refused_by_the_operator(result, datasets)
        if refused:
            invalid += 1
            print(f"{path}: {_describe(obj)}: valid for the API server, refused by the operator")
            for reason in refused:
                print(f"  {reason.field}: {reason.message}")
        else:
            print(f"{path}: {_describe(obj)}: OK")
    return 1 if invalid else 0


def _key(obj: dict[str, Any]) -> tuple[str | None, str]:
    metadata = obj.get("metadata") or {}
    return metadata.get("namespace"), str(metadata.get("name") or "")


def _refused_by_the_operator(
    obj: dict[str, Any], datasets: dict[tuple[str | None, str], dict[str, Any]]
) -> list[ConfigurationError]:
    """What the operator would refuse in a valid TrainingJob: a model type or architecture the
    trainer of this release does not run, and, when its Dataset is among the files, the job
    against that Dataset (format, columns, vision task)."""
    from tensorone.api.preflight import configuration_errors
    from tensorone.api.trainable import untrainable_error
    from tensorone.api.v1alpha1 import Dataset, TrainingJobSpec

    if obj.get("kind") != "TrainingJob":
        return []
    spec = TrainingJobSpec.model_validate(obj["spec"])
    untrainable = untrainable_error(spec)
    if untrainable is not None:
        return [untrainable]
    namespace, _ = _key(obj)
    found = datasets.get((namespace, spec.dataset_id))
    if found is None and namespace is None:
        found = next((d for (_, name), d in datasets.items() if name == spec.dataset_id), None)
    return [] if found is None else configuration_errors(spec, Dataset.model_validate(found))


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
    except RecursionError as error:
        raise ConfigurationError(f"{args.file}: arrays and objects nest too deep to read") from error
    try:
        manifest = validated_job_from_rest(body, namespace=args.namespace)
    except ValidationFailed as failed:
        print(f"{args.file}: invalid create-job body", file=sys.stderr)
        for problem in failed.errors:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(dump_manifest(manifest), end="")
    return 0
