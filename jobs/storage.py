"""Where result files live: a Django storage ("results" in settings.STORAGES).

`DatabaseStorage`, the default, keeps each file zlib-compressed in a row of `jobs_resultblob`,
so a worker on one machine writes a result that the web process on another reads with
nothing shared but the database. RESULTS_STORAGE=s3 uses django-storages' S3Storage instead
(imported only then), RESULTS_STORAGE=filesystem a folder (one machine, or a shared volume).
"""

from __future__ import annotations

import functools
import io
import zlib
from collections.abc import Callable, Iterable
from typing import IO, Any

from django.core.files.base import File
from django.core.files.storage import Storage, storages
from django.utils.deconstruct import deconstructible

_READ = 64 * 1024
LEVEL = 6


def compress_stream(content: Any) -> tuple[bytes, int]:
    """`content` (a file or a Django File) read in pieces and deflated: (compressed, raw size)."""
    deflate = zlib.compressobj(LEVEL)
    parts: list[bytes] = []
    size = 0
    if hasattr(content, "seek"):
        content.seek(0)
    while piece := content.read(_READ):
        if isinstance(piece, str):
            piece = piece.encode()
        size += len(piece)
        parts.append(deflate.compress(piece))
    parts.append(deflate.flush())
    return b"".join(parts), size


class _Inflating(io.RawIOBase):
    """Reads a compressed blob back a piece at a time: the whole file is never inflated at once."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._position = 0
        self._inflate = zlib.decompressobj()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wanted = len(buffer)
        while not self._pending:
            if self._position >= len(self._data):
                self._pending = self._inflate.flush()
                if not self._pending:
                    return 0
                break
            piece = self._data[self._position : self._position + _READ]
            self._position += len(piece)
            self._pending = self._inflate.decompress(piece)
        chunk, self._pending = self._pending[:wanted], self._pending[wanted:]
        buffer[: len(chunk)] = chunk
        return len(chunk)


def inflating_file(data: bytes | memoryview, name: str) -> File:
    return File(io.BufferedReader(_Inflating(bytes(data))), name=name)


@deconstructible(path="jobs.storage.DatabaseStorage")
class DatabaseStorage(Storage):
    """Result files as compressed rows; saving a name again replaces the file."""

    def _save(self, name: str, content: Any) -> str:
        from jobs.models import ResultBlob

        data, size = compress_stream(content)
        # One statement (INSERT … ON CONFLICT DO UPDATE): a worker stores a result per job.
        ResultBlob.objects.bulk_create(
            [ResultBlob(name=name, data=data, size=size)],
            update_conflicts=True,
            unique_fields=["name"],
            update_fields=["data", "size", "created_at"],
        )
        return name

    def _open(self, name: str, mode: str = "rb") -> File:
        from jobs.models import ResultBlob

        if "w" in mode or "a" in mode:
            raise ValueError("DatabaseStorage opens files for reading only; save() writes them")
        row = ResultBlob.objects.filter(name=name).values_list("data", flat=True).first()
        if row is None:
            raise FileNotFoundError(name)
        return inflating_file(row, name)

    def openers(self, names: Iterable[str]) -> dict[str, Callable[[], File]]:
        """An opener for each of `names` that exists, read with one query (a zip's chunk)."""
        from jobs.models import ResultBlob

        rows = ResultBlob.objects.filter(name__in=list(names)).values_list("name", "data")
        return {name: functools.partial(inflating_file, data, name) for name, data in rows}

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name  # a name saved again is replaced (a re-run's result wins)

    def exists(self, name: str) -> bool:
        from jobs.models import ResultBlob

        return ResultBlob.objects.filter(name=name).exists()

    def delete(self, name: str) -> None:
        from jobs.models import ResultBlob

        ResultBlob.objects.filter(name=name).delete()

    def size(self, name: str) -> int:
        from jobs.models import ResultBlob

        size = ResultBlob.objects.filter(name=name).values_list("size", flat=True).first()
        if size is None:
            raise FileNotFoundError(name)
        return int(size)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        from jobs.models import ResultBlob

        prefix = f"{path.rstrip('/')}/" if path else ""
        names = ResultBlob.objects.filter(name__startswith=prefix).values_list("name", flat=True)
        folders: set[str] = set()
        files: list[str] = []
        for name in names:
            rest = name[len(prefix) :]
            if "/" in rest:
                folders.add(rest.split("/", 1)[0])
            else:
                files.append(rest)
        return sorted(folders), sorted(files)

    def url(self, name: str | None) -> str:
        raise NotImplementedError("result files are served by Tweezer's signed results links")


def s3_storage(*, timeout: int = 10, attempts: int = 3, **options: Any) -> Storage:
    """RESULTS_STORAGE=s3: django-storages' S3Storage whose every request gives up after `timeout`
    seconds to connect or to read, in `attempts` tries in all. botocore's own (60 s, 5 tries) let
    an endpoint that accepts and never answers hold a worker's job for minutes. boto3 is imported
    here, when the storage is first used: it is the optional `s3` set, not in the runtime lock."""
    from botocore.config import Config
    from storages.backends.s3 import S3Storage

    retries: Any = {"max_attempts": attempts, "mode": "standard"}  # botocore's stubs want a TypedDict
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries=retries)
    return S3Storage(client_config=config, **options)  # type: ignore[no-any-return]


def results_storage() -> Storage:
    return storages["results"]


def probe_results_storage() -> None:
    """Raise unless the results storage answers a lookup; nothing is written. An S3 bucket is
    asked for itself (HEAD on the bucket): a missing bucket answers a key lookup with the same
    404 as a missing key, so `exists()` alone would call it reachable."""
    storage = results_storage()
    bucket = getattr(storage, "bucket_name", None)
    if bucket is not None:  # django-storages' S3Storage: a boto3 resource per thread
        storage.connection.meta.client.head_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    else:
        storage.exists("readyz-probe.json")


def openers(names: list[str]) -> dict[str, Callable[[], IO[bytes]]]:
    """A function opening each named result file: the database storage reads the whole chunk
    of names with one query (names it lacks are left out), another storage opens each file
    when called (FileNotFoundError then)."""
    storage = results_storage()
    if isinstance(storage, DatabaseStorage):
        return storage.openers(names)  # type: ignore[return-value]  # a File is a binary file object
    return {name: functools.partial(storage.open, name, "rb") for name in names}
