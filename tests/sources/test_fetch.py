"""The download stage's fetcher (fetch.py): HTTP fetching (resume, retry, offline), checksums and the lock,
local sources (their archives extracted), and the stage itself. No network: files are served from 127.0.0.1.
"""

import copy
import hashlib
import os
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from stages import download as stage
from stages.lib.core.params import validate
from stages.lib.sources.fetch import Fetcher
from stages.lib.sources.intake import ChecksumError, DownloadError, MissingSourceError, UnreachableError, read_lock
from stages.lib.sources.plan import Fetch
from tests.sources.test_archives import file_member, write_tar
from tests.sources.test_plan import plan

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = bytes(range(256)) * 64  # 16 KiB


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- a local HTTP server


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.files`, honouring Range unless the path is in `server.no_range`.

    `server.failures[path]` is a queue of misbehaviours for the next requests: "503" answers a server
    error, "truncate" sends half the body and hangs up.
    """

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        queue = server.failures.get(self.path) or []
        failure = queue.pop(0) if queue else None
        if failure == "503":
            self.send_error(503)
            return
        start = 0
        wanted = self.headers.get("Range")
        if wanted and self.path not in server.no_range:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if failure == "truncate":
            payload = payload[: len(payload) // 2]
        server.sent += len(payload)  # before writing: the client may assert as soon as it has the bytes
        self.wfile.write(payload)


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.failures, httpd.no_range, httpd.requests, httpd.sent = {}, {}, set(), [], 0
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def fetcher(tmp_path):
    return make_fetcher(tmp_path)


def make_fetcher(tmp_path, **kwargs):
    options = {"timeout": 2.0, "attempts": 3, "backoff": 0.01, "progress": False, **kwargs}
    return Fetcher(tmp_path / "raw", tmp_path / "downloads.lock.yaml", base_dir=tmp_path, **options)


def url_fetch(url, name="wiki", **kwargs):
    return Fetch(name=name, params_key=f"datasets.{name}.sources[0]", url=url, **kwargs)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ----------------------------------------------------------------------------- HTTP


def test_download_writes_the_file_and_records_its_sha256(server, fetcher, tmp_path):
    server.files["/files/data.bin"] = PAYLOAD
    [result] = fetcher.fetch(url_fetch(server.url + "/files/data.bin"))
    target = tmp_path / "raw" / "wiki" / "data.bin"
    assert target.read_bytes() == PAYLOAD
    assert not target.with_name("data.bin.part").exists()
    assert result.action == "downloaded" and result.sha256 == sha(PAYLOAD)
    assert read_lock(tmp_path / "downloads.lock.yaml") == {
        "wiki/data.bin": {"source": server.url + "/files/data.bin", "sha256": sha(PAYLOAD), "size": len(PAYLOAD)}
    }


def test_download_resumes_a_partial_file_with_a_range_request(server, fetcher, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    part = tmp_path / "raw" / "wiki" / "data.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:5000])
    fetcher.fetch(url_fetch(server.url + "/data.bin"))
    assert server.requests == [("/data.bin", "bytes=5000-")]
    assert server.sent == len(PAYLOAD) - 5000
    assert (tmp_path / "raw" / "wiki" / "data.bin").read_bytes() == PAYLOAD


def test_a_server_without_range_support_restarts_the_file(server, fetcher, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.no_range.add("/data.bin")
    part = tmp_path / "raw" / "wiki" / "data.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another file")
    fetcher.fetch(url_fetch(server.url + "/data.bin"))
    assert (tmp_path / "raw" / "wiki" / "data.bin").read_bytes() == PAYLOAD


def test_a_complete_part_file_is_finished_without_transfer(server, fetcher, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    part = tmp_path / "raw" / "wiki" / "data.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)
    [result] = fetcher.fetch(url_fetch(server.url + "/data.bin"))
    assert server.sent == 0 and result.sha256 == sha(PAYLOAD)


def test_a_server_error_is_retried(server, fetcher, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.failures["/data.bin"] = ["503"]
    fetcher.fetch(url_fetch(server.url + "/data.bin"))
    assert [path for path, _ in server.requests] == ["/data.bin", "/data.bin"]
    assert (tmp_path / "raw" / "wiki" / "data.bin").read_bytes() == PAYLOAD


def test_a_transfer_cut_off_is_resumed_on_the_next_try(server, fetcher, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.failures["/data.bin"] = ["truncate"]
    fetcher.fetch(url_fetch(server.url + "/data.bin"))
    assert server.requests == [("/data.bin", None), ("/data.bin", f"bytes={len(PAYLOAD) // 2}-")]
    assert (tmp_path / "raw" / "wiki" / "data.bin").read_bytes() == PAYLOAD


def test_persistent_server_errors_give_up_and_keep_the_part(server, fetcher, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.failures["/data.bin"] = ["truncate", "503", "503"]
    with pytest.raises(DownloadError, match=r"gave up after 3 tries.*resumes from there"):
        fetcher.fetch(url_fetch(server.url + "/data.bin"))
    assert (tmp_path / "raw" / "wiki" / "data.bin.part").stat().st_size == len(PAYLOAD) // 2


def test_not_found_is_not_retried_and_says_how_to_fetch_by_hand(server, fetcher, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        fetcher.fetch(url_fetch(server.url + "/missing.tar"))
    assert len(server.requests) == 1
    assert str((tmp_path / "raw" / "wiki" / "missing.tar").resolve()) in str(caught.value)


def test_unreachable_host_fails_at_once_naming_the_manual_path_and_the_params_key(tmp_path):
    slow_retries = make_fetcher(tmp_path, backoff=30.0, timeout=5.0)
    weight = Fetch("vgg_face", "weights.vgg_face", url=f"https://127.0.0.1:{closed_port()}/x/vgg_face_weights.h5",
                   weight=True)
    started = time.monotonic()
    with pytest.raises(UnreachableError) as caught:
        slow_retries.fetch(weight)
    assert time.monotonic() - started < 3.0  # no retry with a 30 s backoff happened
    message = str(caught.value)
    assert str((tmp_path / "raw" / "weights" / "vgg_face.h5").resolve()) in message
    assert "`path: <your copy>` at weights.vgg_face" in message


def test_a_file_put_by_hand_at_the_target_is_used_offline(tmp_path, fetcher):
    target = tmp_path / "raw" / "weights" / "yunet.onnx"
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)
    item = Fetch("yunet", "weights.yunet", url=f"https://127.0.0.1:{closed_port()}/m/yunet_2023.onnx",
                 sha256=sha(PAYLOAD), weight=True)
    [result] = fetcher.fetch(item)
    assert result.action == "verified" and result.key == "weights/yunet.onnx"


def test_a_second_run_does_not_download_again(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    make_fetcher(tmp_path).fetch(url_fetch(server.url + "/data.bin"))
    [again] = make_fetcher(tmp_path).fetch(url_fetch(server.url + "/data.bin"))
    assert again.action == "up to date" and len(server.requests) == 1


# ----------------------------------------------------------------------------- checksums


def test_a_pinned_sha256_mismatch_moves_the_file_aside(server, fetcher, tmp_path):
    server.files["/data.bin"] = b"not the file the params pin"
    with pytest.raises(ChecksumError) as caught:
        fetcher.fetch(url_fetch(server.url + "/data.bin", sha256=sha(PAYLOAD)))
    got = sha(b"not the file the params pin")
    aside = tmp_path / "raw" / "wiki" / f"data.bin.bad-{got[:8]}"
    assert aside.read_bytes() == b"not the file the params pin"
    assert not (tmp_path / "raw" / "wiki" / "data.bin").exists()
    message = str(caught.value)
    assert sha(PAYLOAD) in message and got in message and str(aside) in message
    assert "datasets.wiki.sources[0].sha256" in message
    assert read_lock(tmp_path / "downloads.lock.yaml") == {}


def test_the_lock_refuses_a_later_file_that_differs(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    make_fetcher(tmp_path).fetch(url_fetch(server.url + "/data.bin"))
    (tmp_path / "raw" / "wiki" / "data.bin").unlink()
    server.files["/data.bin"] = b"changed upstream"
    with pytest.raises(ChecksumError, match=r"delete the entry 'wiki/data.bin' from .*downloads.lock.yaml") as caught:
        make_fetcher(tmp_path).fetch(url_fetch(server.url + "/data.bin"))
    assert sha(PAYLOAD) in str(caught.value) and sha(b"changed upstream") in str(caught.value)
    assert read_lock(tmp_path / "downloads.lock.yaml")["wiki/data.bin"]["sha256"] == sha(PAYLOAD)
    assert list((tmp_path / "raw" / "wiki").glob("data.bin.bad-*"))


def test_a_pinned_sha256_overrides_the_lock(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    make_fetcher(tmp_path).fetch(url_fetch(server.url + "/data.bin"))
    (tmp_path / "raw" / "wiki" / "data.bin").unlink()
    server.files["/data.bin"] = b"version 2"
    make_fetcher(tmp_path).fetch(url_fetch(server.url + "/data.bin", sha256=sha(b"version 2")))
    assert read_lock(tmp_path / "downloads.lock.yaml")["wiki/data.bin"]["sha256"] == sha(b"version 2")


# ----------------------------------------------------------------------------- local sources


def test_a_local_file_is_linked_and_a_changed_copy_is_refused_in_place(tmp_path):
    local = tmp_path / "manual" / "labels.csv"
    local.parent.mkdir()
    local.write_bytes(b"file,age\n1.jpg,30\n")
    item = Fetch("fairface", "datasets.fairface.sources[0]", path="manual/labels.csv")
    [result] = make_fetcher(tmp_path).fetch(item)
    target = tmp_path / "raw" / "fairface" / "labels.csv"
    assert result.action == "linked" and os.path.samefile(local, target)
    assert make_fetcher(tmp_path).fetch(item)[0].action == "up to date"

    local.unlink()
    local.write_bytes(b"file,age\n1.jpg,31\n")
    with pytest.raises(ChecksumError, match="left where it is"):
        make_fetcher(tmp_path).fetch(item)
    assert local.read_bytes() == b"file,age\n1.jpg,31\n"


def test_a_local_archive_is_extracted_in_the_dataset_folder(tmp_path):
    archive = tmp_path / "manual" / "UTKFace.tar.gz"
    archive.parent.mkdir()
    write_tar(archive, [file_member("UTKFace/30_0_0_2017.jpg.chip.jpg", b"jpeg")])
    item = Fetch("utkface", "datasets.utkface.sources[0]", path="manual/UTKFace.tar.gz")
    [result] = make_fetcher(tmp_path).fetch(item)
    assert (tmp_path / "raw" / "utkface" / "UTKFace" / "30_0_0_2017.jpg.chip.jpg").read_bytes() == b"jpeg"
    assert result.action == "extracted 1 members"
    assert read_lock(tmp_path / "downloads.lock.yaml")["utkface/UTKFace.tar.gz"]["sha256"] == sha(archive.read_bytes())

    assert make_fetcher(tmp_path).fetch(item)[0].action == "up to date"
    (tmp_path / "raw" / "utkface" / "UTKFace" / "30_0_0_2017.jpg.chip.jpg").unlink()
    (tmp_path / "raw" / "utkface" / "UTKFace").rmdir()
    assert make_fetcher(tmp_path).fetch(item)[0].action.startswith("extracted")  # deleted output: redone


def test_a_local_folder_is_linked_file_by_file_and_its_archives_extracted(tmp_path):
    folder = tmp_path / "manual" / "fairface"
    (folder / "extra").mkdir(parents=True)
    (folder / "fairface_label_val.csv").write_text("file,age\n")
    (folder / "extra" / "notes.txt").write_text("hello")
    with zipfile.ZipFile(folder / "fairface-img.zip", "w") as archive:
        archive.writestr("val/1.jpg", b"jpeg")
    item = Fetch("fairface", "datasets.fairface.sources[0]", path="manual/fairface")
    results = make_fetcher(tmp_path).fetch(item)
    raw = tmp_path / "raw" / "fairface"
    assert os.path.samefile(raw / "fairface_label_val.csv", folder / "fairface_label_val.csv")
    assert (raw / "extra" / "notes.txt").read_text() == "hello"
    assert (raw / "val" / "1.jpg").read_bytes() == b"jpeg"
    assert not (raw / "fairface-img.zip").exists()  # extracted, not copied
    assert {r.key: r.action for r in results} == {
        "fairface/fairface/": "2 linked files", "fairface/fairface-img.zip": "extracted 1 members",
    }
    assert "fairface/fairface-img.zip" in read_lock(tmp_path / "downloads.lock.yaml")
    assert {r.action for r in make_fetcher(tmp_path).fetch(item)} == {"up to date"}


@pytest.mark.parametrize("adapter, where", [
    ("utkface", "https://susanqq.github.io/UTKFace/"),
    ("fairface", "https://github.com/joojs/fairface"),
])
def test_a_missing_manual_dataset_says_where_to_download_it_and_where_to_put_it(tmp_path, raw_params, adapter, where):
    params = validate({**raw_params, "roles": {"pretrain": adapter, "finetune": adapter, "evaluate": [adapter]}})
    [item] = [fetch for fetch in plan(params) if not fetch.weight]
    with pytest.raises(MissingSourceError) as caught:
        make_fetcher(tmp_path).fetch(item)
    message = str(caught.value)
    assert where in message
    assert str((tmp_path / raw_params["datasets"][adapter]["sources"][0]["path"]).resolve()) in message
    assert f"datasets.{adapter}.sources[0].path" in message


# ----------------------------------------------------------------------------- the stage


def test_the_stage_fetches_local_sources_and_a_second_run_is_up_to_date(tmp_path, raw_params, monkeypatch, capsys):
    manual = tmp_path / "manual"
    (manual / "fairface" / "val").mkdir(parents=True)
    (manual / "fairface" / "val" / "1.jpg").write_bytes(b"jpeg")
    (manual / "yunet.onnx").write_bytes(b"onnx model")
    raw = copy.deepcopy(raw_params)
    raw["roles"] = {"pretrain": "fairface", "finetune": "fairface", "evaluate": ["fairface"]}
    raw["datasets"]["fairface"]["sources"] = [{"path": "manual/fairface"}]
    raw["weights"]["yunet"] = {"path": "manual/yunet.onnx", "sha256": sha(b"onnx model")}
    raw["backbone"]["weights"] = "random"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)

    assert stage.main(["--no-progress"]) == 0
    assert (tmp_path / "data" / "raw" / "fairface" / "val" / "1.jpg").read_bytes() == b"jpeg"
    assert (tmp_path / "data" / "raw" / "weights" / "yunet.onnx").read_bytes() == b"onnx model"
    assert set(read_lock(tmp_path / "downloads.lock.yaml")) == {"weights/yunet.onnx"}
    assert stage.main(["--no-progress"]) == 0
    assert capsys.readouterr().out.count("up to date") == 2

    (manual / "fairface" / "val" / "1.jpg").unlink()
    (manual / "fairface" / "val").rmdir()
    (manual / "fairface").rmdir()
    assert stage.main(["--no-progress"]) == 1
    assert "https://github.com/joojs/fairface" in capsys.readouterr().out


# ----------------------------------------------------------------------------- real files in ../shared

SHARED = ROOT.parent / "shared"


@pytest.mark.shared
def test_the_real_fairface_sample_folder_is_linked_as_a_local_source(tmp_path):
    folder = SHARED / "datasets" / "fairface-sample"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (the real FairFace sample lives beside the repo)")
    item = Fetch("fairface", "datasets.fairface.sources[0]", path=str(folder))
    [result] = make_fetcher(tmp_path).fetch(item)
    raw = tmp_path / "raw" / "fairface"
    assert len(list((raw / "val").glob("*.jpg"))) == 3000
    assert (raw / "fairface_label_val.csv").read_bytes() == (folder / "fairface_label_val.csv").read_bytes()
    assert result.action in ("3001 linked files", "3001 copied files")
    assert make_fetcher(tmp_path).fetch(item)[0].action == "up to date"


@pytest.mark.shared
def test_the_yunet_checksum_pinned_in_params_matches_the_real_model(tmp_path, raw_params):
    model = SHARED / "models" / "face_detection_yunet.onnx"
    if not model.is_file():
        pytest.skip(f"{model} is absent (the real YuNet model lives beside the repo)")
    item = Fetch("yunet", "weights.yunet", path=str(model), sha256=raw_params["weights"]["yunet"]["sha256"], weight=True)
    [result] = make_fetcher(tmp_path).fetch(item)
    assert result.key == "weights/yunet.onnx" and result.size == model.stat().st_size
