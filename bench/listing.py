"""Scenario 3: GET /core/api/v2/jobs at 10k / 100k / 1M jobs vs the equivalent hand-written SQL.

The table grows in place: 50 projects, 100 jobs per batch (10,000 batches at 1M), loaded with
INSERT … SELECT generate_series on the server. At each size every SDK filter is timed at
offsets 0 / 10,000 / 900,000 through the API (HTTP, auth, filters, `.total`, JSON), and the same
question asked of PostgreSQL directly with psycopg, the same way: one page of 100 rows, then the
total (none for a short last page, SUM(jobs_count) when the filter selects whole batches, else
COUNT(*)). API and SQL repetitions alternate. `--scale 0.1` stops at 100k for a quick run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# `python bench/x.py` puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's `queue`: replace it with the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402

JOBS_PER_BATCH = 100
PROJECTS = 50
LIMIT = 100
HEAVY = 0.010  # s: a query whose SQL takes longer is compared as a whole; below, the fixed cost of HTTP shows
# Filters whose `total` needs no COUNT over jobs: whole batches (SUM(jobs_count)) or a short page (id).
# Filters on the keys of the listing indexes only: a deep page is a deferred join (jobs.filters.page).
DEFERRED_JOIN = {"none", "project_id", "dates"}
CHEAP_TOTAL = {"none", "id", "project_id", "batch_id", "batch_id_creation_order"}
COLUMNS = (
    "j.id, j.batch_id, j.project_id, j.user_id, j.status, j.runs, j.variables, j.errors, j.created_at, "
    'j.updated_at, j.start_timestamp, j.end_timestamp, j.parent_id, j."order"'
)


def load(conn: Any, user_id: int, project_ids: list[str], device_id: str, first_batch: int, n_batches: int) -> None:
    """Batches [first_batch, first_batch + n_batches) and their jobs, spread over a year."""
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO batches_batch (id, project_id, user_id, device_id, status, open, priority, tags,
                created_at, updated_at, start_datetime, end_datetime, last_activity_at, jobs_count)
            SELECT md5('batch' || b)::uuid, (%(projects)s::uuid[])[1 + b %% %(np)s], %(user)s, %(device)s,
                'DONE', false, 1, '[]'::jsonb,
                timestamptz '2025-01-01' + b * interval '3 minutes',
                timestamptz '2025-01-01' + b * interval '3 minutes',
                timestamptz '2025-01-01' + b * interval '3 minutes',
                timestamptz '2025-01-01' + b * interval '3 minutes' + interval '1 minute',
                timestamptz '2025-01-01' + b * interval '3 minutes', %(per)s
            FROM generate_series(%(first)s::int, %(last)s::int) AS b
            """,
            {
                "projects": project_ids,
                "np": len(project_ids),
                "user": user_id,
                "device": device_id,
                "per": JOBS_PER_BATCH,
                "first": first_batch,
                "last": first_batch + n_batches - 1,
            },
        )
        cur.execute(
            """
            INSERT INTO jobs_job (id, batch_id, project_id, user_id, "order", status, runs, variables, errors,
                price, created_at, updated_at, start_timestamp, end_timestamp, lease_owner, attempts, result_path)
            SELECT md5('job' || b || '-' || o)::uuid, md5('batch' || b)::uuid,
                (%(projects)s::uuid[])[1 + b %% %(np)s], %(user)s, o,
                CASE WHEN o %% 20 = 0 THEN 'ERROR' WHEN o %% 20 = 1 THEN 'CANCELED'
                     WHEN o %% 20 = 2 THEN 'PENDING' ELSE 'DONE' END,
                1 + (b * 7 + o * 13) %% 1000,
                jsonb_build_object('omega_max', (o %% 50) / 10.0),
                CASE WHEN o %% 20 = 0 THEN '["The backend failed."]'::jsonb END,
                1 + (b * 7 + o * 13) %% 1000,
                timestamptz '2025-01-01' + b * interval '3 minutes' + o * interval '1 second',
                timestamptz '2025-01-01' + b * interval '3 minutes' + o * interval '1 second',
                timestamptz '2025-01-01' + b * interval '3 minutes' + o * interval '1 second',
                timestamptz '2025-01-01' + b * interval '3 minutes' + o * interval '2 second',
                '', 1, ''
            FROM generate_series(%(first)s::int, %(last)s::int) AS b, generate_series(0, %(per)s::int - 1) AS o
            """,
            {
                "projects": project_ids,
                "np": len(project_ids),
                "user": user_id,
                "per": JOBS_PER_BATCH,
                "first": first_batch,
                "last": first_batch + n_batches - 1,
            },
        )
    conn.commit()
    with conn.cursor() as cur:
        # What autovacuum does after a bulk load: statistics and the visibility map (index-only counts).
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE batches_batch")
        cur.execute("VACUUM ANALYZE jobs_job")
        cur.execute("ANALYZE portal_membership")
        cur.execute("ANALYZE portal_project")
        conn.autocommit = False


def filters(
    conn: Any, project_ids: list[str], user_id: int, n_batches: int
) -> list[tuple[str, dict, str, list, str | None]]:
    """(name, API query params, SQL WHERE on top of membership, SQL params, WHERE on batches) per SDK filter."""
    mid = n_batches // 2
    with conn.cursor() as cur:
        cur.execute("SELECT md5('batch' || %s)::uuid::text", (mid,))
        batch_id = cur.fetchone()[0]
        cur.execute('SELECT id::text FROM jobs_job WHERE batch_id = %s::uuid ORDER BY "order" LIMIT 10', (batch_id,))
        job_ids = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT created_at FROM jobs_job WHERE batch_id = %s::uuid LIMIT 1", (batch_id,))
        middle = cur.fetchone()[0]
    from datetime import timedelta

    start, end = middle - timedelta(days=3), middle + timedelta(days=3)
    project = project_ids[mid % len(project_ids)]
    # The 5th item: the same filter on batches when it selects whole batches (total = SUM(jobs_count)).
    return [
        ("none", {}, "", [], ""),
        ("id", {"id": job_ids}, "AND j.id = ANY(%s::uuid[])", [job_ids], None),
        ("project_id", {"project_id": project}, "AND j.project_id = %s::uuid", [project],
         "AND b.project_id = %s::uuid"),
        ("user_id", {"user_id": str(user_id)}, "AND j.user_id = %s", [user_id], None),
        ("batch_id", {"batch_id": batch_id}, "AND j.batch_id = %s::uuid", [batch_id], "AND b.id = %s::uuid"),
        ("batch_id_creation_order", {"batch_id": batch_id, "order_by": "creation_order", "order_by_direction": "ASC"},
         "AND j.batch_id = %s::uuid", [batch_id], "AND b.id = %s::uuid"),
        ("status", {"status": "ERROR"}, "AND j.status = ANY(%s)", [["ERROR"]], None),
        ("runs", {"min_runs": 100, "max_runs": 150}, "AND j.runs >= %s AND j.runs <= %s", [100, 150], None),
        ("errors", {"errors": "true"}, "AND j.errors IS NOT NULL AND j.errors <> '[]'::jsonb", [], None),
        ("dates", {"start_date": start.isoformat(), "end_date": end.isoformat()},
         "AND j.created_at >= %s AND j.created_at <= %s", [start, end], None),
    ]  # fmt: skip


def sql_page(
    conn: Any,
    user_id: int,
    where: str,
    params: list,
    offset: int,
    creation_order: bool,
    batch_where: str | None,
    deferred: bool,
) -> int:
    """The hand-written equivalent, doing what the API does: one page of 100 rows, then the total.

    The one-batch creation-order listing (`Batch.ordered_jobs`) pages by key, as the API does; a
    deep page filtered on the listing index's keys only (none, project_id, dates) is a deferred join.
    The total: none needed when the page is short but not past the end (offset + rows); else
    SUM(jobs_count) over the batches when the filter selects whole batches; else COUNT(*).
    """
    membership = "IN (SELECT project_id FROM portal_membership WHERE user_id = %s) "
    base = "FROM jobs_job j WHERE j.project_id " + membership + where
    order = 'j.batch_id, j."order"' if creation_order else 'j.created_at DESC, j."order" DESC'
    with conn.cursor() as cur:
        if creation_order:  # one batch, ascending: by key, as the API does (orders are 0…n-1)
            page = f'SELECT {COLUMNS} {base} AND j."order" >= %s ORDER BY {order} LIMIT {LIMIT}'
            cur.execute(page, [user_id, *params, offset])
        elif deferred and offset:  # as the API: skip the offset in the index, then read the page's rows
            ids = f"SELECT j.id {base} ORDER BY {order} LIMIT {LIMIT} OFFSET {offset}"
            cur.execute(f"SELECT {COLUMNS} FROM jobs_job j WHERE j.id IN ({ids}) ORDER BY {order}", [user_id, *params])
        else:
            cur.execute(f"SELECT {COLUMNS} {base} ORDER BY {order} LIMIT {LIMIT} OFFSET {offset}", [user_id, *params])
        rows = cur.fetchall()
        if len(rows) < LIMIT and (rows or not offset):
            return offset + len(rows)
        if batch_where is None:
            cur.execute("SELECT count(*) " + base, [user_id, *params])
        else:
            batch_base = "FROM batches_batch b WHERE b.project_id " + membership + batch_where
            cur.execute("SELECT COALESCE(SUM(b.jobs_count), 0) " + batch_base, [user_id, *params])
        return int(cur.fetchone()[0])


def alternate(a: Any, b: Any, reps: int) -> tuple[list[float], list[float]]:
    """One warm-up each, then a, b, a, b…: load from outside falls on both sides alike."""
    a(), b()
    out: tuple[list[float], list[float]] = ([], [])
    for _ in range(reps):
        for fn, times in ((a, out[0]), (b, out[1])):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = up to 1M jobs; 0.1 = up to 100k")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    args = parser.parse_args()

    env = common.configure("postgres", "bench_tweezer_listing")
    common.reset_database("postgres")
    user, project, token = common.make_member()
    from backends.models import Device
    from portal.models import Membership, Project

    projects = [project] + [Project.objects.create(name=f"bench project {i}") for i in range(1, PROJECTS)]
    for p in projects[1:]:
        Membership.objects.create(user=user, project=p, role=Membership.Role.MEMBER)
    project_ids = [str(p.pk) for p in projects]
    device_id = str(Device.objects.get(name="EMU_FREE").pk)

    import psycopg

    conn = psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={common.DB_NAME}")
    report = common.Report()
    report.line(common.machine())
    sizes = [s for s in (10_000, 100_000, 1_000_000) if s <= 1_000_000 * args.scale + 1]
    web, base = common.start_web(env, workers=1, threads=1)
    worst: dict[str, float] = {}
    flat: dict[str, dict[int, float]] = {}
    flat_sql: dict[str, dict[int, float]] = {}
    heavy: dict[str, tuple[float, float]] = {}
    cheap: dict[str, tuple[float, float]] = {}
    loaded_batches = 0
    with common.running(web):
        session = common.api(base, token)
        for size in sizes:
            n_batches = size // JOBS_PER_BATCH
            t0 = time.perf_counter()
            load(conn, user.pk, project_ids, device_id, loaded_batches, n_batches - loaded_batches)
            loaded_batches = n_batches
            report.line(f"--- {size:,} jobs (loaded in {time.perf_counter() - t0:.1f} s) ---")
            for name, query, where, params, batch_where in filters(conn, project_ids, user.pk, n_batches):
                creation_order = name == "batch_id_creation_order"
                for offset in (0, 10_000, 900_000):
                    q = {**query, "offset": offset, "limit": LIMIT}

                    def call_api(q: dict = q) -> Any:
                        r = session.get(f"{base}/core/api/v2/jobs", params=q, timeout=300)
                        if r.status_code != 200:
                            raise RuntimeError(f"{r.status_code} {r.text[:300]}")
                        return r.json()["pagination"]["total"]

                    def call_sql(
                        offset: int = offset,
                        where: str = where,
                        params: list = params,
                        co: bool = creation_order,
                        bw: str | None = batch_where,
                        deferred: bool = name in DEFERRED_JOIN,
                    ) -> Any:
                        return sql_page(conn, user.pk, where, params, offset, co, bw, deferred)

                    api_total, sql_total = call_api(), call_sql()
                    if api_total != sql_total:
                        raise RuntimeError(f"{name}: API total {api_total} != SQL total {sql_total}")
                    t_api, t_sql = alternate(call_api, call_sql, args.reps)
                    m_api, m_sql = statistics.median(t_api), statistics.median(t_sql)
                    ratio = m_api / m_sql
                    key = f"{name}@{offset}"
                    worst[key] = max(worst.get(key, 0), ratio)
                    flat.setdefault(key, {})[size] = m_api
                    flat_sql.setdefault(key, {})[size] = m_sql
                    if size == sizes[-1]:
                        (heavy if m_sql >= HEAVY else cheap)[key] = (ratio, m_api - m_sql)
                    report.line(
                        f"{size:>9,} {name:<24} offset {offset:>7,} total {api_total:>9,}: api "
                        f"{m_api * 1000:8.2f} ms [{min(t_api) * 1000:.1f}–{max(t_api) * 1000:.1f}]  sql "
                        f"{m_sql * 1000:8.2f} ms [{min(t_sql) * 1000:.1f}–{max(t_sql) * 1000:.1f}]  ratio {ratio:.2f}"
                    )
    conn.close()
    report.line("growth of the median from the smallest to the largest size (1.00 = flat): api, sql")
    growth = {}
    for key, by_size in flat.items():
        growth[key] = by_size[sizes[-1]] / by_size[sizes[0]]
        sql_growth = flat_sql[key][sizes[-1]] / flat_sql[key][sizes[0]]
        report.line(f"  {key:<36} {growth[key]:6.2f}×  {sql_growth:6.2f}×")
    for offset in (0, 10_000, 900_000):
        keys = [k for k in growth if k.endswith(f"@{offset}")]
        report.ratio(f"listing_growth_offset{offset}_worst", max(growth[k] for k in keys), "flat (~1)")
    # Filters whose total needs no count of jobs (whole batches, or a short page): these can be flat.
    batch_level = [k for k in growth if k.split("@")[0] in CHEAP_TOTAL and k.endswith("@0")]
    report.ratio("listing_growth_offset0_worst_cheap_total", max(growth[k] for k in batch_level), "flat (~1)")
    if heavy:
        report.ratio(
            f"listing_api_vs_sql_worst_sql_over_{HEAVY * 1000:.0f}ms", max(r for r, _ in heavy.values()), "<= 2"
        )
    if cheap:
        extra = statistics.median(d for _, d in cheap.values()) * 1000
        report.ratio(
            f"listing_api_vs_sql_worst_sql_under_{HEAVY * 1000:.0f}ms", max(r for r, _ in cheap.values()), "<= 2"
        )
        report.ratio(f"listing_api_minus_sql_ms_median_sql_under_{HEAVY * 1000:.0f}ms", extra, "(fixed cost)")
    report.ratio("listing_api_vs_sql_median", statistics.median(worst.values()), "<= 2")
    report.ratio("listing_api_vs_sql_worst", max(worst.values()), "<= 2")
    report.finish()
    if not args.keep:
        common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
