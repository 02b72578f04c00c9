"""Move result files written to the local disk (LEGACY_RESULTS_DIR, formerly the default
storage) into the results storage, so that every machine reads them; then delete the files.

Each file is copied within the migration's transaction; the files are removed only once it
has committed, so a failed migration leaves them where they were.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import migrations, transaction

_CHUNK = 200


def move_files(apps: Any, schema_editor: Any) -> None:
    from django.conf import settings
    from django.core.files import File
    from django.core.files.storage import storages

    from jobs.storage import DatabaseStorage, compress_stream

    folder = Path(settings.LEGACY_RESULTS_DIR)
    if not folder.is_dir():
        return
    storage = storages["results"]
    target = getattr(storage, "location", None)
    if target is not None and Path(target).resolve() == folder.resolve():
        return  # RESULTS_STORAGE=filesystem on the same folder: the files are already there
    Job = apps.get_model("jobs", "Job")
    ResultBlob = apps.get_model("jobs", "ResultBlob")
    moved: list[Path] = []
    rows = Job.objects.using(schema_editor.connection.alias).exclude(result_path="").values_list("result_path")
    for (name,) in rows.iterator(chunk_size=_CHUNK):
        path = folder / name
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            if isinstance(storage, DatabaseStorage):
                data, size = compress_stream(handle)
                ResultBlob.objects.update_or_create(name=name, defaults={"data": data, "size": size})
            else:
                if storage.exists(name):
                    storage.delete(name)
                storage.save(name, File(handle, name=name))
        moved.append(path)

    def remove() -> None:
        for path in moved:
            path.unlink(missing_ok=True)

    transaction.on_commit(remove, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [("jobs", "0009_resultblob")]

    operations = [migrations.RunPython(move_files, migrations.RunPython.noop, elidable=True)]
