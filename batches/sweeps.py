"""A batch as a parameter sweep: an observable of each job's counter against its variables.

Each DONE job's counter ({bitstring: shots}) is reduced, as it is read, to a few sufficient
statistics (shots, Σn, Σn², excited shots per atom, shots of one bitstring), with numpy over
its bitstrings. Jobs are read in chunks of the (batch, order) index and results one at a time
through `jobs.results`, so a 10,000-job batch never has all its results in memory: only the
statistics, a handful of numbers per job. Jobs with the same variables pool their shots.

Conventions: '1' in a bitstring is an excited (Rydberg) atom, atom i is the i-th character.
Error bars are one standard error from the shots: √(p(1−p)/N) for a probability, σ/√N for
the mean number of excited atoms.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batches.models import Batch
from jobs.models import Job, JobStatus
from jobs.results import ResultMissing, read_result
from portal.errors import InvalidInput

OBSERVABLES = {
    "excitation": "Excitation probability of one atom",
    "mean_excited": "Mean number of excited atoms",
    "bitstring": "Probability of a bitstring",
}
_CHUNK = 500


@dataclass
class Stats:
    """What a counter says about the observables, additive over jobs (pooling = adding)."""

    shots: int = 0
    sum_n: float = 0.0
    sum_n2: float = 0.0
    excited: np.ndarray[Any, np.dtype[np.float64]] = field(default_factory=lambda: np.zeros(0))
    matches: int = 0

    def add(self, other: Stats) -> None:
        self.shots += other.shots
        self.sum_n += other.sum_n
        self.sum_n2 += other.sum_n2
        width = max(len(self.excited), len(other.excited))
        self.excited = np.pad(self.excited, (0, width - len(self.excited))) + np.pad(
            other.excited, (0, width - len(other.excited))
        )
        self.matches += other.matches

    def value(self, observable: str, *, atom: int = 0) -> tuple[float, float] | None:
        """(value, standard error) of `observable`; None with no shots (or no such atom)."""
        n = self.shots
        if n == 0:
            return None
        if observable == "mean_excited":
            mean = self.sum_n / n
            variance = max(self.sum_n2 / n - mean * mean, 0.0)
            return mean, math.sqrt(variance / n)
        if observable == "excitation":
            if atom >= len(self.excited):
                return None
            p = float(self.excited[atom]) / n
        else:
            p = self.matches / n
        return p, math.sqrt(p * (1 - p) / n)


def stats_of(counter: dict[str, int], *, bitstring: str | None = None) -> Stats:
    """One counter reduced with numpy: a (bitstrings × atoms) 0/1 matrix weighted by the counts."""
    if not counter:
        return Stats()
    keys = list(counter)
    counts = np.fromiter((int(counter[k]) for k in keys), dtype=np.float64, count=len(keys))
    width = max(len(k) for k in keys)
    padded = np.frombuffer("".join(k.ljust(width, "0") for k in keys).encode("ascii"), dtype=np.uint8)
    bits = (padded.reshape(len(keys), width) == ord("1")).astype(np.float64)
    excited_per_shot = bits.sum(axis=1)
    return Stats(
        shots=int(counts.sum()),
        sum_n=float(counts @ excited_per_shot),
        sum_n2=float(counts @ (excited_per_shot**2)),
        excited=counts @ bits,
        matches=int(counter.get(bitstring, 0)) if bitstring else 0,
    )


@dataclass
class JobRow:
    id: str
    order: int
    status: str
    runs: int
    variables: dict[str, Any]
    stats: Stats | None


def scalar(value: Any) -> float | str | None:
    """A variable's value as a sweep coordinate: a number (also a 1-element list, as Pulser's
    variables are arrays), else a stable label (a layout's qubits, a waveform's samples)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or value is None:
        return None if value is None else str(value)
    if isinstance(value, int | float):
        return float(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def job_rows(batch: Batch, *, bitstring: str | None = None) -> Iterator[JobRow]:
    """Every job of the batch in order, with its statistics if it is DONE with a result."""
    jobs = (
        Job.objects.filter(batch=batch)
        .only("id", "order", "status", "runs", "variables", "result_path", "batch_id")
        .order_by("order")
    )
    for job in jobs.iterator(chunk_size=_CHUNK):
        stats = None
        if job.status == JobStatus.DONE and job.result_path:
            try:
                counter = (read_result(job) or {}).get("counter") or {}
                stats = stats_of(counter, bitstring=bitstring)
            except ResultMissing:  # its file is gone: the job counts as one without results
                stats = None
        yield JobRow(str(job.pk), job.order, job.status, job.runs, job.variables or {}, stats)


def variables_of(batch: Batch, *, sample: int = 1000) -> list[str]:
    """The variable names the batch's jobs set (from its first `sample` jobs), sorted: PostgreSQL's
    jsonb does not keep the order they were sent in, so no other order is the same everywhere."""
    names: set[str] = set()
    for variables in Job.objects.filter(batch=batch).order_by("order").values_list("variables", flat=True)[:sample]:
        names.update(variables or {})
    return sorted(names)


def check_bitstring(bitstring: str | None) -> str | None:
    if bitstring is not None and (not bitstring or set(bitstring) - {"0", "1"} or len(bitstring) > 1000):
        raise InvalidInput("'bitstring' must be a string of 0s and 1s, e.g. 0101.", field="bitstring")
    return bitstring


def sweep(
    batch: Batch,
    *,
    observable: str,
    x: str,
    series: str | None = None,
    atom: int = 0,
    bitstring: str | None = None,
) -> dict[str, Any]:
    """The observable against `x`, one series per value of `series` (2-D sweeps), as points
    {x, y, err, jobs, shots}; jobs with the same (series, x) pool their shots."""
    if observable not in OBSERVABLES:
        raise InvalidInput(f"Unknown observable {observable!r}: one of {', '.join(OBSERVABLES)}.", field="observable")
    if observable == "bitstring" and not check_bitstring(bitstring):
        raise InvalidInput("Give the 'bitstring' whose probability to plot, e.g. 0101.", field="bitstring")
    if atom < 0:
        raise InvalidInput("'atom' is an atom's index, 0 or more.", field="atom")
    pooled: dict[tuple[Any, Any], tuple[Stats, int]] = {}
    finished = 0
    for row in job_rows(batch, bitstring=bitstring):
        if row.stats is None:
            continue
        finished += 1
        key = (scalar(row.variables.get(series)) if series else None, scalar(row.variables.get(x)))
        if key not in pooled:
            pooled[key] = (Stats(excited=np.zeros(0)), 0)
        stats, n_jobs = pooled[key]
        stats.add(row.stats)
        pooled[key] = (stats, n_jobs + 1)
    numeric = all(isinstance(k[1], float) for k in pooled)
    groups: dict[Any, list[dict[str, Any]]] = {}
    for (group, xv), (stats, n_jobs) in pooled.items():
        value = stats.value(observable, atom=atom)
        if value is None:
            continue
        groups.setdefault(group, []).append(
            {"x": xv, "y": value[0], "err": value[1], "jobs": n_jobs, "shots": stats.shots}
        )
    datasets = []
    for group in sorted(groups, key=_sort_key):
        points = sorted(groups[group], key=lambda p: _sort_key(p["x"]))
        label = "all jobs" if series is None else f"{series} = {_label(group)}"
        datasets.append({"label": label, "points": points})
    return {
        "observable": observable,
        "label": _observable_label(observable, atom=atom, bitstring=bitstring),
        "x": x,
        "series": series,
        "numeric_x": numeric,
        "finished_jobs": finished,
        "datasets": datasets,
    }


def sweep_with_defaults(
    batch: Batch,
    *,
    observable: str = "mean_excited",
    x: str | None = None,
    series: str | None = None,
    atom: int = 0,
    bitstring: str | None = None,
) -> dict[str, Any]:
    """`sweep` as the API and the portal ask for it: against the first variable by name unless
    told, with the batch's variable names (for the pickers) in `variables`."""
    names = variables_of(batch)
    x = x or (names[0] if names else None)
    bitstring = check_bitstring(bitstring or None)
    if x is None:
        empty: dict[str, Any] = {
            "label": "",
            "x": None,
            "series": None,
            "numeric_x": True,
            "finished_jobs": 0,
            "datasets": [],
        }
        return {"observable": observable, **empty, "variables": names}
    data = sweep(batch, observable=observable, x=x, series=series or None, atom=atom, bitstring=bitstring)
    return {**data, "variables": names}


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, float) else (1, "" if value is None else str(value))


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)


def _observable_label(observable: str, *, atom: int, bitstring: str | None) -> str:
    if observable == "excitation":
        return f"P(atom {atom} excited)"
    if observable == "bitstring":
        return f"P({bitstring})"
    return "⟨number of excited atoms⟩"


def csv_rows(batch: Batch, *, bitstring: str | None = None) -> Iterator[list[Any]]:
    """One row per job: order, id, status, runs, each variable, shots, the mean number of excited
    atoms ± error, P(bitstring) ± error if asked, then P(atom i excited) for each atom.

    The header comes first, so the atom columns are sized from the batch's first result."""
    names = variables_of(batch)
    rows = job_rows(batch, bitstring=bitstring)
    buffered: list[JobRow] = []
    atoms = 0
    for row in rows:  # read up to the first result: its width sizes the header
        buffered.append(row)
        if row.stats is not None:
            atoms = len(row.stats.excited)
            break
    header = ["order", "job_id", "status", "runs", *names, "shots", "mean_excited", "mean_excited_err"]
    if bitstring:
        header += [f"p_{bitstring}", f"p_{bitstring}_err"]
    header += [f"p_excited_atom_{i}" for i in range(atoms)]
    yield header

    def line(row: JobRow) -> list[Any]:
        out: list[Any] = [row.order, row.id, row.status, row.runs]
        out += [_cell(row.variables.get(name)) for name in names]
        stats = row.stats
        if stats is None:
            return out + [""] * (len(header) - len(out))
        out.append(stats.shots)
        out += list(stats.value("mean_excited") or ("", ""))
        if bitstring:
            out += list(stats.value("bitstring") or ("", ""))
        out += [
            float(stats.excited[i]) / stats.shots if stats.shots and i < len(stats.excited) else ""
            for i in range(atoms)
        ]
        return out

    for row in buffered:
        yield line(row)
    for row in rows:
        yield line(row)


def _cell(value: Any) -> Any:
    scalar_value = scalar(value)
    return "" if scalar_value is None else scalar_value
