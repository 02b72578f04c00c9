"""QPU over HTTP (docs/qpu-protocol.md): submit with an idempotency key, poll, fetch, cancel.

Every request has connect/read timeouts and is retried with exponential back-off on 5xx and
connection errors. A retried submit carries the same idempotency key (the job id), so the QPU
returns the job it already has instead of running it twice. Platform failures raise
`BackendUnavailable`, which the runner turns into ERROR + refund.
"""

from __future__ import annotations

import os
import time
from typing import Any

import requests
from django.conf import settings
from pulser import Sequence

from backends.adapters.base import Adapter, BackendUnavailable, Result, RunConfig, result_from_counter
from backends.models import Device

_TERMINAL = {"DONE", "ERROR", "CANCELED"}


class QpuAdapter(Adapter):
    requires_exact_device = True

    def __init__(self, device: Device) -> None:
        super().__init__(device)
        self.base_url = settings.QPU_URL.rstrip("/")
        self.session = requests.Session()
        # The environment (proxies, CA bundle) is read once here instead of at every request:
        # requests scans all of os.environ per request otherwise, a job's largest CPU cost.
        self.session.trust_env = False
        self.session.proxies = requests.utils.get_environ_proxies(self.base_url) if self.base_url else {}
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        if settings.QPU_TOKEN:
            self.session.headers["Authorization"] = f"Bearer {settings.QPU_TOKEN}"

    # --- HTTP with retries ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        retries: int | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> tuple[int, dict[str, Any]]:
        if not self.base_url:
            raise BackendUnavailable("no QPU endpoint is configured (QPU_URL).")
        retries = settings.QPU_RETRIES if retries is None else retries
        timeout = (settings.QPU_CONNECT_TIMEOUT, settings.QPU_READ_TIMEOUT)
        last = ""
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(settings.QPU_BACKOFF_SECONDS * 2 ** (attempt - 1))
            try:
                response = self.session.request(
                    method, f"{self.base_url}{path}", json=body, headers=headers, timeout=timeout
                )
            except requests.Timeout:
                last = f"no answer within {settings.QPU_READ_TIMEOUT:g} s"
                continue
            except requests.ConnectionError as exc:
                last = f"connection failed ({type(exc).__name__})"
                continue
            if response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                continue
            payload = _json(response)
            if response.status_code in ok:
                return response.status_code, payload
            reason = payload.get("error") or response.text[:200]
            raise BackendUnavailable(f"the QPU refused {method} {path} (HTTP {response.status_code}: {reason}).")
        raise BackendUnavailable(
            f"the QPU endpoint did not answer {method} {path} after {retries + 1} attempts (last: {last})."
        )

    # --- the adapter interface ----------------------------------------------------------------------

    def status(self) -> tuple[str, str]:
        if not self.base_url:
            return Device.Status.DOWN, "No QPU endpoint is configured (QPU_URL)."
        try:
            _, health = self._request("GET", "/health", retries=0)
        except BackendUnavailable as exc:
            return Device.Status.DOWN, f"The QPU endpoint is unreachable: {exc}"[:300]
        state = str(health.get("status", "DOWN")).upper()
        if state not in Device.Status.values:
            state = Device.Status.DOWN
        return state, str(health.get("reason") or "")[:300]

    def fetch_specs(self) -> str:
        """The Pulser device abstract representation the QPU serves."""
        _, payload = self._request("GET", "/specs")
        specs = payload.get("specs")
        if not isinstance(specs, str):
            raise BackendUnavailable("the QPU's /specs answer has no 'specs' string.")
        return specs

    def specs(self) -> str:
        return self.device.specs

    def submit(self, built: Sequence, runs: int, key: str) -> str:
        """Hand the built sequence to the QPU; the same key always gives back the same QPU job."""
        # Built from a sequence validated at submission and variables checked since: skip pulser's
        # JSON-schema validation of the export, the other large CPU cost of a QPU job.
        body = {"sequence": built.to_abstract_repr(skip_validation=True), "runs": runs, "idempotency_key": key}
        _, job = self._request("POST", "/jobs", body=body, headers={"Idempotency-Key": key})
        return str(job["id"])

    def poll(self, handle: str) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{handle}")[1]

    def fetch_result(self, handle: str) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{handle}/result")[1]

    def cancel(self, handle: str) -> None:
        self._request("POST", f"/jobs/{handle}/cancel", body={})

    def run(self, built: Sequence, runs: int, config: RunConfig) -> Result:
        # The job id is the key: a worker that re-runs the job after a crash finds the QPU job it started.
        handle = self.submit(built, runs, config.job_id or f"anonymous-{time.time_ns()}")
        deadline = time.monotonic() + settings.QPU_MAX_WAIT_SECONDS
        while True:
            state = self.poll(handle)
            status = str(state.get("status"))
            if status in _TERMINAL:
                break
            if time.monotonic() >= deadline:
                try:
                    self.cancel(handle)
                except BackendUnavailable:
                    pass  # it is over for us either way; the QPU's own timeout cleans up
                raise BackendUnavailable(
                    f"the QPU did not finish the job within {settings.QPU_MAX_WAIT_SECONDS:g} s "
                    f"(last status {status}); it was canceled."
                )
            time.sleep(settings.QPU_POLL_SECONDS)
        if status != "DONE":
            raise BackendUnavailable(f"the QPU ended the job {status}: {state.get('error') or 'no reason given'}.")
        payload = self.fetch_result(handle)
        counter = payload.get("counter")
        if not isinstance(counter, dict):
            raise BackendUnavailable("the QPU's result has no 'counter'.")
        serialised = payload.get("serialised_results") or _serialise_counter(built, counter)
        result = result_from_counter(counter, serialised)
        result.handle = handle
        return result


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _serialise_counter(built: Sequence, counter: dict[str, int]) -> str | None:
    """Pulser's abstract result for a QPU that only sends counts."""
    try:
        from collections import Counter

        from pulser.backend.results import Results

        results = Results.from_final_bitstrings(
            list(built.register.qubit_ids), built.get_duration(include_fall_time=True), Counter(counter)
        )
        return str(results.to_abstract_repr())
    except Exception:  # noqa: BLE001 - the counts are the result; this is a bonus
        return None
