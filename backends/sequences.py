"""Turning submitted Pulser sequences into built sequences, with errors a physicist reads.

Deserializing is costly (mostly JSON-schema validation); building is cheap.
So a batch deserializes its sequence once, then builds it once per job.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
from collections import OrderedDict
from typing import Any

from django.conf import settings
from pulser import Sequence
from pulser.devices._device_datacls import BaseDevice
from pulser.json.abstract_repr.deserializer import deserialize_device

from portal.errors import InvalidInput

_MESSAGE_LIMIT = 400
_VARIABLE_NAMES_RESERVED = {"qubits"}


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def _describe_schema_error(exc: Exception) -> str:
    path = "/".join(str(p) for p in getattr(exc, "absolute_path", []) or [])
    message = getattr(exc, "message", str(exc))
    where = f" at '{path}'" if path else ""
    return _short(f"not a valid Pulser abstract representation{where}: {message}")


def check_size(text: Any, *, field: str) -> None:
    if not isinstance(text, str):
        raise InvalidInput(f"'{field}' must be a string holding a Pulser abstract representation.", field=field)
    if len(text.encode()) > settings.MAX_SEQUENCE_BYTES:
        raise InvalidInput(
            f"'{field}' is {len(text.encode())} bytes; the limit is {settings.MAX_SEQUENCE_BYTES} bytes.",
            field=field,
        )


def deserialize_sequence(text: Any, *, field: str = "sequence_builder") -> Sequence:
    """Parse an abstract-repr string into a (maybe parametrized) pulser Sequence."""
    import jsonschema

    check_size(text, field=field)
    try:
        json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"'{field}' is not valid JSON: {_short(str(exc))}", field=field) from exc
    except RecursionError as exc:  # the stdlib parser recurses: deep nesting must be a 400, not a 500
        raise InvalidInput(f"'{field}' is nested too deeply.", field=field) from exc
    try:
        return Sequence.from_abstract_repr(text)
    except jsonschema.exceptions.ValidationError as exc:
        raise InvalidInput(f"'{field}' is {_describe_schema_error(exc)}", field=field) from exc
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise InvalidInput(f"'{field}' could not be loaded by Pulser: {_short(str(exc))}", field=field) from exc
    except RecursionError as exc:
        raise InvalidInput(f"'{field}' is nested too deeply.", field=field) from exc


class SequenceCache:
    """A small LRU of deserialized sequences keyed by the text's hash (per process)."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._items: OrderedDict[str, Sequence] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str, *, field: str = "sequence_builder") -> Sequence:
        check_size(text, field=field)  # before the cache: the limit may have changed since
        key = hashlib.sha256(text.encode()).hexdigest()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        seq = deserialize_sequence(text, field=field)
        with self._lock:
            self._items[key] = seq
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return seq


sequence_cache = SequenceCache()


def check_variables(seq: Sequence, variables: Any, *, where: str) -> dict[str, Any]:
    """Checks pulser does not make: unknown names, null values, empty or missing `qubits`."""
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise InvalidInput(f"{where}: 'variables' must be an object mapping names to values.", field="variables")
    declared = set(seq.declared_variables)
    unknown = sorted(set(variables) - declared - _VARIABLE_NAMES_RESERVED)
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise InvalidInput(
            f"{where}: unknown variable {', '.join(repr(u) for u in unknown)}; the sequence declares: {known}.",
            field="variables",
        )
    missing = sorted(declared - set(variables))
    if missing:
        raise InvalidInput(
            f"{where}: missing variable {', '.join(repr(m) for m in missing)} declared by the sequence.",
            field="variables",
        )
    for name, value in variables.items():
        if name != "qubits" and _has_null_or_nan(value):
            raise InvalidInput(f"{where}: variable '{name}' must be a number (or a list of numbers).", field=name)
    if seq.is_register_mappable():
        qubits = variables.get("qubits")
        if not qubits:
            raise InvalidInput(
                f"{where}: the sequence uses a mappable register, so 'qubits' must map qubit ids to trap ids "
                '(e.g. {"q0": 1, "q1": 5}).',
                field="qubits",
            )
        if not isinstance(qubits, dict) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in qubits.values()
        ):
            raise InvalidInput(f"{where}: 'qubits' must map qubit ids to integer trap ids.", field="qubits")
    elif "qubits" in variables:
        raise InvalidInput(
            f"{where}: 'qubits' is only allowed when the sequence's register is mappable.", field="qubits"
        )
    return variables


def _has_null_or_nan(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isnan(value) or math.isinf(value)
    if isinstance(value, list):
        return any(_has_null_or_nan(v) for v in value)
    return False


def build(seq: Sequence, variables: dict[str, Any], *, where: str) -> Sequence:
    """Build a parametrized sequence with one job's variables."""
    if not seq.is_parametrized() and not seq.is_register_mappable():
        return seq
    try:
        return seq.build(**variables)
    except TypeError as exc:
        raise InvalidInput(f"{where}: {_short(str(exc))}", field="variables") from exc
    except IndexError as exc:
        raise InvalidInput(f"{where}: trap ids in 'qubits' must be integers.", field="qubits") from exc
    except ValueError as exc:
        raise InvalidInput(f"{where}: {_short(str(exc))}", field="variables") from exc


@functools.lru_cache(maxsize=32)
def device_from_specs(specs: str) -> BaseDevice:
    # Cached: deserializing a device runs jsonschema validation (ms to tens of ms), and an
    # adapter (hence this call) is made per job; pulser devices are frozen, safe to share.
    return deserialize_device(specs)
