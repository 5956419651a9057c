"""Stage `params`: check params.yaml whole, then write what the stages read, the active profile applied.

    python -m stages.params

Every later stage declares in dvc.yaml only the keys it reads, from this resolved file
(params.paths.params), so editing a profile that is not in use, or a key a stage does not read,
re-runs nothing. It runs first, so a wrong key or an unknown backbone fails here, in one line, before
hours of download, crop or features. So does a missing optional dependency: every module the active
profile's backbones, published models and stages import is imported here (stages/lib/core/setup_check.py),
and one line names the command that installs what is missing.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from stages.lib.backbones import published
from stages.lib.backbones.registry import describe, needs
from stages.lib.core.cli import run_stage
from stages.lib.core.params import Params, ParamsError, load_params, resolved
from stages.lib.core.setup_check import Needs, check_needs
from stages.lib.faces.landmarks import landmark_model_file

# What the pipeline's own stages import, whatever the profile (crop: OpenCV; train: Keras; evaluate:
# fairlearn, scikit-learn; report: matplotlib; every table: pyarrow).
STAGES_NEED = Needs(("cv2", "keras", "tensorflow", "pyarrow", "sklearn", "skimage", "statsmodels", "fairlearn",
                     "matplotlib", "dvclive"))
# The measure stage finds 68 landmarks with dlib on every photo whose dataset does not draw them (all but synthetic).
LANDMARKS_NEED = Needs(("dlib",), extra="dlib", probe=landmark_model_file)


def check_audit_models(params: Params) -> None:
    """ParamsError naming every `audit_models` entry that no published model is registered under."""
    unknown = [name for name in params.audit_models if name not in published.names()]
    if unknown:
        raise ParamsError(f"params.yaml: audit_models: {', '.join(unknown)} not registered; registered published "
                          f"models: {', '.join(published.names())}")


def profile_needs(params: Params) -> dict[str, Needs]:
    """{who: what it imports} for everything the active profile runs: the stages, the backbone, the
    compared backbones and the audited published models, each as its registry entry declares."""
    wanted = {"the pipeline's stages": STAGES_NEED, f"backbone {params.backbone.name}": needs(params.backbone)}
    for label in params.compare_backbones:
        config = params.compared_backbone(label)
        wanted[f"compare_backbones.{label} ({config.name})"] = needs(config)
    for name in params.audit_models:
        wanted[f"audit_models {name}"] = published.card(name).needs
    role_datasets = {params.roles.pretrain, params.roles.finetune, *params.roles.evaluate}
    if any(params.datasets[name].adapter != "synthetic" for name in role_datasets):
        wanted["the measure stage's landmarks"] = LANDMARKS_NEED
    return wanted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    return run_stage("params", _run)


def _run() -> int | None:
    """The stage itself: what it read and wrote, and how many faces it processed (None: none)."""
    params = load_params()
    describe(params.backbone)
    for label in params.compare_backbones:
        try:
            describe(params.compared_backbone(label))
        except ParamsError as error:
            raise ParamsError(str(error).replace("backbone.name", f"compare_backbones.{label}.name")) from None
    check_audit_models(params)
    check_needs(profile_needs(params))
    target = params.paths.params
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("# Written by `python -m stages.params` from params.yaml (profile applied): do not edit.\n"
                      + yaml.safe_dump(resolved(params), sort_keys=False))
    print(f"params: profile {params.profile} -> {target}")
    return None


if __name__ == "__main__":
    sys.exit(main())
