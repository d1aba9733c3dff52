"""`vigil chaos ...`, `vigil traffic` and `vigil toyprod`. Heavy imports stay inside the commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from toyprod.config import ToyConfig, resolve_chaos_token
from vigil.settings import get_settings

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console

    from toyprod.traffic import TrafficStats

chaos_app = typer.Typer(no_args_is_help=True, help="Switch toyprod's faults on, list them, reset them.")


def toyprod() -> None:
    """Run toyprod, the demo shop, on VIGIL_LISTEN_HOST:VIGIL_TOYPROD_PORT."""
    import uvicorn

    from toyprod.app import create_app

    settings = get_settings()
    uvicorn.run(
        create_app(ToyConfig.from_settings(settings)),
        host=settings.listen_host,
        port=settings.toyprod_port,
        access_log=False,
        log_level="warning",
    )


def traffic(
    rps: float = typer.Option(5.0, min=0.1, max=10_000, help="Requests per second."),
    duration: float = typer.Option(0.0, min=0, help="Seconds to run; 0: until Ctrl-C."),
    url: str = typer.Option("", help="toyprod's base URL (default: http://127.0.0.1:VIGIL_TOYPROD_PORT)."),
) -> None:
    """Send a realistic mix of shop traffic (products, orders, checkout) to toyprod."""
    import asyncio
    import contextlib
    import signal
    import sys

    from rich.console import Console

    from toyprod.traffic import TrafficStats, run_traffic

    base_url = url or f"http://127.0.0.1:{get_settings().toyprod_port}"
    stats = TrafficStats()
    console = Console()

    async def main() -> None:
        work = asyncio.create_task(run_traffic(base_url, rps, duration, stats))
        # Under `vigil up` traffic runs without a terminal and ends by SIGTERM: a clean stop, like Ctrl-C.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, work.cancel)
        if sys.stdout.isatty():
            await _show_progress(console, work, stats, duration)
        else:
            console.print(f"traffic to {base_url}: {rps:g} requests/s" + (f" for {duration:g}s" if duration else ""))
            await _log_progress(console, work, stats, base_url)

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main())
    console.print(f"traffic to {base_url}: {stats.summary()}")


async def _log_progress(console: Console, work: asyncio.Task[None], stats: TrafficStats, base_url: str) -> None:
    """Without a terminal (a log file): one status line a minute, so the log shows traffic is flowing."""
    import asyncio

    while not work.done():
        await asyncio.wait({work}, timeout=60)
        if not work.done():
            console.print(f"traffic to {base_url}: {stats.summary()}")
    await work


async def _show_progress(console: Console, work: asyncio.Task[None], stats: TrafficStats, duration: float) -> None:
    import asyncio

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("[bold]traffic"), BarColumn(), TimeElapsedColumn(), TextColumn("{task.description}")]
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("", total=duration or None)
        while not work.done():
            progress.update(bar, completed=min(duration, stats.elapsed), description=stats.summary())
            await asyncio.wait({work}, timeout=0.25)
    await work


def _chaos(method: str, path: str, body: dict[str, Any] | None = None) -> None:
    import httpx

    settings = get_settings()
    token = resolve_chaos_token(
        settings.chaos_token.get_secret_value() if settings.chaos_token else None, settings.state_dir
    )
    if token is None:
        where = settings.state_dir / "chaos-token"
        typer.echo(f"no chaos token: set VIGIL_CHAOS_TOKEN or write one to {where}", err=True)
        raise typer.Exit(2)
    url = f"http://127.0.0.1:{settings.toyprod_port}/chaos{path}"
    try:
        response = httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    except httpx.HTTPError as exc:
        typer.echo(f"toyprod not reachable at {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    if not response.is_success:
        typer.echo(f"toyprod answered {response.status_code}: {response.text}", err=True)
        raise typer.Exit(1)
    view = response.json()
    faults = view.get("faults", {})
    listed = ", ".join(f"{name}({_params(params)})" for name, params in faults.items())
    typer.echo(f"toyprod {view.get('version')} (commit {view.get('commit')}): {listed or 'no active faults'}")


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items() if value is not None)


@chaos_app.command("status")
def status() -> None:
    """List the active faults."""
    _chaos("GET", "")


@chaos_app.command("latency")
def latency(
    ms: float = typer.Argument(1000.0, help="Added latency in milliseconds (default: twice the 500 ms SLO)."),
    route: str | None = typer.Option(None, help="Only this route, e.g. /checkout."),
) -> None:
    """Slow requests down."""
    _chaos("POST", "/latency", {"ms": ms, "route": route})


@chaos_app.command("errors")
def errors(rate: float = typer.Argument(0.2, help="Share of catalogue reads that are corrupt, 0..1.")) -> None:
    """Fail a share of requests with 500s (corrupt rows make the price parser throw)."""
    _chaos("POST", "/errors", {"rate": rate})


@chaos_app.command("memory-leak")
def memory_leak(mb_per_s: float = typer.Argument(10.0, help="MB retained per second (capped at 512 MB).")) -> None:
    """Leak memory until reset."""
    _chaos("POST", "/memory-leak", {"mb_per_s": mb_per_s})


@chaos_app.command("cpu-burn")
def cpu_burn(fraction: float = typer.Argument(0.9, help="Share of one core to burn, 0..1.")) -> None:
    """Burn CPU in a thread."""
    _chaos("POST", "/cpu-burn", {"fraction": fraction})


@chaos_app.command("db-down")
def db_down() -> None:
    """The database refuses connections."""
    _chaos("POST", "/db-down")


@chaos_app.command("db-pool-exhaustion")
def db_pool_exhaustion() -> None:
    """Hold every pooled connection: requests time out waiting for one."""
    _chaos("POST", "/db-pool-exhaustion")


@chaos_app.command("payments-failing")
def payments_failing() -> None:
    """The payments service answers 502/503."""
    _chaos("POST", "/payments-failing")


@chaos_app.command("payments-ratelimit")
def payments_ratelimit() -> None:
    """The payments service rate-limits (429); calls retry."""
    _chaos("POST", "/payments-ratelimit")


@chaos_app.command("bad-deploy")
def bad_deploy() -> None:
    """Deploy a bad version (checkout throws) and announce it to Vigil."""
    _chaos("POST", "/bad-deploy")


@chaos_app.command("disk-fill")
def disk_fill(rate: float = typer.Option(16.0, help="MB written per second, up to the quota.")) -> None:
    """Fill toyprod's data quota: writes then fail with ENOSPC."""
    _chaos("POST", "/disk-fill", {"mb_per_s": rate})


@chaos_app.command("cert-expiry")
def cert_expiry(
    days: float = typer.Argument(3.0, help="Days until the certificate expires; negative: already expired."),
) -> None:
    """Make the served certificate expire soon (or already)."""
    _chaos("POST", "/cert-expiry", {"days": days})


@chaos_app.command("reset")
def reset() -> None:
    """Heal every fault (a bad deploy is rolled back)."""
    _chaos("POST", "/reset")
