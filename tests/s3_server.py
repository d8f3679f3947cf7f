"""A real S3-compatible server on loopback for the tests of spec.output and ``t1 download``: moto's
standalone server (the same HTTP server as ``moto_server``), in a thread of the test process, with
one bucket. The clients reach it over HTTP like any S3 endpoint.

Unlike AWS S3, moto does not refuse a PUT whose body differs from its x-amz-checksum-sha256: the
tests check what the uploader itself verifies (the checksum the store reports, or the bytes read
back), by reading the store."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

BUCKET = "models"
ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self) -> Any:
        """A client of the server with the test key pair (a store that ignores the signature)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``prefix``, by key."""
        s3 = self.client()
        listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents") or []
        return {item["Key"]: s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read() for item in listing}


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """A fresh server (its own port, empty store) with the bucket ``BUCKET``."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        running = S3Server(endpoint_url=f"http://{host}:{port}")
        # moto keeps its store per process, not per server: start from an empty one.
        urllib.request.urlopen(urllib.request.Request(f"{running.endpoint_url}/moto-api/reset", method="POST"))
        running.client().create_bucket(Bucket=BUCKET)
        yield running
    finally:
        server.stop()
