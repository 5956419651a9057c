"""A newcomer's first `dvc repro`, and by-hand data seen from DVC's experiment copies."""

import os
from pathlib import Path

import yaml

from stages import download as download_stage

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "https://127.0.0.1:9/"   # nothing listens there: refused at once, as offline


def _unreachable(sources: list[dict]) -> list[dict]:
    return [{"url": UNREACHABLE + Path(s["url"]).name} if "url" in s else s for s in sources]


def test_a_fresh_clone_without_the_hand_put_data_ends_in_one_line_naming_the_way_out(tmp_path, monkeypatch, capsys):
    """The full profile on a clone: UTKFace not put in by hand, the servers out of reach."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dataset in params["datasets"].values():
        dataset["sources"] = _unreachable(dataset["sources"])
    params["weights"] = {name: {"url": UNREACHABLE + Path(source["url"]).name} if source.get("url") else source
                         for name, source in params["weights"].items()}   # package-only: the audit's, not fetched
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)

    assert download_stage.main(["--no-progress"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("download: ") and "Traceback" not in last
    for named in ("profile=demo", "profile=real-offline", "data/manual/utkface/UTKFace.tar.gz",
                  "data/manual/utkface-wild", "data/raw/wiki/wiki_crop.tar", "data/raw/weights/vgg_face.h5"):
        assert named in last, named


def test_a_queued_copy_finds_the_files_put_in_by_hand(tmp_path, monkeypatch, capsys):
    """`data/manual/...` exists only in the project; the stage, run in DVC's copy, links it from there."""
    manual = tmp_path / "data" / "manual" / "fairface" / "val"
    manual.mkdir(parents=True)
    (manual / "1.jpg").write_bytes(b"jpeg")
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpq1"
    copy.mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["roles"] = {"pretrain": "fairface", "finetune": "fairface", "evaluate": ["fairface"]}
    params["crop"]["detector"] = "haar"
    params["backbone"]["weights"] = "random"
    (copy / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(copy)
    assert download_stage.main(["--no-progress"]) == 0, capsys.readouterr()
    assert (copy / "data" / "raw" / "fairface" / "val" / "1.jpg").read_bytes() == b"jpeg"
    assert os.path.samefile(copy / "data" / "raw" / "fairface" / "val" / "1.jpg", manual / "1.jpg")
