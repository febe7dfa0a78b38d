"""SHA-256 sums of a checkpoint's files, in the format of ``sha256sum``.

One line per file: its SHA-256 in hex, two spaces, and its path relative to
the checkpoint's folder, with ``/``; ``sha256sum -c`` in that folder checks
them. (Kept apart from run.py: the number of files orbax writes varies from
save to save, and so does the work done here.)
"""

from __future__ import annotations

import hashlib
import pathlib
import re
from typing import NamedTuple

_LINE = re.compile(r"([0-9a-f]{64})  (\S.*)")


def of_files(folder: pathlib.Path, under: str) -> dict[str, str]:
    """The SHA-256 of every file below ``folder / under``, by its path
    relative to ``folder``, sorted by path.

    Raises:
        OSError: a file cannot be read (``filename`` names it).
    """
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
        for path in sorted((folder / under).rglob("*"))
        if not path.is_dir()
    }


def listing(sums: dict[str, str]) -> str:
    """The text of a sums file: a line per path, in the order of ``sums``."""
    return "".join(f"{digest}  {path}\n" for path, digest in sums.items())


def parse(text: str) -> dict[str, str]:
    """The sums a sums file lists, by path.

    Raises:
        ValueError: saying what is wrong: a line that is no sum and path, a
            last line cut short (a file truncated mid-line), or no line.
    """
    if text and not text.endswith("\n"):
        raise ValueError("its last line is cut short")
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _LINE.fullmatch(line)
        if not match:
            raise ValueError(f"line {number} is not '<sha256>  <path>'")
        sums[match[2]] = match[1]
    if not sums:
        raise ValueError("it lists no file")
    return sums


class Differences(NamedTuple):
    """Paths whose files differ from what a sums file lists, each sorted."""

    missing: list[str]  # listed, not there
    changed: list[str]  # there, with another SHA-256
    unlisted: list[str]  # there, not listed


def compare(listed: dict[str, str], found: dict[str, str]) -> Differences:
    """How the files ``found`` (`of_files`) differ from those ``listed``."""
    return Differences(
        missing=sorted(listed.keys() - found.keys()),
        changed=sorted(
            p for p in listed.keys() & found.keys() if listed[p] != found[p]
        ),
        unlisted=sorted(found.keys() - listed.keys()),
    )
