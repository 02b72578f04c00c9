"""Scenario 3: GET /core/api/v2/jobs at 10k / 100k / 1M jobs vs the equivalent hand-written SQL.

The table grows in place: 50 projects, 100 jobs per batch (10,000 batches at 1M), loaded with
INSERT … SELECT generate_series on the server. At each size every SDK filter is timed at
offsets 0 / 10,000 / 900,000 through the API (HTTP, auth, filters, `.total`, JSON), and the same
question asked of PostgreSQL directly with psycopg, the same way: one page of 100 rows, then the
total (none for a short last page, SUM(jobs_count) when the filter selects whole batches, else
COUNT(*)). API and SQL repetitions alternate. `--scale 0.1` stops at 100k for a quick run.

Targets (DESIGN.md §7): a first page of a filter whose total comes from counters kept on rows
(none, id, project, batch, status) is O(page): its time at the largest size ≤ 1.5× at 10k, one
`ratio listing_growth_…` line per filter, measured in one run: a second member whose projects
hold 10k jobs is asked the same first page, requests alternating with the first member's.
Filters whose exact total needs a count over the matches (user, runs, errors, dates) and deep
offsets cannot be: their growth is reported, and every query whose SQL takes ≥ 10 ms (its
fastest run) stays ≤ 2× that SQL.
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
# Filters on the keys of the listing indexes only: a deep page is a deferred join (jobs.filters.page).
DEFERRED_JOIN = {"none", "project_id", "dates"}
# DESIGN.md §7: the first page of these is O(page), its total read from counters kept on rows
# (SUM(jobs_count) or the per-status counters of the batches) or from a short page (id).
O_PAGE = ("none", "id", "project_id", "batch_id", "batch_id_creation_order", "status")
GROWTH_TARGET = 1.5
SMALL_FIRST_BATCH = 10_000_000  # the second member's batches (bench/listing.py main), after any size
COLUMNS = (
    "j.id, j.batch_id, j.project_id, j.user_id, j.status, j.runs, j.variables, j.errors, j.created_at, "
    'j.updated_at, j.start_timestamp, j.end_timestamp, j.parent_id, j."order"'
)


def load(conn: Any, user_id: int, project_ids: list[str], device_id: str, first_batch: int, n_batches: int) -> None:
    """Batches [first_batch, first_batch + n_batches) and their jobs, spread over a year.

    A batch's jobs are written together, in order, as `create_batch` writes them (one
    statement per batch): they sit side by side in the table, not one per page."""
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
                price, created_at, updated_at, start_timestamp, end_timestamp, lease_owner, attempts, result_path,
                dispatches)
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
                '', 1, '', 0
            FROM generate_series(%(first)s::int, %(last)s::int) AS b, generate_series(0, %(per)s::int - 1) AS o
            ORDER BY b, o
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


# name -> (WHERE on top of membership, WHERE on batches when the filter selects whole batches:
# total = SUM(jobs_count)).
FILTER_SQL: dict[str, tuple[str, str | None]] = {
    "none": ("", ""),
    "id": ("AND j.id = ANY(%s::uuid[])", None),
    "project_id": ("AND j.project_id = %s::uuid", "AND b.project_id = %s::uuid"),
    "user_id": ("AND j.user_id = %s", None),
    "batch_id": ("AND j.batch_id = %s::uuid", "AND b.id = %s::uuid"),
    "batch_id_creation_order": ("AND j.batch_id = %s::uuid", "AND b.id = %s::uuid"),
    "status": ("AND j.status = ANY(%s)", None),
    "runs": ("AND j.runs >= %s AND j.runs <= %s", None),
    "errors": ("AND j.errors IS NOT NULL AND j.errors <> '[]'::jsonb", None),
    "dates": ("AND j.created_at >= %s AND j.created_at <= %s", None),
}


def filters(
    conn: Any, project_ids: list[str], user_id: int, n_batches: int, first_batch: int = 0
) -> list[tuple[str, dict, list]]:
    """(name, API query params, SQL params of FILTER_SQL[name]) per SDK filter."""
    mid = first_batch + n_batches // 2
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
    return [
        ("none", {}, []),
        ("id", {"id": job_ids}, [job_ids]),
        ("project_id", {"project_id": project}, [project]),
        ("user_id", {"user_id": str(user_id)}, [user_id]),
        ("batch_id", {"batch_id": batch_id}, [batch_id]),
        ("batch_id_creation_order", {"batch_id": batch_id, "order_by": "creation_order", "order_by_direction": "ASC"},
         [batch_id]),
        ("status", {"status": "ERROR"}, [["ERROR"]]),
        ("runs", {"min_runs": 100, "max_runs": 150}, [100, 150]),
        ("errors", {"errors": "true"}, []),
        ("dates", {"start_date": start.isoformat(), "end_date": end.isoformat()}, [start.isoformat(), end.isoformat()]),
    ]  # fmt: skip


def sql_page(conn: Any, user_id: int, name: str, params: list, offset: int) -> tuple[list[tuple], int]:
    """The hand-written equivalent, doing what the API does: one page of 100 rows, then the total.

    The one-batch creation-order listing (`Batch.ordered_jobs`) pages by key, as the API does; a
    deep page filtered on the listing index's keys only (none, project_id, dates) is a deferred join.
    The total: none needed when the page is short but not past the end (offset + rows); else
    SUM(jobs_count) over the batches when the filter selects whole batches; else COUNT(*).
    """
    where, batch_where = FILTER_SQL[name]
    creation_order, deferred = name == "batch_id_creation_order", name in DEFERRED_JOIN
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
            return rows, offset + len(rows)
        if batch_where is None:
            cur.execute("SELECT count(*) " + base, [user_id, *params])
        else:
            batch_base = "FROM batches_batch b WHERE b.project_id " + membership + batch_where
            cur.execute("SELECT COALESCE(SUM(b.jobs_count), 0) " + batch_base, [user_id, *params])
        return rows, int(cur.fetchone()[0])


def alternate(*fns: Any, reps: int) -> list[list[float]]:
    """One warm-up each, then a, b, c, a, b, c…: load from outside falls on every side alike."""
    for fn in fns:
        fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, times in zip(fns, out, strict=True):
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
    # A second member whose projects hold the smallest size only: at the largest size, each
    # O(page) filter's first page is timed for both members alternately, so that the growth
    # ratio is measured in one run (the sizes one after the other drift with the machine).
    small_user, small_project, small_token = common.make_member("bench-small")
    small_projects = [small_project] + [Project.objects.create(name=f"small project {i}") for i in range(1, PROJECTS)]
    for p in small_projects[1:]:
        Membership.objects.create(user=small_user, project=p, role=Membership.Role.MEMBER)
    small_ids = [str(p.pk) for p in small_projects]

    import psycopg

    conn = psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={common.DB_NAME}")
    report = common.Report()
    report.line(common.machine())
    sizes = [s for s in (10_000, 100_000, 1_000_000) if s <= 1_000_000 * args.scale + 1]
    web, base = common.start_web(env, workers=1, threads=1)
    flat: dict[str, dict[int, float]] = {}
    flat_sql: dict[str, dict[int, float]] = {}
    heavy: dict[str, float] = {}
    loaded_batches = 0
    small_batches = sizes[0] // JOBS_PER_BATCH
    load(conn, small_user.pk, small_ids, device_id, SMALL_FIRST_BATCH, small_batches)
    alternated: dict[str, tuple[float, float, float, float]] = {}
    with common.running(web):
        session = common.api(base, token)
        small_session = common.api(base, small_token)
        for size in sizes:
            n_batches = size // JOBS_PER_BATCH
            t0 = time.perf_counter()
            load(conn, user.pk, project_ids, device_id, loaded_batches, n_batches - loaded_batches)
            loaded_batches = n_batches
            report.line(f"--- {size:,} jobs (loaded in {time.perf_counter() - t0:.1f} s) ---")
            for name, query, params in filters(conn, project_ids, user.pk, n_batches):
                for offset in (0, 10_000, 900_000):
                    q = {**query, "offset": offset, "limit": LIMIT}

                    def call_api(q: dict = q) -> Any:
                        r = session.get(f"{base}/core/api/v2/jobs", params=q, timeout=300)
                        if r.status_code != 200:
                            raise RuntimeError(f"{r.status_code} {r.text[:300]}")
                        return r.json()["pagination"]["total"]

                    def call_sql(name: str = name, params: list = params, offset: int = offset) -> Any:
                        return sql_page(conn, user.pk, name, params, offset)[1]

                    api_total, sql_total = call_api(), call_sql()
                    if api_total != sql_total:
                        raise RuntimeError(f"{name}: totals differ: API {api_total}, SQL {sql_total}")
                    t_api, t_sql = alternate(call_api, call_sql, reps=args.reps)
                    m_api, m_sql = statistics.median(t_api), statistics.median(t_sql)
                    key = f"{name}@{offset}"
                    flat.setdefault(key, {})[size] = m_api
                    flat_sql.setdefault(key, {})[size] = m_sql
                    # Heavy by the SQL's fastest run: its own cost, not a moment the machine was busy.
                    if min(t_sql) >= HEAVY and size == sizes[-1]:
                        heavy[key] = m_api / m_sql
                    report.line(
                        f"{size:>9,} {name:<24} offset {offset:>7,} total {api_total:>9,}: api "
                        f"{m_api * 1000:8.2f} ms [{min(t_api) * 1000:.1f}–{max(t_api) * 1000:.1f}]  sql "
                        f"{m_sql * 1000:8.2f} ms [{min(t_sql) * 1000:.1f}–{max(t_sql) * 1000:.1f}]  "
                        f"api/sql {m_api / m_sql:.2f}"
                    )
        # At the largest size: each O(page) filter, first page, for the member who sees `large`
        # jobs and for the one who sees `small`, requests alternating.
        small_filters = {f[0]: f for f in filters(conn, small_ids, small_user.pk, small_batches, SMALL_FIRST_BATCH)}
        for name, query, params in filters(conn, project_ids, user.pk, n_batches):
            if name not in O_PAGE:
                continue
            _, small_query, small_params = small_filters[name]

            def get(s: Any, q: dict) -> Any:
                r = s.get(f"{base}/core/api/v2/jobs", params={**q, "offset": 0, "limit": LIMIT}, timeout=300)
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code} {r.text[:300]}")
                return r.json()["pagination"]["total"]

            times = alternate(
                lambda q=query: get(session, q),
                lambda q=small_query: get(small_session, q),
                lambda n=name, p=params: sql_page(conn, user.pk, n, p, 0),
                lambda n=name, p=small_params: sql_page(conn, small_user.pk, n, p, 0),
                reps=max(args.reps, 15),
            )
            m = [statistics.median(t) for t in times]
            alternated[name] = (m[0], m[1], m[2], m[3])
    conn.close()
    small, large = sizes[0], sizes[-1]
    prefix = f"listing_growth_{common.size_label(large)}_vs_{common.size_label(small)}"
    report.line(f"growth of the median from {small:,} to {large:,} jobs, sizes one after the other: api, sql")
    growth = {}
    for key, by_size in flat.items():
        growth[key] = by_size[large] / by_size[small]
        sql_growth = flat_sql[key][large] / flat_sql[key][small]
        report.line(f"  {key:<36} {growth[key]:6.2f}×  {sql_growth:6.2f}×")
    report.line(
        f"at {large:,} jobs, queries whose SQL takes >= {HEAVY * 1000:.0f} ms, api/sql: "
        + (", ".join(f"{k} {r:.2f}" for k, r in sorted(heavy.items(), key=lambda kv: -kv[1])) or "none")
    )
    report.line(f"first page, {large:,} vs {small:,} jobs seen, in one run (two members, alternating): api, sql")
    for name, (api_l, api_s, sql_l, sql_s) in alternated.items():
        report.line(
            f"  {name:<24} api {api_l * 1000:7.2f} / {api_s * 1000:7.2f} ms = {api_l / api_s:5.2f}×   "
            f"sql {sql_l * 1000:7.2f} / {sql_s * 1000:7.2f} ms = {sql_l / sql_s:5.2f}×"
        )
    # O(page): a first page whose total comes from counters on rows (DESIGN.md §7).
    one_run = {name: api_l / api_s for name, (api_l, api_s, _, _) in alternated.items()}
    for name in O_PAGE:
        report.ratio(f"{prefix}_{name}", one_run[name], f"<= {GROWTH_TARGET}")
    report.ratio(f"{prefix}_worst_o_page", max(one_run.values()), f"<= {GROWTH_TARGET}")
    # A count over the matches, or a deep offset: not O(page); the growth is reported.
    for name in (n for n in FILTER_SQL if n not in O_PAGE):
        report.ratio(f"{prefix}_{name}", growth[f"{name}@0"], "reported (a count over the matches)")
    for offset in (10_000, 900_000):
        keys = [k for k in growth if k.endswith(f"@{offset}")]
        report.ratio(f"{prefix}_offset{offset}_worst", max(growth[k] for k in keys), "reported")
    if heavy:
        report.ratio(f"listing_api_vs_sql_worst_sql_over_{HEAVY * 1000:.0f}ms", max(heavy.values()), "<= 2")
    report.finish()
    if not args.keep:
        common.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
