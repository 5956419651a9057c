"""A file's way in (intake.py): the lock file read and written, receipts that are only a cache, the
expected sha256 taken from params before the lock, and a refused file moved aside, never deleted."""

import hashlib

import pytest

from stages.lib.sources.intake import ChecksumError, DownloadError, Intake, RECEIPTS_NAME, read_lock, write_lock
from stages.lib.sources.plan import Fetch


def intake(tmp_path) -> Intake:
    return Intake(tmp_path / "raw", tmp_path / "downloads.lock.yaml", base_dir=tmp_path, progress=False)


def test_the_lock_reads_back_what_was_written_with_its_header(tmp_path):
    lock = tmp_path / "downloads.lock.yaml"
    entries = {"wiki/b.tar": {"source": "https://x/b.tar", "sha256": "b" * 64, "size": 2},
               "wiki/a.tar": {"source": "https://x/a.tar", "sha256": "a" * 64, "size": 1}}
    write_lock(lock, entries)
    assert read_lock(lock) == entries and lock.read_text().startswith("# sha256 of every file")


def test_a_lock_file_this_stage_did_not_write_is_refused_naming_the_fix(tmp_path):
    lock = tmp_path / "downloads.lock.yaml"
    lock.write_text("<<<<<<< HEAD\nwiki: [1, 2]\n")
    with pytest.raises(DownloadError, match="restore it from git, or delete it"):
        read_lock(lock)


def test_unreadable_receipts_mean_everything_is_checked_again(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / RECEIPTS_NAME).write_text("{not json")
    assert intake(tmp_path).receipts == {}


def test_a_sha256_pinned_in_params_is_expected_before_the_lock(tmp_path):
    write_lock(tmp_path / "downloads.lock.yaml", {"wiki/a.tar": {"source": "s", "sha256": "1" * 64, "size": 1}})
    pinned = Fetch(name="wiki", params_key="datasets.wiki.sources[0]", url="https://x/a.tar", sha256="2" * 64)
    unpinned = Fetch(name="wiki", params_key="datasets.wiki.sources[0]", url="https://x/a.tar")
    assert intake(tmp_path).expected(pinned, "wiki/a.tar").sha256 == "2" * 64
    assert intake(tmp_path).expected(unpinned, "wiki/a.tar").sha256 == "1" * 64
    assert intake(tmp_path).expected(unpinned, "wiki/other.tar") is None


def test_a_file_of_ours_with_the_wrong_sha256_is_moved_aside(tmp_path):
    item = Fetch(name="wiki", params_key="datasets.wiki.sources[0]", url="https://x/a.bin", sha256="0" * 64)
    target = tmp_path / "raw" / "wiki" / "a.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the file")
    sha256 = hashlib.sha256(b"not the file").hexdigest()
    checker = intake(tmp_path)
    with pytest.raises(ChecksumError, match="moved aside"):
        checker.refuse_unless_valid(item, "wiki/a.bin", target, sha256=sha256, expected=checker.expected(item, "wiki/a.bin"),
                                    ours=True)
    assert not target.exists() and (target.parent / f"a.bin.bad-{sha256[:8]}").read_bytes() == b"not the file"
