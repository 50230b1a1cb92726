"""The hit journal's syncer: a small process of its own that puts journal files on disk when
asked (tracking/journal.py), so the web process's event loop never shares its interpreter lock
with a thread waiting on fdatasync.

    python -m tracking.syncer <journal folder>

Each request on stdin is a line `<file name> <offset>`: the file is synced (fdatasync syncs the
file, whichever descriptor wrote it), and the answer on stdout is `<offset> ok`, or
`<offset> error <reason>`. The first time a file is named, the folder is synced too, so the
file's name survives a power loss as well as its data. It ends when stdin closes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Descriptors kept open, one per file, opened when the file is first named (so a write error
# the kernel notes later is reported to it); files roll rarely, so a few are plenty.
_KEPT = 4


def sync(folder: Path, name: str, descriptors: dict[str, int]) -> None:
    fd = descriptors.get(name)
    if fd is None:
        if "/" in name or name.startswith("."):
            raise OSError(f"not a journal file: {name!r}")
        fd = os.open(folder / name, os.O_RDONLY)
        try:
            directory = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError:
            os.close(fd)
            raise
        descriptors[name] = fd
        while len(descriptors) > _KEPT:
            os.close(descriptors.pop(next(iter(descriptors))))
    os.fdatasync(fd)


def main() -> int:
    folder = Path(sys.argv[1])
    descriptors: dict[str, int] = {}
    answers = sys.stdout.buffer
    for request in sys.stdin.buffer:
        name, offset = request.decode().split()
        try:
            sync(folder, name, descriptors)
            answer = f"{offset} ok\n"
        except OSError as exc:
            answer = f"{offset} error {exc}\n"
        answers.write(answer.encode())
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
