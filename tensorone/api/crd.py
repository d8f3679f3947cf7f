"""Generate the CustomResourceDefinitions from the pydantic models.

``python -m tensorone.api.crd`` writes crds/ (and the Helm chart's copy); ``--check`` exits 1 when
a committed file differs from what the models generate. The pydantic JSON schema is turned into a
Kubernetes *structural* schema: references inlined, ``anyOf`` null branches folded away,
``additionalProperties: false`` dropped (the API server prunes and, with strict field validation,
refuses unknown fields), free-form objects marked ``x-kubernetes-preserve-unknown-fields``, and
JSON-Schema-2020 exclusive bounds rewritten in the OpenAPI v3.0 form the API server expects.

Both refuse CEL rules the API server would refuse when the CRD is created: a rule that does not
compile, or that selects a field the schema does not have (``self.config.baseModle``); the
generator then writes nothing and names each rule.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tensorone.api import DATASETS, GROUP, TRAININGJOBS, VERSION
from tensorone.api.cel import CEL_VISIBLE_METADATA, cel_environment, compiled_rule
from tensorone.api.v1alpha1 import Dataset, TrainingJob
from tensorone.errors import field_path

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
CHART_CRD_DIR = REPO_ROOT / "charts" / "tensorone-training-operator" / "crds"

# Keys of pydantic's output that a CRD schema does not carry.
_DROPPED_KEYS = {"title", "$defs", "discriminator"}


@dataclass(frozen=True)
class Kind:
    """What the generator needs to know about one kind besides its model."""

    model: type[BaseModel]
    kind: str
    plural: str
    short_names: list[str] = field(default_factory=list)
    printer_columns: list[dict[str, Any]] = field(default_factory=list)


KINDS = [
    Kind(
        model=TrainingJob,
        kind="TrainingJob",
        plural=TRAININGJOBS,
        short_names=["tj"],
        printer_columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Phase of the job."},
            {"name": "Model", "type": "string", "jsonPath": ".spec.modelType", "description": "Model type."},
            {"name": "GPU", "type": "string", "jsonPath": ".spec.gpuType", "description": "GPU type (empty: CPU)."},
            {"name": "Workers", "type": "integer", "jsonPath": ".spec.maxWorkers", "description": "Training pods."},
            {
                "name": "Progress",
                "type": "number",
                "jsonPath": ".status.progress.percentage",
                "description": "Steps done, in percent.",
            },
            {
                "name": "Loss",
                "type": "number",
                "jsonPath": ".status.metrics.currentLoss",
                "description": "Latest training loss.",
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    ),
    Kind(
        model=Dataset,
        kind="Dataset",
        plural=DATASETS,
        printer_columns=[
            {"name": "Format", "type": "string", "jsonPath": ".spec.format", "description": "File format."},
            {
                "name": "Ready",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                "description": "Whether the source is usable.",
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    ),
]


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The openAPIV3Schema of a kind: apiVersion, kind, metadata, and spec/status from the model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    properties = raw["properties"]
    root: dict[str, Any] = {
        "type": "object",
        "description": _clean_text(raw.get("description", "")),
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object.",
            },
            "kind": {
                "type": "string",
                "description": "Kind is a string value representing the REST resource this object represents.",
            },
            # Only name and generateName may be described under metadata; they are typed here so
            # root-level CEL rules can point their fieldPath at metadata.name, and bounded by the
            # API server's own 253-character limit so the rules' cost estimate is bounded too.
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "maxLength": 253,
                        "description": "Name of the object, unique in its namespace.",
                    },
                    "generateName": {
                        "type": "string",
                        "maxLength": 253,
                        "description": "Prefix of a server-generated name, used when name is not set.",
                    },
                },
            },
            "spec": _convert(properties["spec"], defs),
            "status": _convert(properties["status"], defs),
        },
        "required": ["spec"],
    }
    rules = raw.get("x-kubernetes-validations")
    if rules:
        root["x-kubernetes-validations"] = rules
    return root


def resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline a ``$ref`` (keeping the referring node's own keys, which win) and fold ``anyOf``
    null branches and single-element ``allOf`` wrappers into the one real branch."""
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        target.update(node)
        node = target
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in node:
            branches = [b for b in node.pop(combinator) if b.get("type") != "null"]
            if len(branches) != 1:
                raise ValueError(f"cannot express {combinator} with {len(branches)} branches structurally")
            inner = resolve(branches[0], defs)
            inner.update(node)
            node = inner
    return node


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in resolve(node, defs).items():
        if key in _DROPPED_KEYS or (key == "default" and value is None):
            continue
        out.update(_converted_keyword(key, value, defs))
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    # Required properties with a default are filled by the API server, so they are not required.
    if "required" in out:
        required = [name for name in out["required"] if "default" not in out["properties"][name]]
        if required:
            out["required"] = required
        else:
            del out["required"]
    return _ordered(out)


def _converted_keyword(key: str, value: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """One keyword of a pydantic schema node in its structural form (nothing when it is dropped)."""
    if key == "description":
        return {key: _clean_text(value)}
    if key == "properties":
        return {key: {name: _convert(sub, defs) for name, sub in value.items()}}
    if key == "items":
        return {key: _convert(value, defs)}
    if key == "additionalProperties":
        if value is True:
            return {"x-kubernetes-preserve-unknown-fields": True}
        # False: dropped; unknown fields are pruned or refused by the API server.
        return {key: _convert(value, defs)} if isinstance(value, dict) else {}
    if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
        bound = "minimum" if key == "exclusiveMinimum" else "maximum"
        return {bound: value, key: True}
    return {key: value}


_KEY_ORDER = ["description", "type", "format", "enum", "default"]


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """Stable, readable key order: description and type first, nested properties last."""
    head = [k for k in _KEY_ORDER if k in node]
    tail = [k for k in ("properties", "items", "additionalProperties", "required") if k in node]
    middle = sorted(k for k in node if k not in head and k not in tail)
    return {k: node[k] for k in head + middle + tail}


def _clean_text(text: str) -> str:
    return " ".join(text.split())


def crd_for(kind: Kind) -> dict[str, Any]:
    """The whole CustomResourceDefinition object of one kind."""
    singular = kind.kind.lower()
    names: dict[str, Any] = {
        "kind": kind.kind,
        "listKind": f"{kind.kind}List",
        "plural": kind.plural,
        "singular": singular,
        "categories": ["tensorone"],
    }
    if kind.short_names:
        names["shortNames"] = kind.short_names
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "annotations": {"tensorone.ai/generated-by": "python -m tensorone.api.crd"},
        },
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind.printer_columns,
                    "schema": {"openAPIV3Schema": structural_schema(kind.model)},
                }
            ],
        },
    }


def file_name(kind: Kind) -> str:
    return f"{GROUP}_{kind.plural}.yaml"


def render(kind: Kind) -> str:
    header = "# Generated by `python -m tensorone.api.crd` from tensorone/api/v1alpha1. Do not edit.\n"
    return header + yaml.safe_dump(crd_for(kind), sort_keys=False, width=120, allow_unicode=True)


def generated_files() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    return {file_name(kind): render(kind) for kind in KINDS}


def load_crds(directory: Path = CRD_DIR) -> dict[str, dict[str, Any]]:
    """Kind -> CRD object, read from YAML files in a directory (the committed ones by default)."""
    crds: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        crds[obj["spec"]["names"]["kind"]] = obj
    return crds


# --- soundness of the CEL rules ------------------------------------------------------------------


def rule_problems(crd: dict[str, Any]) -> list[str]:
    """Problems the API server would report when the CRD is created: rules that do not compile,
    and field selections (``self.config.baseModle``) that name no property of the schema."""
    problems: list[str] = []
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        problems += _node_rule_problems(schema, (), root=True)
    return problems


def _node_rule_problems(schema: Mapping[str, Any], path: tuple[str | int, ...], *, root: bool = False) -> list[str]:
    problems: list[str] = []
    for entry in schema.get("x-kubernetes-validations") or []:
        rule = entry["rule"]
        try:
            compiled_rule(rule)
        except Exception as error:  # celpy raises lark's and its own parse errors
            problems.append(f"{field_path(path)}: rule {rule!r} does not compile: {error}")
            continue
        for chain in _selections(cel_environment().compile(rule)):
            missing = _unresolved(chain, schema, root=root)
            if missing:
                problems.append(f"{field_path(path)}: rule {rule!r} selects undefined field {missing}")
    for key, sub in (schema.get("properties") or {}).items():
        problems += _node_rule_problems(sub, (*path, key))
    if isinstance(schema.get("items"), dict):
        problems += _node_rule_problems(schema["items"], (*path, 0))
    if isinstance(schema.get("additionalProperties"), dict):
        problems += _node_rule_problems(schema["additionalProperties"], (*path, "*"))
    return problems


def _selections(tree: Any) -> list[list[str]]:
    """Every ``self.a.b`` / ``oldSelf.a.b`` chain in a parsed rule, as ['a', 'b']."""
    chains: list[list[str]] = []
    for node in tree.iter_subtrees():
        if node.data != "member_dot":
            continue
        chain = _chain(node)
        # Keep only maximal chains: skip a member_dot that is the inner part of a longer one.
        if chain is not None and all(chain != other[: len(chain)] for other in chains):
            chains = [c for c in chains if c != chain[: len(c)]]
            chains.append(chain)
    return chains


def _chain(node: Any) -> list[str] | None:
    """The names selected from ``self`` or ``oldSelf`` by a member_dot node; None when it selects
    from anything else."""
    names: list[str] = []
    while True:
        if node.data == "member_dot":
            inner, name = node.children
            names.insert(0, str(name))
            node = inner
        elif node.data in ("member", "primary") and len(node.children) == 1 and hasattr(node.children[0], "data"):
            node = node.children[0]
        elif node.data == "ident":
            token = node.children[0]
            if getattr(token, "type", None) == "IDENT" and str(token) in ("self", "oldSelf"):
                return names
            return None
        else:
            return None


def _unresolved(chain: list[str], schema: Mapping[str, Any], *, root: bool) -> str | None:
    """The first name of ``chain`` the schema does not declare, or None."""
    node: Mapping[str, Any] = schema
    for depth, name in enumerate(chain):
        if root and depth == 0 and name == "metadata":
            return None if len(chain) > 1 and chain[1] in CEL_VISIBLE_METADATA else ".".join(chain[:2])
        if node.get("x-kubernetes-preserve-unknown-fields") and not node.get("properties"):
            return None
        properties = node.get("properties")
        if properties is None or name not in properties:
            return ".".join(chain[: depth + 1])
        node = properties[name]
    return None


def generated_rule_problems() -> list[str]:
    """The rule problems of every CRD the models generate, each prefixed with its kind."""
    return [f"{kind.kind}: {problem}" for kind in KINDS for problem in rule_problems(crd_for(kind))]


# --- the command ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tensorone.api.crd", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed CRD differs from the models")
    args = parser.parse_args(argv)
    problems = generated_rule_problems()
    if problems:
        print("CEL rules the API server would refuse (fix them in the models):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    stale: list[str] = []
    for directory in (CRD_DIR, CHART_CRD_DIR):
        for name, text in generated_files().items():
            path = directory / name
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path.relative_to(REPO_ROOT)))
            else:
                directory.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if stale:
        print("out of date (run `python -m tensorone.api.crd`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
