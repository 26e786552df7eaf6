"""The runtime flag authority: per-phase flags in Redis, read and changed over HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request

from fastapi_app.api.auth import require_token
from fastapi_app.runtime import Runtime
from strangler_bridge.contracts.common import ErrorResponse
from strangler_bridge.contracts.flags import FlagSet, Phase, PhaseFlag
from strangler_bridge.flags import default_flags

router = APIRouter(prefix="/flags", tags=["flags"], dependencies=[Depends(require_token)])


async def read_flags(rt: Runtime) -> FlagSet:
    """Stored flags over the static ones from settings (``STRANGLER_FLAGS``)."""
    flags = default_flags(rt.settings.flags)
    stored = await rt.aredis.hgetall(rt.keys.flags)
    for phase_raw, value in stored.items():
        phase_name = phase_raw.decode() if isinstance(phase_raw, bytes) else phase_raw
        if phase_name in Phase._value2member_map_:
            flags[Phase(phase_name)] = PhaseFlag.model_validate_json(value)
    version = await rt.aredis.get(rt.keys.flags_version)
    return FlagSet(flags=flags, version=int(version or 0))


@router.get("", response_model=FlagSet, summary="Every phase's flag", responses={401: {"model": ErrorResponse}})
async def get_flags(request: Request) -> FlagSet:
    """The effective flags: changed values from Redis, static configuration for the rest."""
    return await read_flags(request.app.state.runtime)


@router.put(
    "/{phase}",
    response_model=FlagSet,
    summary="Change one phase's flag (takes effect without restarts)",
    responses={401: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def put_flag(
    phase: Phase,
    flag: Annotated[
        PhaseFlag, Body(examples=[{"mode": "fastapi", "percent": 10, "allow": ["vid-42"], "fallback": True}])
    ],
    request: Request,
) -> FlagSet:
    """Store ``flag`` for ``phase``; Flask apps pick it up within their cache time."""
    rt: Runtime = request.app.state.runtime
    async with rt.aredis.pipeline(transaction=True) as pipe:
        pipe.hset(rt.keys.flags, phase.value, flag.model_dump_json())
        pipe.incr(rt.keys.flags_version)
        await pipe.execute()
    return await read_flags(rt)
