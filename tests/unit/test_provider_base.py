"""The one provider shape: the status table, the provider's message, the transport error and the runners."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from strangler_bridge import errors
from strangler_bridge.errors import ProviderError, ProviderUnavailable
from strangler_bridge.http import NO_RETRY
from strangler_bridge.providers.runpod.client import AsyncRunPodClient, RunPodClient
from strangler_bridge.providers.runware.client import RunwareClient
from strangler_bridge.providers.video.client import VideoClient


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, errors.ProviderRejected),
        (401, errors.ProviderAuthError),
        (402, errors.ProviderPaymentRequired),
        (403, errors.ProviderAuthError),
        (404, errors.ProviderNotFound),
        (408, errors.ProviderUnavailable),
        (409, errors.ProviderRejected),
        (429, errors.ProviderRateLimited),
        (500, errors.ProviderUnavailable),
        (503, errors.ProviderUnavailable),
    ],
)
def test_every_provider_maps_a_status_to_the_same_error(status: int, kind: type[ProviderError]) -> None:
    body = {"error": {"message": "told you so"}}
    answer = httpx.MockTransport(lambda request: httpx.Response(status, json=body))
    runpod = RunPodClient("http://rp.test/v2/e", "k", retry=NO_RETRY, http=httpx.Client(transport=answer))
    runware = RunwareClient("http://rw.test/v1", "k", retry=NO_RETRY, http=httpx.Client(transport=answer))
    video = VideoClient("http://video.test", retry=NO_RETRY, http=httpx.Client(transport=answer))
    for call in (runpod.health, runware.authenticate, video.health):
        with pytest.raises(ProviderError) as caught:
            call()
        assert type(caught.value) is kind and caught.value.status_code == status
        assert "told you so" in caught.value.message


def test_a_submit_that_may_have_arrived_says_its_outcome_is_unknown() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    refused = httpx.MockTransport(timeout)
    with RunPodClient("http://rp.test/v2/e", "k", retry=NO_RETRY, http=httpx.Client(transport=refused)) as client:
        with pytest.raises(ProviderUnavailable, match=r"run: RunPod unreachable \(ReadTimeout: slow\).*unknown"):
            client.run({"text": "hi"})
        with pytest.raises(ProviderUnavailable) as caught:
            client.health()
    assert "unknown" not in caught.value.message and isinstance(caught.value.__cause__, httpx.ReadTimeout)


def test_sync_and_async_methods_share_the_operations_signature_and_docs() -> None:
    assert RunPodClient.status.__doc__ == AsyncRunPodClient.status.__doc__
    assert RunPodClient.status.__doc__ and "status" in RunPodClient.status.__doc__

    async def main() -> str:
        answer = httpx.MockTransport(lambda request: httpx.Response(200, json={"id": "j", "status": "IN_QUEUE"}))
        async with AsyncRunPodClient("http://rp.test/v2/e", "k", http=httpx.AsyncClient(transport=answer)) as client:
            return (await client.status("j")).id

    assert asyncio.run(main()) == "j"
