"""Issue 19, `held_load`: 500 concurrent held status requests cost the rest of the site nothing.

The product's ASGI web server (runall.web_command, 2 uvicorn workers) on PostgreSQL + Redis.
A batch waits PENDING on a device in maintenance, so every status request on it is held for
the whole of STATUS_HOLD_SECONDS. We measure the p95 of an ordinary `GET /api/v2/batches/{id}`
alone, then again while 500 status requests are held (10 tokens × 50, under the per-token
cap), and report the web processes' peak memory. Target: p95 with holds ≤ 1.5× p95 without.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402


def ordinary_gets(base: str, token: str, batch_id: str, n: int) -> list[float]:
    session = common.api(base, token)
    url = f"{base}/core/api/v2/batches/{batch_id}"

    def get() -> None:
        response = session.get(url, timeout=30)
        assert response.status_code == 200, response.text

    return common.timed(get, n, warmup=5)


async def hold_many(host: str, port: int, batch_id: str, tokens: list[str], per_token: int, ready: threading.Event,
                    release: threading.Event) -> list[str]:  # fmt: skip
    """Open the held requests, say when they are all sent, and read their answers at the end."""
    conns = []
    for token in tokens:
        for _ in range(per_token):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                f"GET /core/api/v1/batches/{batch_id}/status HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            conns.append((reader, writer))
    ready.set()
    while not release.is_set():
        await asyncio.sleep(0.1)
    statuses = []
    for reader, writer in conns:
        line = await reader.readline()
        statuses.append(line.decode().split(" ")[1] if line else "closed")
        writer.close()
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--held", type=int, default=500)
    parser.add_argument("--gets", type=int, default=150)
    args = parser.parse_args()
    env, user, project, token, report = common.start("postgres", "bench_tweezer_held_load")
    env["EVENTS_CHANNEL"] = f"{common.DB_NAME}:batch:"
    from backends.models import Device
    from portal.tokens import create_token

    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    tokens = [create_token(user, f"held-{i}")[1] for i in range(10)]
    web, base = common.start_asgi(env, STATUS_HOLD_SECONDS="28")
    with common.running(web):
        session = common.api(base, token)
        batch_id = common.submit_batch(session, base, project, common.tiny_sequence(), common.job_specs(2))
        alone = ordinary_gets(base, token, batch_id, args.gets)
        report.line(f"GET /api/v2/batches/{{id}} alone: {common.summary(alone)}")
        host, port = base.removeprefix("http://").split(":")
        ready, release = threading.Event(), threading.Event()
        statuses: list[str] = []
        holder = threading.Thread(
            target=lambda: statuses.extend(
                asyncio.run(hold_many(host, int(port), batch_id, tokens, args.held // 10, ready, release))
            )
        )
        started = time.monotonic()
        holder.start()
        ready.wait(timeout=60)
        # Arriving, each held request is authenticated and read once (a burst of 500 requests);
        # measure once that burst is over: an ordinary GET is back to its usual time.
        usual = statistics.median(alone)
        while min(ordinary_gets(base, token, batch_id, 3)) > 1.5 * usual and time.monotonic() - started < 20:
            pass
        settled = time.monotonic() - started
        loaded = ordinary_gets(base, token, batch_id, args.gets)
        during = time.monotonic() - started
        release.set()
        holder.join(timeout=60)
        report.line(f"same GET with {args.held} held status requests: {common.summary(loaded)}")
        held_ok = sum(1 for s in statuses if s == "200")
        report.line(
            f"held requests: {held_ok}/{len(statuses)} answered 200 after their hold "
            f"(the 500 arrived and were read in {settled:.1f} s; the measured GETs ran until "
            f"{during:.1f} s after the first: {'within' if during < 28 else 'PAST'} the 28 s hold)"
        )
        peaks = [common.rss_mib(pid)[1] for pid in [web.proc.pid, *web.children()]]
        report.line(f"web processes' peak RSS (master + workers): {' + '.join(f'{p:.0f}' for p in peaks)} MiB")
    p95 = common.quantile(loaded, 0.95) / common.quantile(alone, 0.95)
    report.ratio("held_load_p95", p95, "<= 1.5")
    report.finish()
    common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
