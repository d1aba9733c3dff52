"""The shop's business logic, and the `Shop` that holds its state, dependencies and telemetry.

Chaos faults change the shop's inputs (the database, the payments service, the running code version), never
its outputs: the errors it then raises are real exceptions from this code.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from toyprod import COMMIT, VERSION
from toyprod.config import ToyConfig
from toyprod.dependencies import Database, PaymentClient, Row
from toyprod.disk import DataDisk
from toyprod.errors import StorageError
from toyprod.logs import JsonLog
from toyprod.metrics import ToyMetrics

CERT_LIFETIME_S = 90 * 86_400
CERT_SUBJECT = "CN=shop.toyprod.internal"


class LineItem(BaseModel):
    product_id: int = Field(ge=1)
    quantity: int = Field(default=1, ge=1, le=100)


class Promo(BaseModel):
    code: str
    percent: int = Field(ge=0, le=100)


class Cart(BaseModel):
    items: list[LineItem] = Field(min_length=1, max_length=50)
    promo: Promo | None = None


@dataclass
class Build:
    version: str = VERSION
    commit: str = COMMIT


@dataclass
class Shop:
    config: ToyConfig
    metrics: ToyMetrics
    log: JsonLog
    db: Database
    payments: PaymentClient
    disk: DataDisk
    build: Build = field(default_factory=Build)
    cert_expires_at: float = field(default_factory=lambda: time.time() + CERT_LIFETIME_S)
    previous: Build | None = None
    """The build that ran before the latest deploy of a new version, which a rollback runs again; None at
    start and after a rollback, so a second rollback changes nothing."""

    def __post_init__(self) -> None:
        self.metrics.set_build(self.build.version, self.build.commit)
        self.metrics.cert_expiry.set(self.cert_expires_at)

    def deploy(self, build: Build) -> None:
        """Run `build`. Redeploying the running version (a new commit) keeps the rollback target."""
        if build.version != self.build.version:
            self.previous = self.build
        self._serve(build)

    def rollback(self) -> Build | None:
        """Run the previous version again and return it; None when there is nothing to roll back to."""
        build, self.previous = self.previous, None
        if build is not None:
            self._serve(build)
        return build

    def _serve(self, build: Build) -> None:
        self.build = build
        self.metrics.set_build(build.version, build.commit)
        self.log.info("toyprod.app", f"toyprod {build.version} (commit {build.commit}) serving")

    def set_cert_expiry(self, expires_at: float) -> None:
        self.cert_expires_at = expires_at
        self.metrics.cert_expiry.set(expires_at)

    async def products(self) -> list[Row]:
        rows = await self.db.products()
        return [{**row, "price_cents": int(row["price_cents"])} for row in rows]

    async def place_order(self, cart: Cart) -> Row:
        total = await self._total(cart)
        order: Row = {"id": uuid.uuid4().hex[:16], "total_cents": total, "items": len(cart.items)}
        await self.db.insert_order(order)
        try:
            self.disk.append_journal(json.dumps(order).encode() + b"\n")
        except OSError as exc:
            raise StorageError(f"failed to write order {order['id']} to the order journal") from exc
        return order

    async def checkout(self, cart: Cart) -> Row:
        total = await self._total(cart)
        if self.build.version != VERSION:
            total = _apply_promo_v2(cart, total)
        charge = await self.payments.charge(total)
        return {"status": "paid", "charge_id": charge, "total_cents": total}

    async def _total(self, cart: Cart) -> int:
        prices = {int(row["id"]): int(row["price_cents"]) for row in await self.db.products()}
        return sum(prices[item.product_id] * item.quantity for item in cart.items if item.product_id in prices)


def _apply_promo_v2(cart: Cart, total: int) -> int:
    """The promo code path of the bad deploy: it forgets that most carts carry no promo."""
    promo: dict[str, object] = cart.model_dump()["promo"]
    percent = int(str(promo["percent"]))
    return total - total * percent // 100
