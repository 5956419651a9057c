"""Downloading a URL into its `.part` (transfer.py): the whole file's sha256 and size, resumed from what
the `.part` holds, and only http(s)."""

import hashlib

import pytest

from stages.lib.sources.intake import DownloadError, UnreachableError
from stages.lib.sources.transfer import download_to_part
from tests.sources.test_fetch import closed_port, server  # noqa: F401 (fixture)

PAYLOAD = bytes(range(256)) * 64
FAST = {"timeout": 2.0, "attempts": 2, "backoff": 0.01, "progress": False}


def test_the_part_holds_the_file_and_the_answer_is_its_sha256_and_size(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    part = tmp_path / "data.bin.part"
    part.write_bytes(PAYLOAD[:1000])   # what an interrupted run left
    assert download_to_part(server.url + "/data.bin", part, **FAST) == (hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD))
    assert part.read_bytes() == PAYLOAD


def test_only_http_urls_are_downloaded(tmp_path):
    with pytest.raises(DownloadError, match="only http"):
        download_to_part("ftp://example.org/data.bin", tmp_path / "data.bin.part", **FAST)


def test_a_closed_port_is_unreachable_at_once(tmp_path):
    with pytest.raises(UnreachableError, match="cannot reach"):
        download_to_part(f"http://127.0.0.1:{closed_port()}/data.bin", tmp_path / "data.bin.part", **FAST)
