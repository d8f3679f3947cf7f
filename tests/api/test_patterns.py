"""The patterns of the CRDs and of the chart's values schema: what they accept, and that a regex
engine that backtracks (Python's, in the SDK, `t1 validate` and the test API server) ends quickly on
any input. The API server and helm use RE2, which cannot backtrack; our own validators can."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tensorone.api.v1alpha1.dataset import PvcSource

REPO = Path(__file__).resolve().parents[2]
# Inputs that make an ambiguous pattern backtrack: long runs of the characters patterns treat
# specially, ending in a character no pattern accepts at the end.
ADVERSARIAL = [
    unit * (1000 // len(unit)) + tail
    for unit in ("a", "a.", "a-", "a/", "/a", ".a", "0", "0.", "a_", "A:")
    for tail in ("!", "\x00", " ", "/")
]


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def every_pattern() -> list[str]:
    found: set[str] = set()
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        for document in yaml.safe_load_all(crd.read_text()):
            found.update(_patterns(document))
    schema = REPO / "charts" / "tensorone-training-operator" / "values.schema.json"
    found.update(_patterns(json.loads(schema.read_text())))
    return sorted(found)


class Backtracking(Exception):
    pass


def _too_slow(*_: Any) -> None:
    raise Backtracking


@pytest.mark.parametrize("pattern", every_pattern())
def test_a_pattern_ends_on_any_input(pattern: str) -> None:
    """Linear patterns take microseconds on these inputs; an ambiguous one (a repeated group whose
    parts can split a run of characters more than one way) takes longer than the universe."""

    compiled = re.compile(pattern)
    previous = signal.signal(signal.SIGALRM, _too_slow)
    try:
        for text in ADVERSARIAL:
            signal.alarm(10)
            try:
                compiled.search(text)
            except Backtracking:
                pytest.fail(f"pattern {pattern!r} backtracks without end on {text[:24]!r}... ({len(text)} chars)")
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_the_patterns_were_found() -> None:
    assert len(every_pattern()) >= 20


@pytest.mark.parametrize("path", ["/", "/data", "/data/", "/data/train.jsonl", "/.hidden", "/a..b", "/...", "/..x/y"])
def test_a_pvc_path_inside_the_claim_is_accepted(path: str) -> None:
    assert PvcSource(claim_name="data", path=path).path == path


@pytest.mark.parametrize(
    "path", ["/..", "/../etc/passwd", "/a/../b", "/a/..", "/./a", "/a/.", "/a/./b", "//", "relative", "/a//b"]
)
def test_a_pvc_path_that_could_leave_the_claim_is_refused(path: str) -> None:
    with pytest.raises(ValidationError, match="path"):
        PvcSource(claim_name="data", path=path)
