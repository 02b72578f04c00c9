"""A QPU endpoint that speaks docs/qpu-protocol.md, runs jobs with pulser-simulation, and misbehaves on demand.

Run it as its own process: `python -m backends.qpu_simulator --port 8765 [--token T] [--latency 0.2]`
(`--parallel N --no-simulation`: N jobs at once, each answered after --latency without a simulation).
One worker thread runs the queue in order (a QPU has one slot). Faults are queued per endpoint
through `POST /admin/faults` (or `--faults '{"submit": ["503", "drop_after"]}'`): each request to
that endpoint consumes the next one. `GET /admin/stats` counts submissions and runs per
idempotency key, so tests can prove that a retried submit never ran a job twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import queue
import socket
import threading
import time
import uuid
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("qpu_simulator")

#: What a fault does to the request that consumes it.
FAULT_KINDS = {
    "503": "answer 503 without doing anything",
    "500_after": "do the work, then answer 500",
    "drop": "close the connection without doing anything",
    "drop_after": "do the work, then close the connection without an answer",
    "slow": "do the work, then wait `slow_seconds` before answering (a client read timeout)",
}
ENDPOINTS = ("submit", "status", "result", "cancel", "specs", "health")


def default_specs() -> str:
    from pulser.devices import AnalogDevice

    return str(dataclasses.replace(AnalogDevice, name="FRESNEL").to_abstract_repr())


@dataclasses.dataclass
class QpuJob:
    id: str
    key: str
    sequence: str
    runs: int
    status: str = "QUEUED"
    never_finish: bool = False
    counter: dict[str, int] | None = None
    serialised_results: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "idempotency_key": self.key,
            "status": self.status,
            "runs": self.runs,
            "error": self.error,
        }


class QpuState:
    """Jobs, the queue, the faults and the counters; shared by the request threads."""

    def __init__(self, *, specs: str, latency: float, token: str, slow_seconds: float, simulate: bool = True) -> None:
        self.specs = specs
        self.latency = latency
        self.simulate = simulate  # False: every shot reads all zeros, no pulser (latency-bound benchmarks)
        self.token = token
        self.slow_seconds = slow_seconds
        self.health = "UP"
        self.health_reason = ""
        self.never_finish = 0  # the next N submitted jobs stay RUNNING until canceled
        self.lock = threading.Lock()
        self.jobs: dict[str, QpuJob] = {}
        self.by_key: dict[str, str] = {}
        self.submissions: dict[str, int] = {}
        self.runs: dict[str, int] = {}
        self.faults: dict[str, list[str]] = {name: [] for name in ENDPOINTS}
        self.queue: queue.Queue[str] = queue.Queue()
        self._device: Any = None

    def next_fault(self, endpoint: str) -> str | None:
        with self.lock:
            pending = self.faults.get(endpoint) or []
            return pending.pop(0) if pending else None

    def count_submission(self, key: str) -> None:
        """Every POST /jobs that reached us, faulted or not: what a test compares with `runs`."""
        with self.lock:
            self.submissions[key] = self.submissions.get(key, 0) + 1

    def submit(self, sequence: str, runs: int, key: str) -> tuple[QpuJob, bool]:
        """The job for this key, created and queued at most once: (job, created)."""
        with self.lock:
            if key in self.by_key:
                return self.jobs[self.by_key[key]], False
            job = QpuJob(id=uuid.uuid4().hex, key=key, sequence=sequence, runs=runs)
            if self.never_finish > 0:
                self.never_finish -= 1
                job.never_finish = True
            self.jobs[job.id] = job
            self.by_key[key] = job.id
        self.queue.put(job.id)
        return job, True

    def device(self) -> Any:
        if self._device is None:
            from pulser.json.abstract_repr.deserializer import deserialize_device

            self._device = deserialize_device(self.specs)
        return self._device

    def work(self) -> None:
        """The QPU: one job at a time, in submission order."""
        while True:
            job_id = self.queue.get()
            with self.lock:
                job = self.jobs.get(job_id)  # type: ignore[assignment]
                if job is None or job.status != "QUEUED":  # forgotten by a reset, or canceled
                    continue
                job.status = "RUNNING"
            if job.never_finish:
                continue  # stays RUNNING until someone cancels it
            time.sleep(self.latency)
            try:
                counter, serialised = self._simulate(job) if self.simulate else self._zeros(job)
            except Exception as exc:  # noqa: BLE001 - the protocol reports it as the job's error
                log.warning("job %s failed: %s", job.id, exc)
                with self.lock:
                    if job.status == "RUNNING":
                        job.status, job.error = "ERROR", f"{type(exc).__name__}: {exc}"[:500]
                continue
            with self.lock:
                self.runs[job.key] = self.runs.get(job.key, 0) + 1
                if job.status == "RUNNING":
                    job.status, job.counter, job.serialised_results = "DONE", counter, serialised

    @staticmethod
    def _zeros(job: QpuJob) -> tuple[dict[str, int], str | None]:
        """A result without a simulation: every shot measures the ground state."""
        atoms = json.loads(job.sequence).get("register") or [{}]
        return {"0" * len(atoms): job.runs}, None

    def _simulate(self, job: QpuJob) -> tuple[dict[str, int], str | None]:
        from pulser import Sequence
        from pulser.backend import BitStrings
        from pulser_simulation import QutipBackendV2, QutipConfig

        seq = Sequence.from_abstract_repr(job.sequence)
        if seq.device != self.device():
            raise ValueError(f"the sequence is declared for '{seq.device.name}', not for this QPU")
        if seq.is_parametrized() or seq.is_register_mappable():
            raise ValueError("the sequence must be built (no variables, no mappable register)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = QutipConfig(observables=[BitStrings(evaluation_times=[1.0], num_shots=job.runs)])
            results = QutipBackendV2(seq, config=config).run()
        counter = {str(k): int(v) for k, v in results.final_bitstrings.items()}
        try:
            serialised = str(results.to_abstract_repr())
        except Exception:  # noqa: BLE001 - counts are the result; the abstract repr is a bonus
            serialised = None
        return counter, serialised


class Handler(BaseHTTPRequestHandler):
    server_version = "TweezerQpuSimulator/1"
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without this, Nagle's algorithm holds the body until
    # the client's delayed ACK, a stall added to every answer on a kept-alive connection.
    disable_nagle_algorithm = True
    state: QpuState  # set on the class by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.info("%s %s", self.address_string(), format % args)

    # --- plumbing ---------------------------------------------------------------------------

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"{}")

    def _authorized(self) -> bool:
        if not self.state.token or self.path.startswith("/admin/"):
            return True
        return self.headers.get("Authorization") == f"Bearer {self.state.token}"

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        parts = [p for p in path.split("/") if p]
        if not self._authorized():
            self._send(401, {"error": "missing or wrong bearer token"})
            return
        if parts[:1] == ["admin"]:
            self._admin(method, parts[1:])
            return
        try:
            body = self._body() if method == "POST" else {}
        except ValueError:
            self._send(400, {"error": "the body is not JSON"})
            return
        routes = {
            ("GET", 1, "health"): ("health", self._health),
            ("GET", 1, "specs"): ("specs", self._specs),
            ("POST", 1, "jobs"): ("submit", self._submit),
            ("GET", 2, "jobs"): ("status", self._status),
            ("GET", 3, "jobs"): ("result", self._result),
            ("POST", 3, "jobs"): ("cancel", self._cancel),
        }
        route = routes.get((method, len(parts), parts[0] if parts else ""))
        if route is None or (len(parts) == 3 and parts[2] not in ("result", "cancel")):
            self._send(404, {"error": f"no route {method} {path}"})
            return
        if len(parts) == 3 and (parts[2] == "result") != (method == "GET"):
            self._send(405, {"error": f"{method} not allowed on {path}"})
            return
        endpoint, handler = route
        if endpoint == "submit":
            self.state.count_submission(self._key(body))
        fault = self.state.next_fault(endpoint)
        if fault == "503":
            self._send(503, {"error": "injected fault: service unavailable"})
            return
        if fault == "drop":
            self._drop()
            return
        status, answer = handler(parts, body)
        if fault == "500_after":
            self._send(500, {"error": "injected fault after the work was done"})
        elif fault == "drop_after":
            self._drop()
        else:
            if fault == "slow":
                time.sleep(self.state.slow_seconds)
            self._send(status, answer)

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        self._dispatch("POST")

    # --- the protocol ------------------------------------------------------------------------

    def _health(self, parts: list[str], body: Any) -> tuple[int, dict[str, Any]]:
        with self.state.lock:
            queued = sum(1 for j in self.state.jobs.values() if j.status in ("QUEUED", "RUNNING"))
        return 200, {"status": self.state.health, "reason": self.state.health_reason, "queue": queued}

    def _specs(self, parts: list[str], body: Any) -> tuple[int, dict[str, Any]]:
        return 200, {"specs": self.state.specs}

    def _submit(self, parts: list[str], body: Any) -> tuple[int, dict[str, Any]]:
        key = self._key(body)
        if not key:
            return 400, {"error": "an Idempotency-Key header is required"}
        sequence, runs = body.get("sequence"), body.get("runs")
        if not isinstance(sequence, str) or not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
            return 400, {"error": "'sequence' (a string) and 'runs' (a positive integer) are required"}
        if self.state.health != "UP":
            return 503, {"error": f"the QPU is {self.state.health}: {self.state.health_reason}"}
        job, created = self.state.submit(sequence, runs, key)
        return (201 if created else 200), job.as_json()

    def _key(self, body: Any) -> str:
        key = self.headers.get("Idempotency-Key") or (body.get("idempotency_key") if isinstance(body, dict) else None)
        return str(key or "")

    def _job(self, job_id: str) -> QpuJob | None:
        with self.state.lock:
            return self.state.jobs.get(job_id)

    def _status(self, parts: list[str], body: Any) -> tuple[int, dict[str, Any]]:
        job = self._job(parts[1])
        return (404, {"error": "no such job"}) if job is None else (200, job.as_json())

    def _result(self, parts: list[str], body: Any) -> tuple[int, dict[str, Any]]:
        job = self._job(parts[1])
        if job is None:
            return 404, {"error": "no such job"}
        if job.status != "DONE":
            return 409, {"error": f"the job is {job.status}", "status": job.status}
        return 200, {"id": job.id, "counter": job.counter, "serialised_results": job.serialised_results}

    def _cancel(self, parts: list[str], body: Any) -> tuple[int, dict[str, Any]]:
        with self.state.lock:
            job = self.state.jobs.get(parts[1])
            if job is None:
                return 404, {"error": "no such job"}
            if job.status in ("QUEUED", "RUNNING"):
                job.status = "CANCELED"
            return 200, job.as_json()

    # --- test controls -----------------------------------------------------------------------

    def _admin(self, method: str, parts: list[str]) -> None:
        state = self.state
        if method == "GET" and parts == ["stats"]:
            with state.lock:
                body = {
                    "submissions": dict(state.submissions),
                    "runs": dict(state.runs),
                    "jobs": {j.id: j.as_json() for j in state.jobs.values()},
                    "faults": {k: list(v) for k, v in state.faults.items() if v},
                }
            self._send(200, body)
            return
        if method != "POST" or parts not in (["faults"], ["reset"]):
            self._send(404, {"error": "admin routes: GET /admin/stats, POST /admin/faults, POST /admin/reset"})
            return
        try:
            body = self._body()
        except ValueError:
            self._send(400, {"error": "the body is not JSON"})
            return
        if parts == ["reset"]:
            with state.lock:
                for pending in state.faults.values():
                    pending.clear()
                state.never_finish, state.health, state.health_reason = 0, "UP", ""
                state.submissions.clear()
                state.runs.clear()
                state.jobs.clear()
                state.by_key.clear()
            self._send(200, {"reset": True})
            return
        try:
            apply_faults(state, body)
        except ValueError as exc:
            self._send(400, {"error": str(exc)})
            return
        self._send(200, {"faults": {k: list(v) for k, v in state.faults.items() if v}})


def apply_faults(state: QpuState, body: dict[str, Any]) -> None:
    """`{"submit": ["503", "drop_after"], "never_finish": 1, "health": "DOWN", "latency": 0.5, ...}`."""
    with state.lock:
        for endpoint in ENDPOINTS:
            kinds = body.get(endpoint, [])
            for kind in kinds if isinstance(kinds, list) else []:  # "health": "DOWN" sets the health
                if kind not in FAULT_KINDS:
                    raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
                state.faults[endpoint].append(kind)
        if "never_finish" in body:
            state.never_finish = int(body["never_finish"])
        if "health" in body:
            state.health = str(body["health"])
            state.health_reason = str(body.get("reason", ""))
        if "latency" in body:
            state.latency = float(body["latency"])
        if "slow_seconds" in body:
            state.slow_seconds = float(body["slow_seconds"])


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    specs: str | None = None,
    latency: float = 0.0,
    token: str = "",
    slow_seconds: float = 5.0,
    parallel: int = 1,
    simulate: bool = True,
) -> ThreadingHTTPServer:
    state = QpuState(
        specs=specs or default_specs(), latency=latency, token=token, slow_seconds=slow_seconds, simulate=simulate
    )
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    for index in range(max(1, parallel)):  # `parallel` jobs run at once, each taken in submission order
        threading.Thread(target=state.work, name=f"qpu-{index}", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="", help="bearer token clients must send (none: no auth)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each job waits before it runs")
    parser.add_argument("--slow-seconds", type=float, default=5.0, help="delay of the 'slow' fault")
    parser.add_argument(
        "--faults", default="{}", help='initial faults, e.g. \'{"submit": ["503"], "never_finish": 1}\''
    )
    parser.add_argument("--parallel", type=int, default=1, help="jobs the QPU runs at once (default 1, in order)")
    parser.add_argument(
        "--no-simulation", action="store_true", help="answer all-zero counts after --latency, without pulser"
    )
    parser.add_argument("--specs-file", help="Pulser device abstract repr to serve (default: AnalogDevice as FRESNEL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    specs = open(args.specs_file).read() if args.specs_file else None  # noqa: SIM115 - read once at start
    server = make_server(
        args.host,
        args.port,
        specs=specs,
        latency=args.latency,
        token=args.token,
        slow_seconds=args.slow_seconds,
        parallel=args.parallel,
        simulate=not args.no_simulation,
    )
    apply_faults(server.RequestHandlerClass.state, json.loads(args.faults))  # type: ignore[attr-defined]
    # Import pulser now, so the first job does not pay for it; then say we are ready.
    server.RequestHandlerClass.state.device()  # type: ignore[attr-defined]
    print(f"QPU simulator listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
