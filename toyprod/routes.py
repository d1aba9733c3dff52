"""The shop's routes, health and metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from toyprod.dependencies import Row
from toyprod.shop import Cart, Shop


def get_shop(request: Request) -> Shop:
    shop: Shop = request.app.state.shop
    return shop


ShopDep = Annotated[Shop, Depends(get_shop)]
router = APIRouter()


@router.get("/products")
async def products(shop: ShopDep) -> list[Row]:
    return await shop.products()


@router.post("/orders", status_code=201)
async def orders(cart: Cart, shop: ShopDep) -> Row:
    return await shop.place_order(cart)


@router.post("/checkout")
async def checkout(cart: Cart, shop: ShopDep) -> Row:
    return await shop.checkout(cart)


@router.get("/")
async def index(shop: ShopDep) -> dict[str, Any]:
    """What a person opening the shop's address in a browser finds: where to go next."""
    return {
        "service": "toyprod",
        "version": shop.build.version,
        "routes": [
            "GET /products",
            "POST /orders",
            "POST /checkout",
            "GET /healthz",
            "GET /metrics",
            "/chaos",
            "/admin",
        ],
    }


@router.get("/healthz")
async def healthz(shop: ShopDep) -> dict[str, Any]:
    return {"status": "ok", "version": shop.build.version, "commit": shop.build.commit}


@router.get("/metrics")
async def metrics(shop: ShopDep) -> Response:
    return Response(generate_latest(shop.metrics.registry), media_type=CONTENT_TYPE_LATEST)
