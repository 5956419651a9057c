"""The download stage: HTTP fetching (resume, retry, offline), checksums and the lock, local sources,
safe archive extraction, and which weights a run needs. No network: files are served from 127.0.0.1.
"""

import copy
import hashlib
import io
import os
import socket
import stat
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from stages import download as stage
from stages.lib.sources.archives import UnsafeArchiveError, extract_archive
from stages.lib.backbones.registry import describe
from stages.lib.core.params import ParamsError, validate
from stages.lib.sources.fetch import (ChecksumError, DownloadError, Fetcher, MissingSourceError, UnreachableError,
                                      read_lock)
from stages.lib.sources.plan import Fetch, needed_weights, plan_fetches, weight_path

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = bytes(range(256)) * 64  # 16 KiB


def needed(params):
    return needed_weights(params, describe(params.backbone).weights)


def plan(params, **kwargs):
    return plan_fetches(params, describe(params.backbone).weights, **kwargs)


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


# ----------------------------------------------------------------------------- archives


def file_member(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def special_member(name, kind):
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info, None


def write_tar(path, members):
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)


HOSTILE_TARS = {
    "absolute path": lambda outside: [file_member(str(outside / "abs.txt"))],
    "dot-dot": lambda outside: [file_member("../outside/evil.txt")],
    "dot-dot inside a path": lambda outside: [file_member("sub/../../outside/evil.txt")],
    "symlink to an absolute path": lambda outside: [link_member("link", str(outside))],
    "symlink climbing out": lambda outside: [link_member("sub/link", "../../outside")],
    "symlink chain climbing out": lambda outside: [link_member("sub/up", ".."), link_member("up2", "sub/up/..")],
    "file under an escaping symlink": lambda outside: [file_member("out/evil.txt"), link_member("out", "../outside")],
    "hard link out": lambda outside: [link_member("hard", "../outside/secret.txt", tarfile.LNKTYPE)],
    "character device": lambda outside: [special_member("dev/null", tarfile.CHRTYPE)],
    "fifo": lambda outside: [special_member("pipe", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
def test_hostile_tar_members_are_refused_before_anything_is_extracted(tmp_path, case):
    outside, target = tmp_path / "outside", tmp_path / "target"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    hostile = HOSTILE_TARS[case](outside)
    archive = tmp_path / "hostile.tar"
    write_tar(archive, [file_member("innocent.txt"), *hostile])
    with pytest.raises(UnsafeArchiveError) as caught:
        extract_archive(archive, target, progress=False)
    assert "hostile.tar" in str(caught.value)
    assert any(repr(info.name) in str(caught.value) for info, _ in hostile)
    assert list(target.iterdir()) == []
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def zip_member(name, data=b"x", mode=None):
    info = zipfile.ZipInfo(name)
    if mode is not None:
        info.external_attr = mode << 16
    return info, data


HOSTILE_ZIPS = {
    "absolute path": [zip_member("/tmp/abs.txt")],
    "dot-dot": [zip_member("../evil.txt")],
    "windows dot-dot": [zip_member("..\\evil.txt")],
    "drive letter": [zip_member("C:/evil.txt")],
    "symlink climbing out": [zip_member("link", b"../../outside", stat.S_IFLNK | 0o777)],
    "character device": [zip_member("dev", b"", stat.S_IFCHR | 0o600)],
    "fifo": [zip_member("pipe", b"", stat.S_IFIFO | 0o600)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ZIPS))
def test_hostile_zip_members_are_refused_before_anything_is_extracted(tmp_path, case):
    archive, target = tmp_path / "hostile.zip", tmp_path / "target"
    with zipfile.ZipFile(archive, "w") as handle:
        for info, data in [zip_member("innocent.txt"), *HOSTILE_ZIPS[case]]:
            handle.writestr(info, data)
    with pytest.raises(UnsafeArchiveError) as caught:
        extract_archive(archive, target, progress=False)
    assert "hostile.zip" in str(caught.value) and repr(HOSTILE_ZIPS[case][-1][0].filename) in str(caught.value)
    assert list(target.iterdir()) == []


def test_links_that_stay_inside_are_extracted(tmp_path):
    archive = tmp_path / "fine.tar"
    write_tar(archive, [
        file_member("data/v1.txt", b"v1"),
        link_member("data/latest", "v1.txt"),
        link_member("top", "data/latest"),
        link_member("copy.txt", "data/v1.txt", tarfile.LNKTYPE),
    ])
    extracted = extract_archive(archive, tmp_path / "target", progress=False)
    assert extracted.entries == ["copy.txt", "data", "top"]
    assert (tmp_path / "target" / "top").read_bytes() == b"v1"
    assert (tmp_path / "target" / "copy.txt").read_bytes() == b"v1"

    with zipfile.ZipFile(tmp_path / "fine.zip", "w") as handle:
        handle.writestr("dir/a.txt", b"a")
        handle.writestr(zip_member("dir/b.txt", b"a.txt", stat.S_IFLNK | 0o777)[0], b"a.txt")
    extract_archive(tmp_path / "fine.zip", tmp_path / "zipped", progress=False)
    assert os.readlink(tmp_path / "zipped" / "dir" / "b.txt") == "a.txt"


def test_extraction_never_writes_through_a_hard_link_into_the_users_file(tmp_path):
    users = tmp_path / "users_copy.txt"
    users.write_text("original")
    target = tmp_path / "target"
    target.mkdir()
    os.link(users, target / "a.txt")
    archive = tmp_path / "update.tar"
    write_tar(archive, [file_member("a.txt", b"from the archive")])
    extract_archive(archive, target, progress=False)
    assert (target / "a.txt").read_text() == "from the archive"
    assert users.read_text() == "original"


def test_a_truncated_archive_is_a_clear_error(tmp_path):
    archive = tmp_path / "cut.tar.gz"
    write_tar(archive, [file_member("a.bin", os.urandom(50_000))])
    archive.write_bytes(archive.read_bytes()[:1000])
    with pytest.raises(Exception, match=r"cut.tar.gz.*truncated or not a valid archive"):
        extract_archive(archive, tmp_path / "target", progress=False)


# ----------------------------------------------------------------------------- planning from params


@pytest.fixture()
def raw_params():
    with (ROOT / "params.yaml").open() as handle:
        return yaml.safe_load(handle)


def with_changes(raw, merge=True, **sections):
    """Params with some sections changed: merged into params.yaml's, or replacing them."""
    changed = copy.deepcopy(raw)
    for section, values in sections.items():
        changed[section] = {**changed[section], **values} if merge else values
    return validate(changed)


def test_needed_weights_follow_the_detector_and_backbone_not_the_experiments(raw_params):
    assert needed(validate(raw_params)) == ["yunet", "vgg_face", "age", "gender"]
    assert needed(with_changes(raw_params, crop={"detector": "haar"})) == ["vgg_face", "age", "gender"]
    assert needed(with_changes(raw_params, backbone={"weights": "random"})) == ["yunet"]
    assert needed(with_changes(raw_params, backbone={"name": "dlib_resnet"})) == ["yunet"]
    # editing experiments never changes what is fetched (so it never re-runs the download stage)
    no_published = {k: v for k, v in raw_params["experiments"].items() if v["init"] != "published"}
    assert needed(with_changes(raw_params, merge=False, experiments=no_published)) == needed(validate(raw_params))


def test_only_the_active_datasets_are_planned(raw_params):
    fetches = plan(validate(raw_params))
    assert [f.params_key for f in fetches] == [
        "datasets.wiki.sources[0]", "datasets.utkface_wild.sources[0]", "datasets.imdb.sources[0]",
        "datasets.utkface.sources[0]", "weights.yunet", "weights.vgg_face", "weights.age", "weights.gender",
    ]
    demo = plan(validate({**raw_params, "profile": "demo"}))
    assert [f.params_key for f in demo] == []  # synthetic has no sources; its faces carry boxes (haar, no download)


def test_only_picks_named_sources_and_rejects_unknown_names(raw_params):
    params = validate(raw_params)
    assert [f.params_key for f in plan(params, only=["yunet", "fairface"])] == [
        "datasets.fairface.sources[0]", "weights.yunet",
    ]
    with pytest.raises(ParamsError, match=r"--only nope: .*known: age, .*fairface"):
        plan(params, only=["nope"])


def test_a_needed_weight_missing_from_params_is_named(raw_params):
    weights = {k: v for k, v in raw_params["weights"].items() if k != "age"}
    with pytest.raises(ParamsError, match=r"weights\.age: required key is missing"):
        plan(with_changes(raw_params, merge=False, weights=weights))


def test_two_sources_with_one_file_name_are_refused(raw_params):
    datasets = copy.deepcopy(raw_params["datasets"])
    datasets["wiki"]["sources"].append({"url": "https://mirror.example.org/wiki_crop.tar"})
    with pytest.raises(ParamsError, match=r"datasets\.wiki\.sources\[1\]: .*'wiki_crop.tar'.*datasets\.wiki\.sources\[0\]"):
        plan(with_changes(raw_params, merge=False, datasets=datasets))


def test_weight_paths_take_the_extension_of_their_source(raw_params):
    params = validate(raw_params)
    assert weight_path(params, "vgg_face") == params.paths.raw / "weights/vgg_face.h5"
    assert weight_path(params, "yunet") == params.paths.raw / "weights/yunet.onnx"


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
