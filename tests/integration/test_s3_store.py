"""The S3 artifact store against a real S3 HTTP API (moto's server mode), faults injected by a loopback proxy."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from strangler_bridge.artifacts import LocalArtifactStore, open_store
from strangler_bridge.errors import InvalidInput, NotFound, StorageError
from strangler_bridge.s3_store import S3ArtifactStore
from strangler_bridge.settings import Settings
from tests.support.s3 import FaultyProxy, MotoServer, new_bucket, object_names

pytestmark = pytest.mark.integration

MIB = 1 << 20


def store_at(endpoint: str, bucket: str, *, prefix: str = "art", timeout_s: float = 5.0) -> S3ArtifactStore:
    return S3ArtifactStore.from_url(f"s3://{bucket}/{prefix}", endpoint_url=endpoint, timeout_s=timeout_s)


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    return new_bucket(s3_endpoint)


@pytest.fixture
def store(s3_endpoint: str, bucket: str) -> S3ArtifactStore:
    return store_at(s3_endpoint, bucket)


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(s3_endpoint).start()
    yield proxy
    proxy.stop()


def blocks(count: int, size: int = MIB) -> Iterator[bytes]:
    """``count`` distinct blocks (never all in memory at once)."""
    for n in range(count):
        yield bytes([n % 251]) * size


def test_put_get_exists_size_delete(store: S3ArtifactStore, s3_endpoint: str, bucket: str) -> None:
    assert not store.exists("tts/a/0.wav")
    assert store.put("tts/a/0.wav", b"RIFF-data") == 9
    assert store.exists("tts/a/0.wav")
    assert store.size("tts/a/0.wav") == 9
    with store.open("tts/a/0.wav") as handle:
        assert handle.read() == b"RIFF-data"
    assert object_names(s3_endpoint, bucket) == ["art/tts/a/0.wav"]
    assert [key for key, _ in store.entries()] == ["tts/a/0.wav"]
    assert store.put("img/a/0.png", iter([b"ab", b"", b"cd"])) == 4  # parts of a small stream make one PUT
    with store.open("img/a/0.png") as handle:
        assert handle.read() == b"abcd"
    store.delete("img/a/0.png")
    store.delete("tts/a/0.wav")
    store.delete("tts/a/0.wav")  # deleting what is gone is fine
    assert not store.exists("tts/a/0.wav")
    with pytest.raises(NotFound):
        store.open("tts/a/0.wav")
    with pytest.raises(NotFound):
        store.size("tts/a/0.wav")


def test_a_large_stream_goes_up_in_parts_and_comes_back_by_ranges(store: S3ArtifactStore) -> None:
    expected = hashlib.sha256()
    for block in blocks(10):
        expected.update(block)
    assert store.put("vid/v/video.mp4", blocks(10)) == 10 * MIB  # over the 8 MiB multipart threshold
    with store.open("vid/v/video.mp4") as handle:
        got = hashlib.sha256()
        for block in iter(lambda: handle.read(MIB), b""):
            got.update(block)
        assert got.hexdigest() == expected.hexdigest()
        handle.seek(9 * MIB + 5)  # a seek starts a new ranged read
        assert handle.read(3) == bytes([9]) * 3
        handle.seek(-2, 2)
        assert handle.read() == bytes([9]) * 2


def test_a_failed_upload_leaves_nothing_to_read(store: S3ArtifactStore) -> None:
    def broken() -> Iterator[bytes]:
        yield from blocks(9)
        raise OSError("the download feeding the upload broke")

    with pytest.raises(OSError, match="feeding"):
        store.put("vid/v/broken.mp4", broken())
    assert not store.exists("vid/v/broken.mp4")
    store.put("img/i/0.png", b"old")
    with pytest.raises(OSError, match="feeding"):
        store.put("img/i/0.png", broken())
    with store.open("img/i/0.png") as handle:  # the old object stays whole
        assert handle.read() == b"old"


def test_presigned_url_serves_the_object_without_credentials(store: S3ArtifactStore) -> None:
    store.put("img/i/1.png", b"\x89PNG-bytes")
    url = store.presigned_url("img/i/1.png", expires_s=300, content_type="image/png")
    assert url is not None
    assert "X-Amz-Signature=" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"\x89PNG-bytes"
    assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize("key", ["../outside.wav", "/abs/key.wav", "tts/../../x.wav", "a//b.wav", ""])
def test_a_key_outside_the_prefix_is_refused(store: S3ArtifactStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        store.put(key, b"x")
    with pytest.raises(InvalidInput):
        store.presigned_url(key, expires_s=60)


def test_entries_list_only_the_prefix(store: S3ArtifactStore, s3_endpoint: str, bucket: str) -> None:
    store.put("jobs/j/segments.json", b"{}")
    neighbour = store_at(s3_endpoint, bucket, prefix="other")
    neighbour.put("jobs/j/segments.json", b"{}")
    assert [key for key, _ in store.entries()] == ["jobs/j/segments.json"]
    assert sorted(object_names(s3_endpoint, bucket)) == ["art/jobs/j/segments.json", "other/jobs/j/segments.json"]


def test_a_missing_bucket_is_a_clear_error(s3_endpoint: str) -> None:
    store = store_at(s3_endpoint, "no-such-bucket-here")
    with pytest.raises(StorageError, match=r"bucket s3://no-such-bucket-here at .* does not exist") as caught:
        store.put("tts/a/0.wav", b"x")
    assert caught.value.http_status == 503
    with pytest.raises(StorageError, match="does not exist"):
        store.exists("tts/a/0.wav")


def test_wrong_credentials_are_a_clear_error(tmp_path: Path) -> None:
    server = MotoServer(tmp_path / "moto-auth.log", auth=True)  # refuses every key it was not given
    try:
        with pytest.raises(StorageError, match="refused the credentials"):
            store_at(server.url, "any-bucket").put("tts/a/0.wav", b"x")
    finally:
        server.stop()


def test_5xx_answers_are_retried(proxy: FaultyProxy, bucket: str) -> None:
    store = store_at(proxy.url, bucket)
    proxy.faults.fail_next = 3
    assert store.put("tts/a/0.wav", b"audio") == 5
    assert proxy.faults.failed == 3
    proxy.faults.fail_next = 2
    with store.open("tts/a/0.wav") as handle:
        assert handle.read() == b"audio"
    assert proxy.faults.failed == 5


def test_5xx_beyond_the_retries_is_a_storage_error(proxy: FaultyProxy, bucket: str) -> None:
    store = store_at(proxy.url, bucket)
    store.check()
    proxy.faults.fail_next = 100
    with pytest.raises(StorageError, match="SlowDown"):
        store.put("tts/a/0.wav", b"audio")
    proxy.faults.fail_next = 0
    assert not store.exists("tts/a/0.wav")


def test_slow_answers_time_out_and_are_retried(proxy: FaultyProxy, bucket: str) -> None:
    store = store_at(proxy.url, bucket, timeout_s=0.5)
    store.check()
    proxy.faults.delay_s = 3.0  # six times the store's read timeout
    proxy.faults.delay_next = 2
    assert store.put("img/i/0.png", b"image") == 5
    assert proxy.faults.delayed == 2
    assert store.size("img/i/0.png") == 5


def test_the_store_is_chosen_by_the_artifacts_url(settings: Settings, tmp_path: Path, s3_endpoint: str) -> None:
    default = open_store(settings)
    assert isinstance(default, LocalArtifactStore)
    assert default.root == settings.artifacts_dir
    local = open_store(settings.model_copy(update={"artifacts_url": f"file://{tmp_path}/files"}))
    assert isinstance(local, LocalArtifactStore)
    assert local.root == tmp_path / "files"
    bucket = new_bucket(s3_endpoint)
    s3 = open_store(settings.model_copy(update={"artifacts_url": f"s3://{bucket}/p/q", "s3_endpoint_url": s3_endpoint}))
    assert isinstance(s3, S3ArtifactStore)
    assert (s3.bucket, s3.prefix) == (bucket, "p/q")
    s3.put("jobs/j/segments.json", b"{}")
    assert object_names(s3_endpoint, bucket) == ["p/q/jobs/j/segments.json"]


def test_doctor_checks_the_bucket(settings: Settings, s3_endpoint: str) -> None:
    from strangler_bridge.doctor import check_artifacts

    assert check_artifacts(settings) == []  # a directory needs no check
    bucket = new_bucket(s3_endpoint)
    good = settings.model_copy(update={"artifacts_url": f"s3://{bucket}/a", "s3_endpoint_url": s3_endpoint})
    assert [f.line() for f in check_artifacts(good)] == [f"ok: the bucket of s3://{bucket}/a answers"]
    missing = good.model_copy(update={"artifacts_url": "s3://not-a-bucket-of-ours/a"})
    (finding,) = check_artifacts(missing)
    assert finding.problem
    assert finding.line().startswith("STRANGLER_ARTIFACTS_URL: bucket s3://not-a-bucket-of-ours at ")


def test_presigned_urls_can_name_a_public_endpoint(s3_endpoint: str, bucket: str) -> None:
    public = s3_endpoint.replace("127.0.0.1", "localhost")
    store = S3ArtifactStore.from_url(f"s3://{bucket}/art", endpoint_url=s3_endpoint, public_endpoint_url=public)
    store.put("img/i/2.png", b"png")
    url = store.presigned_url("img/i/2.png", expires_s=60)
    assert url is not None
    assert url.startswith(f"{public}/{bucket}/art/img/i/2.png?")
    assert httpx.get(url).content == b"png"


def test_an_endpoint_that_does_not_answer_is_a_clear_error() -> None:
    store = store_at("http://127.0.0.1:9", "any-bucket", timeout_s=0.5)  # nothing listens on port 9
    with pytest.raises(StorageError, match=r"s3://any-bucket at http://127.0.0.1:9 could not be used.*Connect"):
        store.put("tts/a/0.wav", b"x")


def test_an_upload_grant_names_the_bucket_the_keys_and_a_path_below_the_prefix(
    store: S3ArtifactStore, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = store.upload_grant("uploads/tts/tts_1")
    assert grant == {
        "accessId": "testing",
        "accessSecret": "testing",
        "bucketName": bucket,
        "endpointUrl": s3_endpoint,
        "objectPath": "art/uploads/tts/tts_1",
    }
    assert store.key_of("art/uploads/tts/tts_1/job-0.wav") == "uploads/tts/tts_1/job-0.wav"
    for outside in ("other/uploads/tts/tts_1/job-0.wav", "art/../x.wav", "art"):
        with pytest.raises(InvalidInput):
            store.key_of(outside)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-role-session")  # temporary keys: RunPod's s3Config cannot carry them
    with pytest.raises(StorageError, match="static keys"):
        store_at(s3_endpoint, bucket).upload_grant("uploads/tts/tts_1")
