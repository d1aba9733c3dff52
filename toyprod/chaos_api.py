"""`/chaos/...`: switch faults on (POST) and list them (GET), behind the chaos bearer token."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from toyprod.chaos import Chaos
from toyprod.config import resolve_chaos_token
from toyprod.shop import Shop


def require_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    shop: Shop = request.app.state.shop
    expected = resolve_chaos_token(shop.config.chaos_token, shop.config.state_dir)
    if expected is None:
        raise HTTPException(503, "chaos disabled: no token")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise HTTPException(401, "chaos token missing or wrong", headers={"WWW-Authenticate": "Bearer"})


def get_chaos(request: Request) -> Chaos:
    chaos: Chaos = request.app.state.chaos
    return chaos


ChaosDep = Annotated[Chaos, Depends(get_chaos)]
router = APIRouter(prefix="/chaos", tags=["chaos"], dependencies=[Depends(require_token)])


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyParams(Params):
    ms: float = Field(
        default=1000.0, gt=0, le=60_000, description="Added milliseconds; default: twice the 500 ms latency SLO."
    )
    route: Literal["/products", "/orders", "/checkout"] | None = Field(
        default=None, description="Only this route; default: every shop route."
    )


class ErrorsParams(Params):
    rate: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Share of catalogue reads that return a corrupt row. Default 0.2: ~15% of the default traffic "
        "mix fails, far past the 0.5% availability budget, so the fault is unmistakable.",
    )


class RateParams(Params):
    mb_per_s: float = Field(default=10.0, gt=0, le=512)


class CpuParams(Params):
    fraction: float = Field(default=0.9, gt=0, le=1, description="Share of one core to burn.")


class CertParams(Params):
    days: float = Field(default=3.0, ge=-365, le=89, description="Days until expiry; negative: already expired.")


def view(chaos: Chaos, **extra: object) -> dict[str, Any]:
    shop: Shop = chaos.shop
    return {"version": shop.build.version, "commit": shop.build.commit, "faults": chaos.active, **extra}


@router.get("")
async def status(chaos: ChaosDep) -> dict[str, Any]:
    return view(chaos)


@router.post("/latency")
async def latency(chaos: ChaosDep, params: LatencyParams | None = None) -> dict[str, Any]:
    params = params or LatencyParams()
    chaos.latency(params.ms, params.route)
    return view(chaos)


@router.post("/errors")
async def errors(chaos: ChaosDep, params: ErrorsParams | None = None) -> dict[str, Any]:
    chaos.errors((params or ErrorsParams()).rate)
    return view(chaos)


@router.post("/memory-leak")
async def memory_leak(chaos: ChaosDep, params: RateParams | None = None) -> dict[str, Any]:
    chaos.memory_leak((params or RateParams()).mb_per_s)
    return view(chaos)


@router.post("/cpu-burn")
async def cpu_burn(chaos: ChaosDep, params: CpuParams | None = None) -> dict[str, Any]:
    chaos.cpu_burn((params or CpuParams()).fraction)
    return view(chaos)


@router.post("/db-down")
async def db_down(chaos: ChaosDep) -> dict[str, Any]:
    chaos.db_down()
    return view(chaos)


@router.post("/db-pool-exhaustion")
async def db_pool_exhaustion(chaos: ChaosDep) -> dict[str, Any]:
    chaos.db_pool_exhaustion()
    return view(chaos)


@router.post("/payments-failing")
async def payments_failing(chaos: ChaosDep) -> dict[str, Any]:
    chaos.payments_failing()
    return view(chaos)


@router.post("/payments-ratelimit")
async def payments_ratelimit(chaos: ChaosDep) -> dict[str, Any]:
    chaos.payments_ratelimit()
    return view(chaos)


@router.post("/bad-deploy")
async def bad_deploy(chaos: ChaosDep) -> dict[str, Any]:
    announced = await chaos.bad_deploy()
    return view(chaos, deploy_event_sent=announced)


@router.post("/disk-fill")
async def disk_fill(chaos: ChaosDep, params: RateParams | None = None) -> dict[str, Any]:
    chaos.disk_fill((params or RateParams(mb_per_s=16)).mb_per_s)
    return view(chaos)


@router.post("/cert-expiry")
async def cert_expiry(chaos: ChaosDep, params: CertParams | None = None) -> dict[str, Any]:
    chaos.cert_expiry((params or CertParams()).days)
    return view(chaos)


@router.post("/reset")
async def reset(chaos: ChaosDep) -> dict[str, Any]:
    await chaos.reset()
    return view(chaos)
