"""The operator's API client against a small HTTP server that records what it was sent."""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import web
from tensorone_operator.kube import KubeApi


async def test_a_rotated_service_account_token_is_read_again(tmp_path: Path) -> None:
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"kind": "ConfigMap", "metadata": {"name": "x"}})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/configmaps/x", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    # As the kubelet projects it: a symlink swapped to a new file on each rotation.
    first, second, token = tmp_path / "token-1", tmp_path / "token-2", tmp_path / "token"
    first.write_text("first-token\n")
    token.symlink_to(first)
    api = KubeApi(f"http://127.0.0.1:{port}", {"Accept": "application/json"}, False, token_file=token)
    try:
        await api.get("v1", "configmaps", "ns", "x")
        await api.get("v1", "configmaps", "ns", "x")
        second.write_text("second-token\n")
        swap = tmp_path / "token.new"
        swap.symlink_to(second)
        os.replace(swap, token)
        await api.get("v1", "configmaps", "ns", "x")
    finally:
        await api.close()
        await runner.cleanup()
    assert seen == ["Bearer first-token", "Bearer first-token", "Bearer second-token"]
