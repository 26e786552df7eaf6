"""The operator page in a real headless Chromium against the real stack: sign in, watch a job progress, flip a
flag, see the Flask side's fallbacks, and retry a failed job once the provider is fixed.

Needs Debian's ``chromium`` package and Playwright's Python package (never ``playwright install``: the
browser is the system one).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.settings import Settings
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright's Python package is not installed (pip install playwright)"
)
CHROMIUM = os.environ.get("STRANGLER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000
expect = sync_api.expect


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[DevStack]:
    # One Runware slot and slow images, so a job's image step visibly advances one image at a time; one
    # provider attempt, so a failing Runware fails the job at once.
    base = settings.model_copy(
        update={
            "reconcile_after_s": 10.0,
            "reconcile_interval_s": 0.2,
            "tts_group_size": 2,
            "runware_concurrency": 1,
            "provider_attempts": 1,
        }
    )
    with DevStack(
        base,
        runpod={"execution_time_s": 0.2, "webhook_retry_delay_s": 0.05},
        runware={"latency_s": 0.9, "image_max_side": 64},
        log_dir=tmp_path / "stack",
    ) as running:
        yield running


def job_body(video_id: str, n: int = 4) -> dict[str, Any]:
    return {
        "chunks": [{"text": f"Sentence number {i} of the story."} for i in range(n)],
        "images": {"width": 128, "height": 128},
        "video": {"width": 64, "height": 48, "fps": 5},
        "video_id": video_id,
    }


def create_job(client: httpx.Client, video_id: str) -> str:
    response = client.post("/jobs", json=job_body(video_id))
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_the_shell_is_public_holds_no_data_and_loads_nothing_from_elsewhere(stack: DevStack) -> None:
    page = httpx.get(f"{stack.api_url}/ops")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "every asset must come from the service"
    assert "job_" not in page.text
    assert httpx.get(f"{stack.api_url}/ops/assets/ops.js").status_code == 200
    assert httpx.get(f"{stack.api_url}/ops/assets/secrets.txt").status_code == 404
    assert httpx.get(f"{stack.api_url}/jobs").status_code == 401


def test_operator_watches_a_job_flips_a_flag_and_retries_a_failed_job(
    stack: DevStack, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
    try:
        page.goto(f"{stack.api_url}/ops")

        # A wrong token is refused and the page asks again; the right one shows the data.
        page.fill("#token", "not-a-token")
        page.click("#login-form button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("refused")
        page.fill("#token", stack.token)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#app")).to_be_visible()

        with stack.client() as client:
            # 1. A running job's progress: the image step advances one image at a time.
            running_id = create_job(client, "vid-watch")
            row = page.locator(f'#jobs tr[data-job-id="{running_id}"]')
            images = row.locator('[data-step="imagegen"]')
            expect(row.locator('[data-action="cancel"]')).to_be_visible()
            seen: set[int] = set()

            def progressed() -> bool:
                # Two different counts of finished images on the page while the step still runs.
                match = re.search(r"imagegen (\d)/4", images.text_content() or "")
                if match and images.get_attribute("data-status") == "submitted":
                    seen.add(int(match.group(1)))
                return len(seen) >= 2

            wait_for(progressed, timeout=30, what="the page to show the image step advancing")
            expect(row).to_have_attribute("data-status", "completed")
            expect(row.locator('[data-field="progress"]')).to_contain_text("4/4")
            assert row.locator("[data-action]").count() == 0

            # 2. Flip a flag from the page; the service has it at once.
            flag = page.locator('#flags tr[data-phase="tts"]')
            flag.locator('[name="mode"]').select_option("shadow")
            flag.locator('[name="percent"]').fill("10")
            flag.locator('[data-action="save-flag"]').click()
            expect(flag.locator('[data-field="flag-status"]')).to_contain_text("saved")
            stored = client.get("/flags").json()["flags"]["tts"]
            assert (stored["mode"], stored["percent"]) == ("shadow", 10)
            expect(flag).to_have_attribute("data-mode", "shadow")

            # 3. The Flask side's fallbacks and shadow mismatches show up.
            reported = [
                {"kind": "fallback", "phase": "tts", "video_id": "vid-fb", "detail": "service unreachable"},
                {"kind": "shadow_mismatch", "phase": "tts", "video_id": "vid-sm", "detail": "durations differ"},
            ]
            assert client.post("/events", json={"events": reported, "source": "test"}).status_code == 200
            expect(page.locator('#events tr[data-kind="fallback"]')).to_contain_text("vid-fb")
            expect(page.locator('#event-counters tr[data-phase="tts"] [data-kind="shadow_mismatch"]')).to_have_text("1")

            # 4. Runware fails every image: the job fails and offers a retry; fix Runware, press Retry.
            stack.set_knobs("runware", failure_rate=1.0)
            failed_id = create_job(client, "vid-retry")
            failed = page.locator(f'#jobs tr[data-job-id="{failed_id}"]')
            expect(failed).to_have_attribute("data-status", "failed")
            expect(failed.locator('[data-field="error"]')).to_contain_text("imagegen")
            stack.set_knobs("runware", failure_rate=0.0)
            failed.locator('[data-action="retry"]').click()
            expect(failed).to_have_attribute("data-status", "completed")

            job = client.get(f"/jobs/{failed_id}").json()
            assert job["status"] == "completed"
            assert {s["name"]: s["attempts"] for s in job["steps"]} == {
                "tts": 1,
                "segments": 1,
                "imagegen": 2,
                "video": 1,
            }
        assert problems == []
    finally:
        page.screenshot(path=str(tmp_path / "ops.png"), full_page=True)
        page.close()
