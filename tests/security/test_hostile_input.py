"""Hostile request bodies get a clear 4xx and create nothing (rows counted before and after)."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import pytest
from django.test import Client

from batches.models import Batch
from jobs.models import Job
from portal.middleware import json_depth_ok
from portal.models import CreditTransaction
from tests.sequences import analog_sequence

pytestmark = pytest.mark.django_db


def _rows() -> tuple[int, int, int]:
    return Batch.objects.count(), Job.objects.count(), CreditTransaction.objects.count()


@pytest.fixture
def api(member, devices) -> Any:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {member.token}")
    client.member = member  # type: ignore[attr-defined]  # test-only attribute
    return client


def _batch(member: Any, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sequence_builder": analog_sequence(2),
        "jobs": [{"runs": 10, "variables": {"omega_max": 1.0}}],
        "device_type": "EMU_FREE",
        "project_id": str(member.project_id),
    }
    body.update(overrides)
    return body


def _refused(response: Any, *codes: int) -> str:
    assert response.status_code in codes, (response.status_code, response.content[:300])
    body = response.json()
    assert body["status"] == "fail" and body["code"] == response.status_code
    assert 10 < len(body["message"]) < 2000  # a sentence, not a traceback or a 1 MB echo
    return str(body["message"])


def _hostile_bodies(member: Any) -> dict[str, tuple[bytes, dict[str, str], tuple[int, ...]]]:
    ok = _batch(member)
    json_headers = {"content_type": "application/json"}
    nested = '{"a":' * 100_000 + "1" + "}" * 100_000
    return {
        "10 MB sequence": (
            json.dumps(_batch(member, sequence_builder="x" * 10_000_000)).encode(),
            json_headers,
            (400, 413),
        ),
        "sequence that is itself deeply nested JSON": (
            json.dumps(_batch(member, sequence_builder="[" * 50_000 + "]" * 50_000)).encode(),
            json_headers,
            (400,),
        ),
        "deeply nested JSON body": (
            (json.dumps(ok)[:-1] + ', "configuration": ' + nested + "}").encode(),
            json_headers,
            (400,),
        ),
        "100,000 jobs in one request": (
            json.dumps(_batch(member, jobs=[{"runs": 1, "variables": {"omega_max": 1}}] * 100_000)).encode(),
            json_headers,
            (400, 413),
        ),
        "non-UTF-8 body": (b'{"sequence_builder": "\xff\xfe\xfa", "jobs": []}', json_headers, (400,)),
        "latin-1 body": (
            json.dumps(_batch(member, tags=["café"]), ensure_ascii=False).encode("latin-1"),
            json_headers,
            (400,),
        ),
        "not JSON at all": (b"\x00\x01\x02garbage", json_headers, (400,)),
        "negative runs": (json.dumps(_batch(member, jobs=[{"runs": -5}])).encode(), json_headers, (400,)),
        "zero runs": (json.dumps(_batch(member, jobs=[{"runs": 0}])).encode(), json_headers, (400,)),
        "huge runs": (json.dumps(_batch(member, jobs=[{"runs": 10**30}])).encode(), json_headers, (400,)),
        "runs as text": (json.dumps(_batch(member, jobs=[{"runs": "5"}])).encode(), json_headers, (400,)),
        "runs as float": (json.dumps(_batch(member, jobs=[{"runs": 5.5}])).encode(), json_headers, (400,)),
        "runs as NaN": (json.dumps(_batch(member)).replace('"runs": 10', '"runs": NaN').encode(), json_headers, (400,)),
        "omega as Infinity": (
            json.dumps(_batch(member)).replace('"omega_max": 1.0', '"omega_max": Infinity').encode(),
            json_headers,
            (400,),
        ),
        "tag with a NUL byte": (json.dumps(_batch(member, tags=["ok", "bad\x00tag"])).encode(), json_headers, (400,)),
        "10,000 tags": (
            json.dumps(_batch(member, tags=[f"t{i}" for i in range(10_000)])).encode(),
            json_headers,
            (400,),
        ),
        "a 100 kB tag": (json.dumps(_batch(member, tags=["量" * 100_000])).encode(), json_headers, (400,)),
        "tags not a list": (json.dumps(_batch(member, tags={"a": 1})).encode(), json_headers, (400,)),
        "jobs not a list": (json.dumps(_batch(member, jobs={"runs": 1})).encode(), json_headers, (400,)),
        "project id not a UUID": (
            json.dumps(_batch(member, project_id="'; DROP TABLE")).encode(),
            json_headers,
            (400,),
        ),
        "unknown device": (json.dumps(_batch(member, device_type="../../etc/passwd")).encode(), json_headers, (400,)),
        "gzip bomb (64 MB of zeros in 64 kB)": (
            _gzip_bomb(),
            {"content_type": "application/json", "HTTP_CONTENT_ENCODING": "gzip"},
            (400, 413),
        ),
        "broken gzip": (
            b"\x1f\x8b\x08\x00garbage",
            {"content_type": "application/json", "HTTP_CONTENT_ENCODING": "gzip"},
            (400,),
        ),
    }


def _gzip_bomb() -> bytes:
    chunk = b"0" * (1 << 20)
    import io

    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as handle:
        for _ in range(64):
            handle.write(chunk)
    return out.getvalue()


def test_hostile_batch_submissions_get_a_clear_4xx_and_create_nothing(api):
    before = _rows()
    answered = {}
    for name, (body, headers, codes) in _hostile_bodies(api.member).items():
        started = time.monotonic()
        response = api.generic("POST", "/core/api/v1/batches", data=body, **headers)
        print(f"{name}: {time.monotonic() - started:.2f} s")
        answered[name] = response.status_code
        _refused(response, *codes)
        assert _rows() == before, name
    print("\nFIGURE hostile submissions refused with 4xx, nothing created: " + f"{len(answered)} / {len(answered)}")
    for name, code in answered.items():
        print(f"  {code}  {name}")


def test_hostile_jobs_added_to_an_open_batch_are_refused_and_nothing_is_added(api):
    created = api.post("/core/api/v1/batches", data=_batch(api.member, open=True), content_type="application/json")
    assert created.status_code == 200, created.content
    url = f"/core/api/v2/batches/{created.json()['data']['id']}/jobs"
    before = _rows()
    bodies = {
        "20,000 jobs": json.dumps([{"runs": 1, "variables": {"omega_max": 1}}] * 20_000),
        "negative runs": json.dumps([{"runs": -1, "variables": {"omega_max": 1}}]),
        "nested": "[" * 100_000 + "]" * 100_000,
        "not a list": json.dumps({"runs": 1}),
    }
    for name, body in bodies.items():
        _refused(api.generic("POST", url, data=body, content_type="application/json"), 400, 413)
        assert _rows() == before, name
    _refused(api.generic("POST", url, data=b"\xff\xfe", content_type="application/json"), 400)
    assert _rows() == before


def test_unicode_tags_are_kept_exactly(api):
    tags = ["résumé", "量子", "🧪 run 3", "ﬁ-ligature", "RTL\u202eevil"]
    response = api.post("/core/api/v1/batches", data=_batch(api.member, tags=tags), content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["data"]["tags"] == tags
    listing = api.get("/core/api/v1/batches", {"tag": "量子"})
    assert [b["tags"] for b in listing.json()["data"]] == [tags]


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        ("[[[]]]", False),
        ("[[[[]]]]", True),
        ('["[[[[[[[[", "]]]]"]', False),  # brackets in strings do not nest
        ('["\\"[[[[[[", {"a": "\\\\"}]', False),  # nor after an escaped quote; an escaped backslash ends it
        ('{"a": [{"b": "}}}}"}, [[1]]]}', True),
        ('"never closed [[[[[[', True),  # not JSON anyway: refused either way
    ],
)
def test_the_depth_check_counts_nesting_outside_strings_only(text: str, deep: bool) -> None:
    assert json_depth_ok(text, 3) is not deep
    assert json_depth_ok(text.encode(), 3) is not deep
