"""checksums.py: the sums of a checkpoint's files, as sha256sum writes them."""

from __future__ import annotations

import pytest

from tests.demo.helpers import sha256sum_lines
from train_demo import checksums


@pytest.fixture
def folder(tmp_path):
    """A step folder: state/ with files at two depths, and a file beside it."""
    (tmp_path / "state" / "d").mkdir(parents=True)
    (tmp_path / "state" / "_METADATA").write_bytes(b'{"a": 1}')
    (tmp_path / "state" / "d" / "0f3a").write_bytes(bytes(range(256)) * 3)
    (tmp_path / "state" / "empty").write_bytes(b"")
    (tmp_path / "history.json").write_text("{}")
    return tmp_path


def test_listing_is_what_sha256sum_prints(folder):
    sums = checksums.of_files(folder, "state")
    assert list(sums) == ["state/_METADATA", "state/d/0f3a", "state/empty"]
    assert checksums.listing(sums) == sha256sum_lines(folder)
    assert checksums.parse(checksums.listing(sums)) == sums


def test_compare_names_missing_changed_and_unlisted_files(folder):
    listed = checksums.parse(sha256sum_lines(folder))
    (folder / "state" / "empty").unlink()
    (folder / "state" / "d" / "0f3a").write_bytes(b"garbage")
    (folder / "state" / "d" / "new").write_bytes(b"")
    differences = checksums.compare(listed, checksums.of_files(folder, "state"))
    assert differences == (["state/empty"], ["state/d/0f3a"], ["state/d/new"])
    unchanged = checksums.parse(checksums.listing(checksums.of_files(folder, "state")))
    assert not any(checksums.compare(unchanged, checksums.of_files(folder, "state")))


def test_a_listing_cut_at_a_line_end_leaves_files_unlisted(folder):
    lines = sha256sum_lines(folder).splitlines(keepends=True)
    listed = checksums.parse("".join(lines[:-1]))
    differences = checksums.compare(listed, checksums.of_files(folder, "state"))
    assert differences == ([], [], ["state/empty"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "lists no file"),
        ("a" * 64 + "  state/x", "last line is cut short"),
        ("a" * 64 + "  state/x\n" + "a" * 63 + "  state/y\n", "line 2 is not"),
        ("a" * 64 + " state/x\n", "line 1 is not"),
        ("\x00garbage\n", "line 1 is not"),
    ],
)
def test_parse_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        checksums.parse(text)
