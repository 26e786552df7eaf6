"""Artifacts in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, ...), on boto3.

Imported only when ``STRANGLER_ARTIFACTS_URL`` is ``s3://...`` (the ``[s3]`` extra). Both directions stream:
a write of up to 8 MiB is one PUT, a larger one goes through boto3's managed transfer (multipart, a few parts in
memory at a time); a read is a ranged GET that seeks by starting a new range. A reader never sees a partial
object: a PUT, or the completion of a multipart upload, makes the whole object visible at once, and an upload
that fails is aborted. Every upload carries a CRC32 the server checks; after a multipart one the stored size is
compared with the bytes sent.
Failures become :class:`~strangler_bridge.errors.StorageError` saying what to check, never a botocore traceback.
"""

from __future__ import annotations

import io
import itertools
import mimetypes
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from strangler_bridge.artifacts import check_key
from strangler_bridge.errors import ConfigError, InvalidInput, NotFound, StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Attempts per S3 request: 5xx, throttling, timeouts and dropped connections are retried with backoff.
ATTEMPTS = 5
#: Parts of 8 MiB, two in flight: an upload holds at most a few parts in memory, whatever the file's size.
TRANSFER = TransferConfig(multipart_chunksize=8 << 20, max_concurrency=2)
#: SigV4 presigned URLs live at most 7 days.
MAX_PRESIGN_S = 7 * 24 * 3600
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_REFUSED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}


class S3ArtifactStore:
    """Artifacts as objects ``<prefix>/<key>`` in one bucket; no key reaches outside the prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: S3Client,
        *,
        endpoint_url: str | None = None,
        presigner: S3Client | None = None,
    ) -> None:
        """``presigner``: the client that signs URLs, when clients reach the store at another address."""
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.presigner = presigner or client
        self.endpoint_url = endpoint_url
        self.session: boto3.session.Session | None = None
        self._bucket_checked = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        timeout_s: float = 10.0,
        attempts: int = ATTEMPTS,
    ) -> S3ArtifactStore:
        """A store for ``s3://bucket/prefix``; credentials and region come from the standard AWS chain.

        ``public_endpoint_url``: the address presigned URLs name, when the service reaches the store at another
        (MinIO by its container name, say); a URL is signed locally, so that address need not answer here.
        """
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"STRANGLER_ARTIFACTS_URL: {url!r} is not s3://bucket/prefix")
        config = Config(
            retries={"max_attempts": attempts, "mode": "standard"},
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            signature_version="s3v4",
            # S3-compatible services (MinIO) are addressed by path; AWS by virtual host.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        session = boto3.session.Session()
        client = session.client("s3", endpoint_url=endpoint_url, config=config)
        presigner = (
            session.client("s3", endpoint_url=public_endpoint_url, config=config) if public_endpoint_url else None
        )
        store = cls(parts.netloc, parts.path, client, endpoint_url=endpoint_url, presigner=presigner)
        store.session = session
        return store

    def __repr__(self) -> str:
        return f"S3ArtifactStore(s3://{self.bucket}/{self.prefix})"

    # --- the ArtifactStore interface ------------------------------------------------------------------------

    def name(self, key: str) -> str:
        """The object name of ``key``; :class:`InvalidInput` for a key that would leave the prefix."""
        check_key(key)
        name = f"{self.prefix}/{key}" if self.prefix else key
        if self.prefix and not name.startswith(self.prefix + "/"):
            raise InvalidInput(f"artifact key {key!r} is outside the store's prefix", field="key")
        return name

    def put(self, key: str, data: bytes | Iterable[bytes]) -> int:
        """Upload ``data`` and return its size.

        What fits in one part (8 MiB) goes up in one ``PutObject`` with its CRC32, which the server checks;
        anything larger streams through the managed multipart transfer, and the stored size is then checked.
        """
        name = self.name(key)
        source = _Chunks([data] if isinstance(data, bytes) else data)
        first = source.take(TRANSFER.multipart_threshold)
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        with self._errors(key):
            if len(first) < TRANSFER.multipart_threshold:
                # A PUT per small artifact: the transfer manager's thread pool would cost more than the upload.
                self.client.put_object(
                    Bucket=self.bucket, Key=name, Body=first, ContentType=content_type, ChecksumAlgorithm="CRC32"
                )
                return len(first)
            stream = io.BufferedReader(_Chunks(itertools.chain([first], source.rest())))
            extra = {"ContentType": content_type, "ChecksumAlgorithm": "CRC32"}
            self.client.upload_fileobj(stream, self.bucket, name, ExtraArgs=extra, Config=TRANSFER)
            stored = self.client.head_object(Bucket=self.bucket, Key=name)["ContentLength"]
        if stored != source.count:
            self.delete(key)
            raise StorageError(f"artifact {key}: {source.count} bytes sent but {stored} stored; removed")
        return source.count

    def open(self, key: str) -> BinaryIO:
        """A seekable reader streaming the object by ranged GETs; :class:`NotFound` if it does not exist."""
        size = self.size(key)
        return cast(BinaryIO, io.BufferedReader(_Ranges(self, key, size), buffer_size=1 << 20))

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove the object (nothing happens if it does not exist)."""
        name = self.name(key)
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=name)

    def size(self, key: str) -> int:
        """The object's size; :class:`NotFound` if it does not exist."""
        name = self.name(key)
        with self._errors(key):
            return self.client.head_object(Bucket=self.bucket, Key=name)["ContentLength"]

    def local_path(self, key: str) -> Path | None:
        """None: objects have no local path."""
        return None

    def presigned_url(self, key: str, *, expires_s: int, content_type: str | None = None) -> str | None:
        """A presigned GET URL of the object (signed locally: no request is made)."""
        params = {"Bucket": self.bucket, "Key": self.name(key)}
        if content_type:
            params["ResponseContentType"] = content_type
        with self._errors(key, check_bucket=False):
            return self.presigner.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=max(1, min(expires_s, MAX_PRESIGN_S))
            )

    def entries(self) -> Iterator[tuple[str, float]]:
        """Every object below the prefix as ``(key, last modified)``, listed page by page."""
        start = f"{self.prefix}/" if self.prefix else ""
        with self._errors("(listing)"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    yield item["Key"][len(start) :], item["LastModified"].timestamp()

    def upload_grant(self, prefix: str) -> dict[str, str] | None:
        """RunPod's ``s3Config``: the bucket, its endpoint (as others reach it) and the store's static keys, and
        the object path below which the handler writes (``objectPath``)."""
        credentials = self.session.get_credentials() if self.session is not None else None
        if credentials is None:
            raise StorageError("STRANGLER_RUNPOD_S3_UPLOAD: the store has no credentials to hand to RunPod")
        frozen = credentials.get_frozen_credentials()
        if frozen.token or not frozen.access_key or not frozen.secret_key:
            raise StorageError(
                "STRANGLER_RUNPOD_S3_UPLOAD: RunPod's s3Config takes static keys; the store's are temporary (a role)"
            )
        return {
            "accessId": frozen.access_key,
            "accessSecret": frozen.secret_key,
            "bucketName": self.bucket,
            "endpointUrl": self.presigner.meta.endpoint_url,
            "objectPath": self.name(prefix),
        }

    def key_of(self, name: str) -> str:
        """The key of object ``name`` (``<prefix>/<key>``); :class:`InvalidInput` outside the prefix."""
        start = f"{self.prefix}/" if self.prefix else ""
        if not name.startswith(start):
            raise InvalidInput(f"object {name!r} is outside the store's prefix", field="audio_key")
        return check_key(name[len(start) :])

    def check(self) -> None:
        """Raise :class:`StorageError` unless the bucket exists and the credentials may use it."""
        with self._errors("(bucket check)", check_bucket=False):
            self.client.head_bucket(Bucket=self.bucket)
        self._bucket_checked = True

    # --- reads and errors -----------------------------------------------------------------------------------

    def read_range(self, key: str, start: int, end: int) -> Any:
        """The streaming body of bytes ``start..end`` (inclusive) of an object."""
        with self._errors(key):
            response = self.client.get_object(Bucket=self.bucket, Key=self.name(key), Range=f"bytes={start}-{end}")
        return response["Body"]

    @contextmanager
    def _errors(self, key: str, *, check_bucket: bool = True) -> Iterator[None]:
        """Translate botocore's errors into the package's tree, naming what to check."""
        if check_bucket and not self._bucket_checked:
            # HEAD answers a bare 404 for a missing bucket and a missing key alike: check the bucket once.
            self.check()
        where = f"s3://{self.bucket}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code == "NoSuchBucket" or (code in _NOT_FOUND and key == "(bucket check)"):
                raise StorageError(f"bucket {where} does not exist (STRANGLER_ARTIFACTS_URL)") from None
            if code in _NOT_FOUND:
                raise NotFound(f"artifact {key} not found") from None
            if code in _REFUSED:
                raise StorageError(
                    f"{where} refused the credentials ({code}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                    "or the AWS profile, and the bucket's policy"
                ) from None
            detail = f" ({error['Message']})" if error.get("Message") else ""
            raise StorageError(f"{where} answered {code or 'an error'} on {key}{detail}") from None
        except NoCredentialsError:
            raise StorageError(
                f"no AWS credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile"
            ) from None
        except BotoCoreError as exc:
            raise StorageError(f"{where} could not be used, retries included: {type(exc).__name__}: {exc}") from None


class _Chunks(io.RawIOBase):
    """An iterable of byte strings as a readable file, counting what was read (the upload's source)."""

    def __init__(self, parts: Iterable[bytes]) -> None:
        self._parts = iter(parts)
        self._pending = b""
        self.count = 0

    def readable(self) -> bool:
        return True

    def take(self, limit: int) -> bytes:
        """The next ``limit`` bytes, or fewer where the data ends."""
        taken = bytearray()
        while len(taken) < limit:
            block = self.read(limit - len(taken))
            if not block:
                break
            taken += block
        return bytes(taken)

    def rest(self) -> Iterator[bytes]:
        """What has not been read yet, as byte strings (counted as they are taken)."""
        while True:
            block = self.read(1 << 20)
            if not block:
                return
            yield block

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            part = next(self._parts, None)
            if part is None:
                return 0
            self._pending = bytes(part)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.count += size
        return size


class _Ranges(io.RawIOBase):
    """A seekable reader of one object: reads stream one ranged GET from the position; a seek starts another."""

    def __init__(self, store: S3ArtifactStore, key: str, size: int) -> None:
        self._store = store
        self._key = key
        self._size = size
        self._position = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        position = max(0, base + offset)
        if position != self._position:
            self._drop()
            self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        if self._position >= self._size or len(buffer) == 0:
            return 0
        if self._body is None:
            self._body = self._store.read_range(self._key, self._position, self._size - 1)
        try:
            data = self._body.read(len(buffer))
        except BotoCoreError as exc:  # the stream broke mid-object (a timeout, a reset)
            self._drop()
            raise StorageError(f"reading artifact {self._key} broke off: {type(exc).__name__}") from None
        if not data:  # the object ended early (replaced meanwhile): report the end rather than loop
            return 0
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _drop(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop()
        super().close()
