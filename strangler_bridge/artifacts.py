"""Where produced files (audio, images, segments.json, video) live: an interface and a local-directory store.

:func:`open_store` picks the store ``STRANGLER_ARTIFACTS_URL`` names: a directory (the default) or an S3 bucket
(:mod:`strangler_bridge.s3_store`, imported only then, so the default install needs no boto3).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from strangler_bridge.errors import ConfigError, InvalidInput, NotFound

if TYPE_CHECKING:
    from strangler_bridge.settings import Settings

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

    def presigned_url(self, key: str, *, expires_s: int, content_type: str | None = None) -> str | None:
        """A URL anyone may GET the artifact from until ``expires_s`` from now, when the store can make one."""

    def entries(self) -> Iterator[tuple[str, float]]:
        """Every stored artifact as ``(key, last modified epoch seconds)`` (for the retention sweep)."""

    def upload_grant(self, prefix: str) -> dict[str, str] | None:
        """RunPod's ``s3Config`` letting a handler upload below the key ``prefix`` itself, when the store can."""

    def key_of(self, name: str) -> str:
        """The key of an object name a provider reported; :class:`InvalidInput` if it is not one of ours."""


def open_store(settings: Settings) -> ArtifactStore:
    """The store ``STRANGLER_ARTIFACTS_URL`` names (``file:///path`` or ``s3://bucket/prefix``).

    Unset, it is the directory ``STRANGLER_ARTIFACTS_DIR``, today's default.
    """
    url = settings.artifacts_url
    if url is None:
        return LocalArtifactStore(settings.artifacts_dir)
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"STRANGLER_ARTIFACTS_URL: a file URL names a local path (file:///path), not {url!r}")
        return LocalArtifactStore(Path(unquote(parts.path)))
    from strangler_bridge.s3_store import S3ArtifactStore

    return S3ArtifactStore.from_url(
        url,
        endpoint_url=settings.s3_endpoint_url,
        public_endpoint_url=settings.s3_public_endpoint_url,
        timeout_s=settings.http_timeout_s,
    )


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

    def presigned_url(self, key: str, *, expires_s: int, content_type: str | None = None) -> str | None:
        """None: a directory has no URLs (the API serves its files through signed ``/artifacts/`` links)."""
        return None

    def upload_grant(self, prefix: str) -> dict[str, str] | None:
        """None: a provider cannot write into a directory of ours."""
        return None

    def key_of(self, name: str) -> str:
        """Refused: a directory has no object names a provider could report."""
        raise InvalidInput(f"{name!r} names an object, but artifacts are in a directory", field="audio_key")

    def entries(self) -> Iterator[tuple[str, float]]:
        """Every file below the root (temporary files of writes in progress left out)."""
        if not self.root.is_dir():
            return
        for path in self.root.rglob("*"):
            if path.name.startswith(".tmp-") or not path.is_file():
                continue
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:  # removed since listed
                continue
            yield path.relative_to(self.root).as_posix(), modified
