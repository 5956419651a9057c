"""Safe archive extraction (archives.py): hostile members refused before anything is written."""

import io
import os
import stat
import tarfile
import zipfile

import pytest

from stages.lib.sources.archives import (
    ArchiveError, UnsafeArchiveError, archive_suffix, extract_archive, is_archive,
)


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


def test_archive_names_and_their_suffixes():
    assert [is_archive(name) for name in ["UTKFace.TAR.GZ", "a.tgz", "wiki_crop.tar", "x.zip", "x.tar.gz.part",
                                          "w.h5"]] == [True, True, True, True, False, False]
    assert [archive_suffix(name) for name in ["UTKFace.tar.gz", "m.TGZ", "yunet_2023mar.onnx", "README"]] == [
        ".tar.gz", ".TGZ", ".onnx", ""]


def test_extraction_merges_with_the_target_and_counts_what_it_wrote(tmp_path):
    target = tmp_path / "target"
    (target / "part1").mkdir(parents=True)
    (target / "part1" / "kept.jpg").write_bytes(b"already here")
    archive = tmp_path / "part1.tar.gz"
    write_tar(archive, [file_member("part1/a.jpg", b"abc"), file_member("part1/b.jpg", b"de"),
                        file_member("landmarks.txt", b"f")])
    extracted = extract_archive(archive, target, progress=False)
    assert (extracted.entries, extracted.members, extracted.bytes) == (["landmarks.txt", "part1"], 3, 6)
    assert sorted(p.name for p in (target / "part1").iterdir()) == ["a.jpg", "b.jpg", "kept.jpg"]


def test_a_file_that_is_not_an_archive_is_refused(tmp_path):
    (tmp_path / "labels.csv").write_text("file,age\n")
    with pytest.raises(ArchiveError, match=r"labels\.csv: not an archive"):
        extract_archive(tmp_path / "labels.csv", tmp_path / "target", progress=False)
    assert not (tmp_path / "target").exists()


def test_a_tar_cut_at_a_member_boundary_is_refused_before_anything_is_extracted(tmp_path):
    archive = tmp_path / "wiki_crop.tar"
    write_tar(archive, [file_member("a.jpg", b"a" * 512), file_member("b.jpg", b"b" * 512)])
    archive.write_bytes(archive.read_bytes()[:2 * tarfile.BLOCKSIZE])  # a's header and data: a valid-looking tar
    with pytest.raises(ArchiveError, match=r"wiki_crop\.tar .*truncated or not a valid archive"):
        extract_archive(archive, tmp_path / "target", progress=False)
    assert list((tmp_path / "target").iterdir()) == []


def test_a_truncated_zip_is_a_clear_error(tmp_path):
    archive = tmp_path / "fairface.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("val/1.jpg", os.urandom(4000))
    archive.write_bytes(archive.read_bytes()[:3000])
    with pytest.raises(ArchiveError, match=r"fairface\.zip .*truncated or not a valid archive"):
        extract_archive(archive, tmp_path / "target", progress=False)


def test_a_symlink_loop_and_a_link_in_place_of_the_target_are_refused(tmp_path):
    loop = tmp_path / "loop.tar"
    write_tar(loop, [link_member("a", "b"), link_member("b", "a"), file_member("a/x.txt")])
    with pytest.raises(UnsafeArchiveError, match=r"member 'a' is a symlink to 'b'"):  # a loop never resolves
        extract_archive(loop, tmp_path / "target", progress=False)
    itself = tmp_path / "itself.tar"
    write_tar(itself, [link_member("./", "..")])
    with pytest.raises(UnsafeArchiveError, match="in place of the target itself"):
        extract_archive(itself, tmp_path / "target", progress=False)


@pytest.mark.parametrize("suffix", [".tar", ".zip"])
def test_a_link_already_in_the_target_is_never_written_through(tmp_path, suffix):
    outside, target = tmp_path / "outside", tmp_path / "target"
    outside.mkdir()
    target.mkdir()
    os.symlink(outside, target / "out")
    archive = tmp_path / f"update{suffix}"
    if suffix == ".tar":
        write_tar(archive, [file_member("out/evil.txt", b"evil")])
    else:
        with zipfile.ZipFile(archive, "w") as handle:
            handle.writestr("out/evil.txt", b"evil")
    with pytest.raises(UnsafeArchiveError, match="'out/evil.txt'"):
        extract_archive(archive, target, progress=False)
    assert list(outside.iterdir()) == []
