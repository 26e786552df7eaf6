"""Beyond one machine: the pipeline with artifacts in S3 (moto's server) and no disk shared between processes.

The topology is docs/OPERATIONS.md's multi-machine one (section 9): two API processes and two workers, separate
processes each with its own empty artifacts directory and temporary directory, one Redis, one bucket. Nothing
can pass through a shared disk, so a completed job proves every artifact went through the bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from strangler_bridge.cli.processes import Child, wait_http_ok
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.client.bridge import BridgeClient
from strangler_bridge.contracts.jobs import JobStatus
from strangler_bridge.settings import Settings
from tests.support.s3 import object_names
from tests.support.stack import StackFactory, create, follow

pytestmark = pytest.mark.e2e

ASSET_ROUTE = 'route="/artifacts/{token}"'


@pytest.fixture
def stack_defaults(s3_settings: Settings) -> dict[str, Any]:
    return {
        "tts_group_size": 3,
        "artifacts_url": s3_settings.artifacts_url,
        "s3_endpoint_url": s3_settings.s3_endpoint_url,
    }


def job_body(n: int) -> dict[str, Any]:
    return {
        "chunks": [{"text": f"Sentence number {i} of the story."} for i in range(n)],
        "voice": "narrator",
        "images": {"width": 128, "height": 128},
        "video": {"width": 160, "height": 120, "fps": 10},
        "video_id": "vid-s3",
    }


class Machines:
    """Each child process's own directories, as if each ran on its own machine."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, name: str) -> dict[str, str]:
        own = self.root / name
        (own / "artifacts").mkdir(parents=True)
        (own / "tmp").mkdir()
        return {"STRANGLER_ARTIFACTS_DIR": str(own / "artifacts"), "TMPDIR": str(own / "tmp")}

    def names(self) -> list[str]:
        return sorted(path.name for path in self.root.iterdir())

    def files(self) -> list[Path]:
        return [path for path in self.root.rglob("*") if path.is_file()]


def asset_requests(client: httpx.Client) -> list[str]:
    """The API's ``/artifacts/{token}`` request counts from ``/metrics``."""
    text = client.get("/metrics").raise_for_status().text
    return [line for line in text.splitlines() if ASSET_ROUTE in line and line.startswith("strangler_http_requests")]


def test_a_job_runs_on_separate_machines_sharing_only_redis_and_a_bucket(
    make_stack: StackFactory, s3_settings: Settings, tmp_path: Path, children: Callable[..., Child]
) -> None:
    machines = Machines(tmp_path / "machines")
    stack = make_stack(workers=2, process_env=machines)
    # A second API process on its own "machine", as behind a load balancer: the job is created through the first
    # (which receives the providers' webhooks) and read and downloaded through the second.
    port = free_port()
    second = children(["api", "--port", str(port), "--log-level", "warning"], stack.settings, machines("api-b"))
    wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=30, child=second)
    assert machines.names() == ["api-1", "api-b", "worker-2", "worker-3"]
    created = create(stack, "/jobs", job_body(5))
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=70) as client:
        job = follow(client, f"/jobs/{created['id']}", timeout=120)
        assert job["status"] == "completed", job
        # The video service took every asset straight from the bucket: none went through the API.
        assert asset_requests(client) == []

        # Downloads from the API are redirects to presigned URLs in the bucket.
        video = client.get(job["video_url"])
        assert video.status_code == 307
        endpoint = s3_settings.s3_endpoint_url or ""
        assert video.headers["location"].startswith(endpoint)
        mp4 = httpx.get(video.headers["location"])
        assert mp4.status_code == 200
        assert mp4.content[4:8] == b"ftyp" or mp4.content.startswith(b"STRANGLER-BRIDGE PLACEHOLDER")
        files = client.get(f"/jobs/{created['id']}/files").raise_for_status().json()
        audio = client.get(files["audio"][0]["url"])
        assert audio.status_code == 307
        assert httpx.get(audio.headers["location"]).content[:4] == b"RIFF"
        assert asset_requests(client) != []  # the check above would have seen the video service's requests

    # The service's own client follows the redirect to the store (without its token) and gets the same file.
    with BridgeClient(f"http://127.0.0.1:{port}", stack.token) as bridge:
        status = JobStatus.model_validate(job)
        assert bridge.download_job_video(status, tmp_path / "video.mp4") == len(mp4.content)
        assert bridge.download_segments(status, tmp_path / "segments.json") > 0
    assert (tmp_path / "video.mp4").read_bytes() == mp4.content

    # Nothing was written to any process's directories; everything is in the bucket, under the prefix.
    assert machines.files() == []
    assert not Path(stack.settings.artifacts_dir).exists()
    bucket = (s3_settings.artifacts_url or "").removeprefix("s3://").split("/")[0]
    names = object_names(endpoint, bucket)
    assert all(name.startswith("artifacts/") for name in names)
    kinds = {name.split("/")[1] for name in names}
    assert kinds == {"tts", "img", "jobs", "vid"}
    assert f"artifacts/jobs/{created['id']}/segments.json" in names


def test_proxy_delivery_streams_downloads_through_the_api(make_stack: StackFactory) -> None:
    stack = make_stack(artifacts_delivery="proxy")
    created = create(stack, "/tts/batch", {"chunks": [{"text": "one two three."}], "voice": "v1"})
    with stack.client() as client:
        batch = follow(client, f"/tts/batch/{created['id']}", timeout=60)
        assert batch["status"] == "completed", batch
        audio = client.get(batch["chunks"][0]["audio_url"])
    assert audio.status_code == 200
    assert audio.content[:4] == b"RIFF"
    assert len(audio.content) == batch["chunks"][0]["size_bytes"]


def test_without_a_bucket_separate_directories_lose_the_files(make_stack: StackFactory, tmp_path: Path) -> None:
    # The control: the same separate directories with the local store (no STRANGLER_ARTIFACTS_URL). The worker
    # stores the audio in its own directory, which the API process cannot see: the check above would catch it.
    machines = Machines(tmp_path / "machines")
    stack = make_stack(process_env=machines, artifacts_url=None, s3_endpoint_url=None)
    created = create(stack, "/tts/batch", {"chunks": [{"text": "one two three."}], "voice": "v1"})
    with stack.client() as client:
        batch = follow(client, f"/tts/batch/{created['id']}", timeout=60)
        assert batch["status"] == "completed", batch
        assert client.get(batch["chunks"][0]["audio_url"]).status_code == 404
    written = [path.relative_to(machines.root).parts[0] for path in machines.files()]
    assert written == ["worker-2"]


def test_a_runpod_handler_may_upload_its_audio_to_the_bucket(make_stack: StackFactory, s3_settings: Settings) -> None:
    # STRANGLER_RUNPOD_S3_UPLOAD: each RunPod job carries s3Config (the bucket, its keys and an object path); the
    # simulator's handler uploads there and returns audio_key, which the worker copies under its own key.
    stack = make_stack(runpod={"output_mode": "s3"}, runpod_s3_upload=True)
    created = create(stack, "/tts/batch", {"chunks": [{"text": f"chunk {i} of three."} for i in range(3)]})
    with stack.client() as client:
        batch = follow(client, f"/tts/batch/{created['id']}", timeout=60)
        assert batch["status"] == "completed", batch
        audio = httpx.get(client.get(batch["chunks"][0]["audio_url"]).headers["location"])
    assert audio.content[:4] == b"RIFF"
    assert len(audio.content) == batch["chunks"][0]["size_bytes"]
    bucket = (s3_settings.artifacts_url or "").removeprefix("s3://").split("/")[0]
    names = object_names(s3_settings.s3_endpoint_url or "", bucket)
    uploaded = [n for n in names if n.startswith(f"artifacts/uploads/tts/{created['id']}/")]
    stored = [n for n in names if n.startswith(f"artifacts/tts/{created['id']}/")]
    assert (len(uploaded), len(stored)) == (3, 3)
