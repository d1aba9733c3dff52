"""Errors the shop answers with a status of its own; anything else is an unhandled exception (500)."""

from __future__ import annotations


class ShopError(Exception):
    """`kind` labels toyprod_errors_total; `logger` names the component that logs it."""

    status = 500
    kind = "exception"
    logger = "toyprod.app"


class DatabaseError(ShopError):
    status = 503
    kind = "database"
    logger = "toyprod.db"


class PaymentError(ShopError):
    status = 502
    kind = "payment"
    logger = "toyprod.payments"

    def __init__(self, message: str, upstream_status: int) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status


class StorageError(ShopError):
    status = 500
    kind = "disk"
    logger = "toyprod.disk"


class PaymentRateLimited(PaymentError):
    status = 503
