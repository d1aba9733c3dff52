"""`/admin/...`: an operator's fixes for the faults (POST) and the state they change (GET), behind the same
bearer token as `/chaos`. Each answer says whether the fix changed anything."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import Field

from toyprod.admin import Admin, FixResult
from toyprod.chaos_api import Params, require_token
from toyprod.dependencies import MAX_POOL_SIZE, PaymentProvider


def get_admin(request: Request) -> Admin:
    admin: Admin = request.app.state.admin
    return admin


AdminDep = Annotated[Admin, Depends(get_admin)]
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_token)])


class PoolParams(Params):
    size: int = Field(ge=1, le=MAX_POOL_SIZE, description="Connections; the pool only grows.")


class FailoverParams(Params):
    provider: PaymentProvider = PaymentProvider.SECONDARY


def answer(admin: Admin, result: FixResult) -> dict[str, Any]:
    return {"fix": result.fix, "changed": result.changed, "detail": result.detail, "state": admin.state()}


@router.get("")
async def state(admin: AdminDep) -> dict[str, Any]:
    return admin.state()


@router.post("/rollback")
async def rollback(admin: AdminDep) -> dict[str, Any]:
    return answer(admin, await admin.rollback())


@router.post("/restart")
async def restart(admin: AdminDep) -> dict[str, Any]:
    return answer(admin, admin.restart())


@router.post("/db-pool")
async def db_pool(params: PoolParams, admin: AdminDep) -> dict[str, Any]:
    try:
        return answer(admin, admin.db_pool(params.size))
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None


@router.post("/payments-failover")
async def payments_failover(admin: AdminDep, params: FailoverParams | None = None) -> dict[str, Any]:
    return answer(admin, admin.payments_failover((params or FailoverParams()).provider))


@router.post("/disk-free")
async def disk_free(admin: AdminDep) -> dict[str, Any]:
    return answer(admin, admin.disk_free())


@router.post("/cert-renew")
async def cert_renew(admin: AdminDep) -> dict[str, Any]:
    return answer(admin, admin.cert_renew())
