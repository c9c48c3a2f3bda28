"""A real S3 server on this machine for the object-store tests: moto's, in a subprocess.

s3fs talks to it over HTTP exactly as it would to AWS (``AWS_ENDPOINT_URL``), so the real
s3fs/aiobotocore code runs; only the server is local. Nothing leaves the loopback address.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """``moto.server`` on a free loopback port; ``env`` points boto/s3fs at it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}
        self._fs = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)

    def fs(self):  # type: ignore[no-untyped-def]
        """One s3fs client for the tests' own checks, without a listing cache."""
        if self._fs is None:
            import s3fs

            self._fs = s3fs.S3FileSystem(
                endpoint_url=self.endpoint,
                key="testing",
                secret="testing",
                skip_instance_cache=True,
                use_listings_cache=False,
            )
        return self._fs

    def bucket(self, name: str) -> str:
        self.fs().mkdir(name)
        return f"s3://{name}"

    def upload(self, local: Path, uri: str) -> None:
        fs = self.fs()
        path = uri.split("://", 1)[1]
        if local.is_dir():
            for file in sorted(p for p in local.rglob("*") if p.is_file()):
                fs.put_file(str(file), f"{path}/{file.relative_to(local).as_posix()}")
        else:
            fs.put_file(str(local), path)

    def download(self, uri: str, local: Path) -> Path:
        self.fs().get(uri.split("://", 1)[1] + "/", str(local) + "/", recursive=True)
        return local

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@contextlib.contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """A fresh server, with this process's environment pointing at it (child processes inherit it)."""
    pytest.importorskip(
        "s3fs", reason="object-store tests need the [cloud] extra: pip install 'autoshoot[cloud]'"
    )
    pytest.importorskip("moto", reason="object-store tests need moto[server] (the [dev] extra)")
    import s3fs

    server = S3Server()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    s3fs.S3FileSystem.clear_instance_cache()  # cached filesystems point at an earlier server
    try:
        yield server
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
