"""The operator's fixes for toyprod's faults, behind the admin API (`/admin/...`).

Each fix changes what the shop runs on the way an operator would: the running version, the process, the pool
size, the payments provider, the data disk, the certificate. None switches a chaos fault off: a fault that a
fix does not reach stays broken, so a remediation that ran the wrong fix fails its verification. Every fix is
idempotent: a call that finds nothing to do changes nothing and says so. Fixes are logged and shipped to
Vigil like any other line: they are what an operator did, part of the incident's record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from toyprod import SERVICE
from toyprod.chaos import BAD_VERSION, Chaos
from toyprod.config import MIB
from toyprod.dependencies import PaymentProvider
from toyprod.deploys import DeployAnnouncer
from toyprod.shop import CERT_LIFETIME_S, CERT_SUBJECT, Shop

RENEW_WITHIN_S = 30 * 86_400
"""A certificate is renewed when it expires within this window (certbot's default), else left alone."""
AUTHOR = "toyprod-admin"


@dataclass(frozen=True)
class FixResult:
    fix: str
    changed: bool
    detail: str


class Admin:
    def __init__(self, shop: Shop, chaos: Chaos, announcer: DeployAnnouncer | None) -> None:
        self.shop = shop
        self._chaos = chaos
        self._announcer = announcer
        self.restarts = 0

    def state(self) -> dict[str, Any]:
        shop = self.shop
        return {
            "version": shop.build.version,
            "commit": shop.build.commit,
            "rollback_to": shop.previous.version if shop.previous else None,
            "db_pool_size": shop.db.size,
            "payments_provider": shop.payments.provider,
            "restarts": self.restarts,
            "cert_expires_at": datetime.fromtimestamp(shop.cert_expires_at, UTC).isoformat(),
            "disk_usage_ratio": round(shop.disk.ratio, 4),
        }

    async def rollback(self) -> FixResult:
        """Run the previous version again, and announce the rollback to Vigil as a deploy."""
        running = self.shop.build
        build = self.shop.rollback()
        if build is None:
            return self._done("rollback", False, f"nothing to roll back to: {running.version} has no predecessor")
        if build.version != BAD_VERSION:
            self._chaos.healed("bad-deploy")
        sent = self._announcer is not None and await self._announcer.announce(
            build, author=AUTHOR, description=f"rollback of {running.version} to {build.version}"
        )
        detail = f"rolled back from {running.version} to {build.version} (commit {build.commit})"
        return self._done("rollback", True, f"{detail}; deploy event {'sent' if sent else 'not sent'}")

    def restart(self) -> FixResult:
        """Restart as the faults see it: what lived in the process is gone; the rest of the world is not."""
        ended = self._chaos.restart_process()
        if not ended:
            return self._done(
                "restart", False, "no restart needed: no leaked memory, CPU burn, held connections or runaway tasks"
            )
        self.restarts += 1
        self.shop.metrics.restarts.inc()
        return self._done("restart", True, f"restarted {SERVICE} {self.shop.build.version}: {'; '.join(ended)}")

    def db_pool(self, size: int) -> FixResult:
        """Grow the connection pool; ValueError when `size` would shrink it."""
        db = self.shop.db
        if size == db.size:
            return self._done("db-pool", False, f"the DB pool already has {size} connections")
        before = db.size
        db.resize(size)
        detail = f"DB pool grown from {before} to {size} connections"
        if db.held:
            detail += f"; {db.held} held by stuck transactions, {max(0, size - db.held)} free for requests"
        return self._done("db-pool", True, detail)

    def payments_failover(self, provider: PaymentProvider) -> FixResult:
        payments = self.shop.payments
        if payments.provider is provider:
            return self._done("payments-failover", False, f"payments already go to the {provider} provider")
        before = payments.provider
        payments.use(provider)
        return self._done("payments-failover", True, f"payments switched from the {before} to the {provider} provider")

    def disk_free(self) -> FixResult:
        disk = self.shop.disk
        freed = disk.clear_fill()
        if not freed:
            return self._done("disk-free", False, f"nothing to free: no cache files under {disk.root}")
        self._chaos.healed("disk-fill")
        detail = f"deleted {freed / MIB:.1f} MiB of cache files under {disk.root}; disk at {disk.ratio:.0%} of quota"
        return self._done("disk-free", True, detail)

    def cert_renew(self) -> FixResult:
        shop = self.shop
        remaining = shop.cert_expires_at - time.time()
        if remaining > RENEW_WITHIN_S:
            return self._done(
                "cert-renew", False, f"certificate {CERT_SUBJECT} not due: expires in {remaining / 86_400:.1f} days"
            )
        shop.set_cert_expiry(time.time() + CERT_LIFETIME_S)
        self._chaos.healed("cert-expiry")
        not_after = datetime.fromtimestamp(shop.cert_expires_at, UTC).isoformat()
        return self._done("cert-renew", True, f"renewed certificate {CERT_SUBJECT}: valid until {not_after}")

    def _done(self, fix: str, changed: bool, detail: str) -> FixResult:
        self.shop.log.info("toyprod.admin", f"admin {fix}: {detail}", fix=fix, changed=changed)
        return FixResult(fix, changed, detail)
