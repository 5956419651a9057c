"""Which embedding the split measures look-alike faces in, and whether it could be computed.

Grouping faces that have no identity label (UTKFace, FairFace) into look-alike clusters needs an
embedding whose distances mean "same person" at a known threshold. The heads' backbone need not have
one: VGG-Face's pool5 has no calibrated threshold. So the split may use its own identity embedding,
dlib's 128-d face descriptor (same person below 0.6 Euclidean), whatever backbone the heads read.

That embedding is a backbone pass over every crop (dlib's landmarks and chips, then dlib's network
rebuilt in Keras: about 150 faces/s on 2 cores), so the `identity` stage computes it once, in the
features store's format (`backbones/store.py`: resumable, and reused while the crops and margin are
unchanged), and the split stage only reads it. The stage also writes
`status.json`, which says whether the pass was made and, when not, why (no clusters asked for, the
heads' own features asked for, or the dlib extra not installed); the split stage then falls back to
identities only and says so in split.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.lib.core.files import write_json
from stages.lib.core.params import Backbone, Clusters, Params

STATUS_FILE = "status.json"
IDENTITY_INPUT_SIZE = 224  # crops are decoded at this size; dlib then aligns each face to a 150x150 chip
IDENTITY_BATCH_SIZE = 64


def needs_identity_pass(clusters: Clusters | None) -> bool:
    """True when the split's look-alike clusters are measured in dlib's embedding, not the heads' features."""
    return clusters is not None and clusters.embedding == "dlib_resnet"


def identity_params(params: Params) -> Params:
    """`params` with the backbone the identity pass runs (dlib's descriptor), for `store.run_features`.

    Only the crops and crop.margin (where the face sits in a crop) shape the descriptors: the seed and
    the heads' backbone settings are fixed here, so that changing them never re-runs the pass."""
    backbone = Backbone(name="dlib_resnet", input_size=IDENTITY_INPUT_SIZE, batch_size=IDENTITY_BATCH_SIZE)
    return params.model_copy(update={"backbone": backbone, "seed": 0})


def holds_features_of(params: Params, backbone: Backbone) -> bool:
    """True when the identity stage's finished dlib pass holds `backbone`'s very features: it is the
    identity pass's dlib at its input size (the heads' width and the batch size change no feature), so
    the compare and probe stages read that pass instead of running dlib again."""
    identity = identity_params(params).backbone
    alike = backbone.model_copy(update={"fc_width": identity.fc_width, "batch_size": identity.batch_size})
    status = Path(params.paths.identity) / STATUS_FILE
    return alike == identity and status.is_file() and bool(read_status(params.paths.identity).get("computed"))


def skipped_status(clusters: Clusters | None) -> dict:
    """The status of an identity pass the params do not ask for, saying why."""
    if clusters is None:
        why = "split.clusters is null: identities only"
    else:
        why = f"split.clusters.embedding is {clusters.embedding!r}: the split reads the heads' own features"
    return {"computed": False, "embedding": None, "reason": why}


def write_status(folder: Path, status: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(status, folder / STATUS_FILE)


def read_status(folder: Path) -> dict:
    """The identity stage's status; FileNotFoundError naming the stage to run when it is missing."""
    path = Path(folder) / STATUS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the identity stage first (`dvc repro identity`)")
    return json.loads(path.read_text())
