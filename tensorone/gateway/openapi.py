"""The gateway's OpenAPI document, committed at docs/gateway-openapi.json and drift-checked.

``python -m tensorone.gateway.openapi`` writes it; ``--check`` fails when the committed file
differs from what the app serves at ``/openapi.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tensorone.gateway.app import GatewayConfig, create_app

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "gateway-openapi.json"


def document() -> dict[str, Any]:
    """What the app serves at /openapi.json (the API server's address is not part of it)."""
    return create_app(GatewayConfig(api_server="https://kubernetes.default.svc")).openapi()


def rendered() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tensorone.gateway.openapi", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed document is stale")
    args = parser.parse_args(argv)
    text = rendered()
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{DOCUMENT} is stale: run python -m tensorone.gateway.openapi", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
