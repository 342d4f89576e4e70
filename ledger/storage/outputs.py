"""Output files of the commands, written so that nothing is overwritten that must not be (issue 11).

``export odm FILE``, ``export sdtm DIR``, ``digest --out``, ``prove --out``,
``report --out`` and ``demo --jsonl`` write through :func:`output_file` or
:func:`output_folder`:

- a path that is the store, a file of the store (its ``-wal``, ``-shm`` or
  ``-journal``), or any SQLite database (a ledger perhaps; known by its header
  alone, followed through symbolic links) is refused with exit 2 and left
  untouched; so is a folder output that holds one
  under a name the command writes;
- the output is written to a temporary file in the target folder and renamed
  into place (``os.replace``, atomic on one file system), so a failed export
  leaves the previous file whole; a new folder output is a temporary folder
  renamed into place, an existing one gets each file renamed into it;
- an existing output that is not a ledger is replaced, as users expect of an
  export;
- a missing folder (for a file output) or the parent of a missing folder
  output, a folder that cannot be written, or a path that is a folder where a
  file is asked for (or the reverse) is exit 2 with one line naming the option.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledger.domain.errors import InvalidInput
from ledger.storage.stores import is_postgres, is_sqlite_database, sqlite_path

# Files SQLite keeps next to a database: overwriting one damages the database.
_COMPANIONS = ("-wal", "-shm", "-journal")


def _refuse_ledger(target: Path, option: str, store: str) -> None:
    """Exit 2 when ``target`` is the store, a file of it, or any SQLite ledger."""
    real = Path(os.path.realpath(target))
    if not is_postgres(store):
        database = Path(os.path.realpath(sqlite_path(store)))
        if real == database or real in {database.with_name(database.name + c) for c in _COMPANIONS}:
            raise InvalidInput(f"{option}: {target} is the ledger's store; choose another path")
    for companion in _COMPANIONS:
        if real.name.endswith(companion) and is_sqlite_database(str(real)[: -len(companion)]):
            raise InvalidInput(f"{option}: {target} belongs to a SQLite database; choose another path")
    if is_sqlite_database(real):
        raise InvalidInput(f"{option}: {target} is a SQLite database; choose another path")


def _writable_folder(folder: Path, option: str) -> None:
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise InvalidInput(f"{option}: folder {folder} {problem}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidInput(f"{option}: folder {folder} is not writable")


def check_output_file(path: str | Path, option: str, store: str) -> Path:
    """The output file ``path``, checked: not a ledger, not a folder, in a writable folder."""
    target = Path(path)
    if target.is_dir():
        raise InvalidInput(f"{option}: {target} is a folder, not a file")
    _refuse_ledger(target, option, store)
    _writable_folder(target.parent if str(target.parent) else Path("."), option)
    return target


@contextmanager
def output_file(path: str | Path, option: str, store: str) -> Iterator[Path]:
    """A temporary file next to ``path`` to write; renamed onto ``path`` when the block succeeds."""
    target = check_output_file(path, option, store)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise InvalidInput(f"{option}: cannot write in folder {target.parent}: {exc.strerror}") from None
    os.close(handle)
    try:
        yield Path(temporary)
        _refuse_ledger(target, option, store)  # it may have become one while we wrote
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


@contextmanager
def output_folder(path: str | Path, option: str, store: str) -> Iterator[Path]:
    """A temporary folder for the files of folder ``path``, moved into place when the block succeeds.

    A missing ``path`` is the temporary folder renamed; an existing one gets
    each file renamed into it (other files in it stay).
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"{option}: {target} is a file, not a folder")
    fresh = not target.exists()
    where = (target.parent if str(target.parent) else Path(".")) if fresh else target
    _writable_folder(where, option)
    try:
        temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=where))
    except OSError as exc:
        raise InvalidInput(f"{option}: cannot write in folder {where}: {exc.strerror}") from None
    try:
        yield temporary
        if fresh:
            temporary.rename(target)
            return
        written = sorted(p for p in temporary.iterdir() if p.is_file())
        for file in written:
            final = target / file.name
            if final.is_dir():
                raise InvalidInput(f"{option}: {final} is a folder, not a file")
            _refuse_ledger(final, option, store)
        for file in written:
            os.replace(file, target / file.name)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
