"""Small helpers shared by every stage: atomic writes, contained paths, stable seeds, the training dtypes."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from synvita.errors import SynvitaError, UnsafePathError

# Training's `mixed_precision` -> the torch dtype the model is loaded (and evaluated) in.
MIXED_PRECISION_DTYPES = {"no": "float32", "bf16": "bfloat16", "fp16": "float16"}


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` so that readers see the old file or the new one, never half of it."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """The one temp-file-and-replace write: yields a fresh temporary path beside `path` for the
    block to write; if the block succeeds the file replaces `path` (readers see the old file or the
    new one, never half of it), else it is removed. `suffix` lets writers that pick a format by the
    file's ending (e.g. `.mp4.tmp`) have it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike):
    """The same for a folder built by several files (a saved model): yields a private temporary
    folder beside `path`; if the block succeeds it is renamed to `path`. Processes that build the
    same folder at once do not clash: the first rename wins and the others' copies are dropped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        try:
            tmp.rename(path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """The temporary files `atomic_path` left beside `path` when its writer was killed."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one newline-terminated line, all or nothing, flushed to disk.

    A short write (a full disk, a file-size limit) is rolled back, so a journal never holds half a
    line; a torn tail left by a killed writer is cut off before appending, so it cannot glue itself
    to the next line. One writer per file (every worker has its own journal).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = line.encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            size -= len(tail) - (tail.rfind(b"\n") + 1)
            warnings.warn(f"{path}: dropped an unterminated last line (a killed writer left it)")
            os.ftruncate(fd, size)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"{path}: short write ({written} of {len(data)} bytes); disk full?")
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, holder: str):
    """Hold an exclusive lock on `path` (created if missing) for the block; if another process
    holds it, refuse at once with a message naming `holder`. The kernel drops the lock when its
    holder dies, so a killed run never leaves a stale lock behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SynvitaError(f"{path.parent}: {holder} is in use by another running process "
                               f"(it holds {path.name}); wait for it to finish or choose another folder") from None
        yield
    finally:
        os.close(fd)


def stable_seed(*parts: object, bits: int = 31) -> int:
    """A seed derived from names and numbers alone, identical across processes, shards and runs."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (1 << bits)


# The process's umask, read once at import (reading it means setting it; not safe once threads run).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def temp_file(folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """`tempfile.mkstemp`, but with the permissions the user's umask gives (mkstemp's 0600 would
    survive the rename and hide every output from the user's group)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


def read_utf8(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """A text file's contents; bytes that are not UTF-8 are an error naming the file and line."""
    data = Path(path).read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise SynvitaError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start}); save the file as UTF-8") from None


def path_within(root: str | os.PathLike, relpath: str | os.PathLike) -> Path:
    """`root/relpath`, refusing any path that leaves `root` (`..`, absolute paths).

    The check is on the normalised path, not on symlink targets: a user may link a store into the
    root, but a name taken from input data may not climb out of it.
    """
    root = Path(os.path.normpath(os.path.abspath(root)))
    target = Path(os.path.normpath(root / relpath))
    if not target.is_relative_to(root):
        raise UnsafePathError(f"{str(relpath)!r} leaves {root}")
    return target
