"""docs/api.md: its field reference is generated from the models and kept current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tensorone.api.crd import KINDS, structural_schema
from tensorone.api.docs import DOC_PATH, MARKER, document, main


def test_committed_reference_is_what_the_models_generate() -> None:
    current = DOC_PATH.read_text()
    assert current == document(current), "run `python -m tensorone.api.docs`"
    assert main(["--check"]) == 0


def test_hand_written_part_is_kept_and_the_reference_follows_the_marker() -> None:
    regenerated = document("# Intro\n\nWords.\n\n" + MARKER + "\nstale table\n")
    assert regenerated.startswith("# Intro\n\nWords.\n\n" + MARKER)
    assert "stale table" not in regenerated


def test_every_field_of_every_kind_is_documented() -> None:
    text = DOC_PATH.read_text()

    def paths(node: dict[str, Any], path: str) -> list[str]:
        found = [path]
        for name, sub in (node.get("properties") or {}).items():
            found += paths(sub, f"{path}.{name}")
        items = node.get("items") or {}
        for name, sub in (items.get("properties") or {}).items():
            found += paths(sub, f"{path}[].{name}")
        return found

    for kind in KINDS:
        schema = structural_schema(kind.model)
        for part in ("spec", "status"):
            for path in paths(schema["properties"][part], part):
                assert f"| `{path}`" in text, f"{kind.kind}: {path} missing from docs/api.md"


def test_a_file_without_the_marker_is_refused() -> None:
    with pytest.raises(ValueError, match="marker"):
        document("# only prose\n")


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "api.md"
    stale.write_text("# Intro\n" + MARKER + "\nold\n")
    assert main(["--check", "--path", str(stale)]) == 1
    assert main(["--path", str(stale)]) == 0
    assert main(["--check", "--path", str(stale)]) == 0
