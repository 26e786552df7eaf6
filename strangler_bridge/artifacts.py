"""Where produced files (audio, images, segments.json, video) live: an interface and a local-directory store."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from strangler_bridge.errors import InvalidInput, NotFound

_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*(\.[A-Za-z0-9]{1,8})?$")


def check_key(key: str) -> str:
    """``key`` if it is a safe relative artifact key (``kind/id/name.ext``); :class:`InvalidInput` otherwise."""
    if len(key) > 300 or not _KEY_RE.match(key):
        raise InvalidInput(f"invalid artifact key: {key!r}", field="key")
    return key


class ArtifactStore(Protocol):
    """Stores artifacts by key. Writes are atomic: a reader sees the whole file or nothing."""

    def put(self, key: str, data: bytes | Iterable[bytes]) -> int:
        """Store ``data`` under ``key`` (replacing it) and return its size in bytes."""

    def open(self, key: str) -> BinaryIO:
        """Open an artifact for reading; :class:`NotFound` if it does not exist."""

    def exists(self, key: str) -> bool:
        """Whether an artifact exists."""

    def delete(self, key: str) -> None:
        """Remove an artifact (nothing happens if it does not exist)."""

    def size(self, key: str) -> int:
        """Size in bytes; :class:`NotFound` if it does not exist."""

    def local_path(self, key: str) -> Path | None:
        """A filesystem path to the artifact when the store has one (lets servers use sendfile)."""


class LocalArtifactStore:
    """Artifacts as files below one directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes | Iterable[bytes]) -> int:
        """Write to a temporary file in the same directory, then rename over the key (atomic)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with self._temp(path) as handle:
            for part in [data] if isinstance(data, bytes) else data:
                handle.write(part)
                written += len(part)
        return written

    @contextmanager
    def _temp(self, path: Path) -> Iterator[BinaryIO]:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        """Open for reading."""
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise NotFound(f"artifact {key} not found") from None

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the file if it exists."""
        self._path(key).unlink(missing_ok=True)

    def size(self, key: str) -> int:
        """File size."""
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"artifact {key} not found") from None

    def local_path(self, key: str) -> Path | None:
        """The file's path."""
        return self._path(key)
