"""A real S3-protocol server for the tests: moto's S3 service (`python -m moto.server`) as a
child process on a free 127.0.0.1 port, and the settings and environment that point
RESULTS_STORAGE=s3 at one of its buckets. moto, boto3 and flask come with the test extra."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests import processes

ACCESS_KEY = "tweezer-test"
SECRET_KEY = "tweezer-test-secret"
REGION = "us-east-1"
PREFIX = "tweezer-results"


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; a server bound to it right after gets it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class S3Server:
    """`python -m moto.server -H 127.0.0.1 -p PORT`: S3 over HTTP, in its own process."""

    def __init__(self, log_path: Path, *, timeout: float = 30) -> None:
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto.server exited early:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto.server not listening after {timeout}s:\n{log_path.read_text()[-3000:]}")

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self) -> str:
        name = f"tweezer-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def stop(self) -> None:
        processes.stop(self.proc, self.log)


def results_env(endpoint: str, bucket: str) -> dict[str, str]:
    """What an operator sets on every machine for RESULTS_STORAGE=s3 (README "Configuration")."""
    return {
        "RESULTS_STORAGE": "s3",
        "RESULTS_S3_BUCKET": bucket,
        "RESULTS_S3_ENDPOINT_URL": endpoint,
        "RESULTS_S3_REGION": REGION,
        "RESULTS_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "RESULTS_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "RESULTS_S3_PREFIX": PREFIX,
    }


@dataclasses.dataclass
class Bucket:
    """A bucket of the test's S3 server, which RESULTS_STORAGE points at."""

    server: S3Server
    name: str

    @property
    def env(self) -> dict[str, str]:
        return results_env(self.server.endpoint, self.name)

    def keys(self) -> list[str]:
        return self.server.keys(self.name)

    def delete(self, key: str) -> None:
        self.server.client().delete_object(Bucket=self.name, Key=key)
