"""Safe writes: a file or folder appears whole under its final name, or not at all.

One mechanism for every writer in prefkit (store parts, curations, exports, the reference cache,
checkpoints, the app's demo copy):

1. write to a temporary beside the final name, `.<final-name>.<pid>.<random>.tmp`, in the same
   folder (a rename is atomic only within one file system);
2. flush and fsync it (a folder: every file and folder in it);
3. rename it over the final name, then fsync the folder, so the rename itself survives a power cut.

A folder cannot be renamed over a non-empty one, so an old folder first moves aside to
`.<final-name>.<pid>.<random>.old` and is removed once the new one is in place.

`clean_leftovers(folder)` removes what a writer that died mid-write left in `folder`; every writer
calls it when it opens its folder. Leftovers carry their writer's pid, so only those of dead processes
go (never a file another live process is still writing), and an old folder moved aside just before a
crash goes back to its name when the new one never arrived: a crash leaves the old version or the new
one, never neither.

Temporary files are created with O_EXCL | O_NOFOLLOW (never through a planted link) and the mode the
caller asks for (PRIVATE_FILE for the store); the umask applies as with `open`.

This module is a leaf: it imports nothing else of prefkit, so every stage may use it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
PUBLIC_DIR, PUBLIC_FILE = 0o777, 0o666  # before the umask, as `mkdir` and `open` do

# `.<final>.<pid>.<random>.tmp|old`; the random part is optional so that a store written before this
# module (`.<stem>.<pid>.tmp`) is still cleaned.
_LEFTOVER = re.compile(r"^\.(?P<final>.+?)\.(?P<pid>\d+)(?:\.[0-9a-f]{8})?\.(?P<kind>tmp|old)$")
_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def temp_path(final: str | os.PathLike, kind: str = "tmp") -> Path:
    """A fresh temporary name beside `final` (nothing is created)."""
    final = Path(final)
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.{kind}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a temporary's writer, say)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make the names in `folder` (a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike, mode: int | None = None) -> None:
    """fsync the file `path` (never through a link), first setting its mode when `mode` is given."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """fsync every file and folder under `folder`, deepest first, then `folder` itself."""
    for here, _dirs, names in os.walk(folder, topdown=False):
        for name in names:
            path = os.path.join(here, name)
            if not os.path.islink(path):
                fsync_file(path)
        fsync_dir(here)


def create_new(path: str | os.PathLike, mode: int = PUBLIC_FILE) -> IO[bytes]:
    """Open a new file `path` for binary writing: it must not exist yet, and is never a link."""
    return os.fdopen(os.open(path, _O_NEW, mode), "wb")


def discard(tmp: str | os.PathLike) -> None:
    """Remove a temporary file or folder (gone already is fine)."""
    tmp = Path(tmp)
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def commit(tmp: str | os.PathLike, final: str | os.PathLike, *, sync_folder: bool = True, replace: bool = True) -> None:
    """Rename the finished (already fsynced) temporary `tmp` over `final`. A folder in the way moves
    aside first and is removed only once `tmp` has its name. `sync_folder=False` leaves the folder's
    fsync to the caller (several commits in one folder need one). `replace=False` keeps a `final`
    that exists (another process made it first): FileExistsError, and `tmp` stays for the caller."""
    tmp, final = Path(tmp), Path(final)
    if not replace:
        _rename_new(tmp, final)
        if sync_folder:
            fsync_dir(final.parent)
        return
    old = None
    if tmp.is_dir() and final.is_dir() and not final.is_symlink():
        old = temp_path(final, "old")
        os.rename(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)  # the new one could not take the name: the old one keeps it
        raise
    if sync_folder or old is not None:
        fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _rename_new(tmp: Path, final: Path) -> None:
    """Give `tmp` the name `final` only if nothing has that name, in one step (no check-then-rename race)."""
    try:
        if tmp.is_dir():
            os.rename(tmp, final)  # fails on a folder that has anything in it
        else:
            os.link(tmp, final, follow_symlinks=False)  # fails on any name that exists
            os.unlink(tmp)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise FileExistsError(errno.EEXIST, "exists already", str(final)) from None
        raise


@contextmanager
def atomic_file(final: str | os.PathLike, *, mode: int = PUBLIC_FILE) -> Iterator[IO[bytes]]:
    """`with atomic_file(path) as fh: fh.write(...)`: `path` gets the bytes written only when the block
    ends without an exception; otherwise nothing changes."""
    tmp = temp_path(final)
    try:
        with create_new(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        commit(tmp, final)
    except BaseException:
        discard(tmp)
        raise


@contextmanager
def atomic_path(final: str | os.PathLike, *, mode: int | None = None) -> Iterator[Path]:
    """For writers that want a path, not a file object (DuckDB's COPY, `torch.save`): yields a temporary
    path to write, then fsyncs it (set to `mode` when given) and renames it over `final`."""
    tmp = temp_path(final)
    try:
        yield tmp
        fsync_file(tmp, mode)
        commit(tmp, final)
    except BaseException:
        discard(tmp)
        raise


@contextmanager
def atomic_dir(final: str | os.PathLike, *, mode: int = PUBLIC_DIR, replace: bool = True) -> Iterator[Path]:
    """`with atomic_dir(folder) as tmp:` fill `tmp`; when the block ends without an exception, it is
    fsynced and takes the name `folder` (replacing an older one; with `replace=False` an existing
    one stays and FileExistsError is raised); otherwise it is removed."""
    tmp = make_temp_dir(final, mode=mode)
    try:
        yield tmp
        fsync_tree(tmp)
        commit(tmp, final, replace=replace)
    except BaseException:
        discard(tmp)
        raise


def make_temp_dir(final: str | os.PathLike, *, mode: int = PUBLIC_DIR) -> Path:
    """A new empty temporary folder beside `final`, for a folder committed later with `commit`."""
    tmp = temp_path(final)
    tmp.mkdir(mode=mode)
    return tmp


def write_bytes(final: str | os.PathLike, data: bytes, *, mode: int = PUBLIC_FILE) -> None:
    with atomic_file(final, mode=mode) as fh:
        fh.write(data)


def write_text(final: str | os.PathLike, text: str, *, mode: int = PUBLIC_FILE, encoding: str = "utf-8") -> None:
    write_bytes(final, text.encode(encoding), mode=mode)


def leftover(name: str) -> tuple[str, int, str] | None:
    """(final name, writer pid, "tmp" or "old") when `name` follows the temporary-name convention."""
    match = _LEFTOVER.match(name)
    return (match["final"], int(match["pid"]), match["kind"]) if match else None


def clean_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of dead writers in `folder`, and put back an old folder a dead writer had
    moved aside when nothing took its name. Returns the paths removed or put back. A missing folder
    has nothing to clean."""
    folder = Path(folder)
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    done = []
    # `.old` first: a folder moved aside is restored before its half-built successor is removed.
    for name in sorted(names, key=lambda n: not n.endswith(".old")):
        parsed = leftover(name)
        if parsed is None or pid_alive(parsed[1]):
            continue
        path = folder / name
        final = folder / parsed[0]
        if parsed[2] == "old" and not (final.exists() or final.is_symlink()):
            try:
                os.rename(path, final)
            except FileNotFoundError:  # another process restored it first
                continue
            done.append(path)
            continue
        if path.exists() or path.is_symlink():
            discard(path)
            done.append(path)
    if done:
        fsync_dir(folder)
    return done


def read_jsonl(path: str | os.PathLike, start: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects on complete lines of `path` from byte `start`; returns (rows, offset to
    continue from). A file still being appended to (a live training run's metrics.jsonl) may end in a
    line without its newline: that line is left for the next call. Lines that are not JSON objects (a
    torn write, a stray line) are skipped, so a reader never fails on a file being written. A missing
    file has no rows yet."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
    except (FileNotFoundError, IsADirectoryError):
        return [], start
    end = data.rfind(b"\n") + 1
    rows = []
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, start + end
