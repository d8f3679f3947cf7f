"""Projected service-account tokens, as the API server issues them to a kubelet for a pod's
``serviceAccountToken`` volume source, and as a server that receives one checks it.

A real token is a JWT the API server signs with its service-account key; a receiver checks its
signature (Trainer v2.2's status server through the cluster's OIDC discovery), its expiry, its
audience and its ``kubernetes.io`` claims. Here the JWT is signed with HMAC-SHA256 under a key of
the issuer's own: the same claims, the same checks, no key material shared with anything else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    """Issues and verifies the projected tokens of one emulated cluster."""

    def __init__(self, issuer: str = "https://kubernetes.default.svc.cluster.local") -> None:
        self.issuer = issuer
        self._key = secrets.token_bytes(32)

    def issue(
        self, *, namespace: str, pod: str, service_account: str, audience: str, expiration_seconds: int = 3600
    ) -> str:
        """A token for ``pod`` of ``namespace`` running as ``service_account``, for ``audience``."""
        issued = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": [audience],
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "iat": issued,
            "nbf": issued,
            "exp": issued + expiration_seconds,
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": pod},
                "serviceaccount": {"name": service_account},
            },
        }
        header = _encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _encode(json.dumps(claims, separators=(",", ":")).encode())
        return f"{header}.{payload}.{self._signature(header, payload)}"

    def verify(self, token: str, *, audience: str) -> dict[str, Any] | None:
        """The claims of ``token`` when this issuer signed it, it has not expired and it is for
        ``audience``; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3 or not hmac.compare_digest(parts[2], self._signature(parts[0], parts[1])):
            return None
        try:
            claims: dict[str, Any] = json.loads(_decode(parts[1]))
        except ValueError:
            return None
        if claims.get("iss") != self.issuer or audience not in (claims.get("aud") or []):
            return None
        if not claims.get("nbf", 0) <= time.time() < claims.get("exp", 0):
            return None
        return claims

    def _signature(self, header: str, payload: str) -> str:
        return _encode(hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
