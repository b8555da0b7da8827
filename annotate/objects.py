"""The S3 side of a store (`s3://bucket/prefix`): the client, listings, footer checks, errors.

One client for everything: an fsspec `s3fs.S3FileSystem`. Prefkit writes parts with it (one PUT per
part) and hands the same filesystem to DuckDB (`register_filesystem`), so `read_parquet('s3://…')`
needs no DuckDB extension: DuckDB 2.0 has no built-in httpfs and would download it on its first
`s3://` read, which fails on a machine that reaches only its storage endpoint (docs/scaling.md).

Settings come from the usual AWS variables (and ~/.aws files) through botocore, plus:
- `PREFKIT_S3_ENDPOINT` (else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`): an S3-compatible
  service such as MinIO, Ceph, R2 or SeaweedFS;
- `AWS_REGION` (else `AWS_DEFAULT_REGION`, else us-east-1);
- short timeouts and 3 attempts (`AWS_MAX_ATTEMPTS` overrides), so a wrong endpoint fails in
  seconds with one line rather than hanging.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ENDPOINT_VARIABLES = ("PREFKIT_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
SMALL_PART = 1 << 20  # parts up to this size are checked from one GET of the whole object


def endpoint() -> str | None:
    """The endpoint the variables name, or None for AWS itself."""
    for name in ENDPOINT_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return None


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def split_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix"); the prefix may be empty."""
    rest = url.split("://", 1)[1].strip("/")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def state_key(url: str) -> str:
    """A folder name for a remote store's local state: the bucket, and a hash of endpoint + URL (the
    same bucket name on two services is two stores)."""
    bucket, _ = split_url(url)
    digest = hashlib.sha256(f"{endpoint() or 'aws'}\n{url}".encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in bucket)[:40]
    return f"{safe}-{digest}"


_FILESYSTEMS: dict[tuple[str | None, ...], Any] = {}


def filesystem() -> Any:
    """An s3fs filesystem for the environment's settings (no listing cache: other writers add parts).
    One per process and setting: making one (a botocore session, credentials) costs far more than a
    request, and the app opens the store on every page."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_MAX_ATTEMPTS")
    key = (str(os.getpid()), endpoint(), region(), *(os.environ.get(n) for n in names))  # not across a fork
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = _new_filesystem()
    return _FILESYSTEMS[key]


def _new_filesystem() -> Any:
    import s3fs

    config: dict[str, Any] = {"connect_timeout": 5, "read_timeout": 60}
    if not os.environ.get("AWS_MAX_ATTEMPTS"):
        config["retries"] = {"max_attempts": 3, "mode": "standard"}
    client: dict[str, Any] = {"region_name": region()}
    if endpoint():
        client["endpoint_url"] = endpoint()
    fs = s3fs.S3FileSystem(
        client_kwargs=client, config_kwargs=config, skip_instance_cache=True, use_listings_cache=False
    )
    fs.retries = 2  # s3fs's own retries of read errors, on top of botocore's attempts
    return fs


@dataclass(frozen=True)
class Entry:
    """One object: its key (`bucket/key`, as s3fs names it), size and ETag."""

    path: str
    size: int
    etag: str

    @property
    def url(self) -> str:
        return f"s3://{self.path}"


def list_objects(fs: Any, bucket: str, prefix: str, limit: int | None = None) -> list[Entry]:
    """Every object whose key starts with `prefix`, in key order (one LIST request per 1000)."""
    entries: list[Entry] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if limit:
        kwargs["MaxKeys"] = limit
    while True:
        page = fs.call_s3("list_objects_v2", **kwargs)
        for obj in page.get("Contents", []):
            entries.append(Entry(f"{bucket}/{obj['Key']}", int(obj["Size"]), str(obj.get("ETag", ""))))
        if (limit and len(entries) >= limit) or not page.get("IsTruncated"):
            return entries
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def check_bucket(fs: Any, bucket: str) -> None:
    """Raise (through `explain`) when the bucket is missing, the credentials are refused or the
    endpoint cannot be reached: one HEAD request."""
    fs.call_s3("head_bucket", Bucket=bucket)


def fetch_for_check(fs: Any, entry: Entry, deep: bool) -> bytes:
    """What `schema_of` needs of an object: all of it when `deep` or small (one GET), else its
    Parquet footer alone (one ranged GET, a second only when the footer is over 64 KiB)."""
    if deep or entry.size <= SMALL_PART:
        return fs.cat_file(entry.path)
    tail = fs.cat_file(entry.path, start=entry.size - (1 << 16))
    length = int.from_bytes(tail[-8:-4], "little") + 8
    if tail[-4:] == b"PAR1" and len(tail) < length <= entry.size:
        tail = fs.cat_file(entry.path, start=entry.size - length)
    return b"PAR1" + tail[-length:] if len(tail) >= length else tail


def schema_of(data: bytes, deep: bool) -> pa.Schema:
    """The schema of Parquet `data` (a whole file, or its magic number + footer: the footer is all a
    schema needs); `deep` also decodes every page. Raises pyarrow's errors (some are plain OSError)."""
    if deep:
        pq.read_table(pa.BufferReader(data))
    return pq.read_schema(pa.BufferReader(data))


class PartCache:
    """Small parts already fetched and parsed, by (URL, size, ETag): an object under one key and
    ETag never changes, so a long-running reader (the app) fetches each small part once. Least
    recently used parts go first once `budget` bytes of Arrow data are held."""

    def __init__(self, budget: int = 256 << 20):
        self.budget = budget
        self.held = 0
        self.tables: OrderedDict[tuple[str, int, str], pa.Table] = OrderedDict()
        self.lock = threading.Lock()  # the app's sessions read from several threads

    def get(self, key: tuple[str, int, str]) -> pa.Table | None:
        with self.lock:
            table = self.tables.get(key)
            if table is not None:
                self.tables.move_to_end(key)
            return table

    def put(self, key: tuple[str, int, str], table: pa.Table) -> None:
        with self.lock:
            if key not in self.tables:
                self.tables[key] = table
                self.held += table.nbytes
            while self.held > self.budget and len(self.tables) > 1:
                _, old = self.tables.popitem(last=False)
                self.held -= old.nbytes

    def clear(self) -> None:
        with self.lock:
            self.tables.clear()
            self.held = 0


def fetch_many(fs: Any, paths: list[str]) -> dict[str, bytes | BaseException]:
    """Every object in `paths`, fetched concurrently (s3fs runs the GETs together on its event loop);
    a failed one maps to its exception."""
    if not paths:
        return {}
    # cat_ranges, not cat: cat expands glob characters in the keys (a prefix `g[1]`)
    return dict(zip(paths, fs.cat_ranges(paths, None, None, on_error="return"), strict=True))


def delete(fs: Any, paths: list[str]) -> None:
    """Delete objects by exact key (one DeleteObjects request per 1000). Not `fs.rm`: it expands
    glob characters, so a part under the prefix `g[1]` would be missed (or one under `g1` hit)."""
    for start in range(0, len(paths), 1000):
        chunk = paths[start : start + 1000]
        bucket = chunk[0].split("/", 1)[0]
        keys = [{"Key": p.split("/", 1)[1]} for p in chunk]
        answer = fs.call_s3("delete_objects", Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise OSError(f"cannot delete {first.get('Key')}: {first.get('Code')} {first.get('Message', '')}")


def copy(fs: Any, source: str, target: str) -> None:
    """Copy one object by exact key, on the server."""
    bucket, key = target.split("/", 1)
    src_bucket, src_key = source.split("/", 1)
    fs.call_s3("copy_object", Bucket=bucket, Key=key, CopySource={"Bucket": src_bucket, "Key": src_key})


def explain(exc: BaseException, url: str) -> str | None:
    """One line saying what to fix for an S3 failure, or None when `exc` is not one."""
    from botocore import exceptions as be

    where = endpoint() or "AWS S3"
    bucket, _ = split_url(url)
    text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if isinstance(exc, (be.NoCredentialsError, be.PartialCredentialsError)):
        return f"{url}: no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    if isinstance(exc, (be.EndpointConnectionError, be.ConnectTimeoutError, be.ConnectionClosedError)):
        return (
            f"{url}: cannot reach the S3 endpoint {where}: check PREFKIT_S3_ENDPOINT / AWS_ENDPOINT_URL "
            "and that the service is running"
        )
    code = _code(exc)
    if code in {"NoSuchBucket", "404", "NotFound"} or (isinstance(exc, FileNotFoundError) and "bucket" in text.lower()):
        return f"{url}: the bucket {bucket!r} does not exist at {where}: create it, or fix --store"
    if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AccessDenied", "InvalidToken"} or (
        isinstance(exc, PermissionError)
    ):
        return (
            f"{url}: {where} refused the credentials ({code or text}): check AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and that they may use this bucket"
        )
    if isinstance(exc, (be.BotoCoreError, be.ClientError)) or isinstance(exc, OSError):
        return f"{url}: S3 request failed at {where} ({text})"
    return None


def _code(exc: BaseException) -> str:
    """The S3 error code of a botocore ClientError, also when s3fs wrapped it in an OSError."""
    for e in (exc, exc.__cause__, exc.__context__):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
    return ""
