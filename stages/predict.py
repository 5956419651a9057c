"""Age and gender of every face in some photos, with a trained experiment's heads.

    python -m stages.predict PHOTO [PHOTO...] [--experiment retrained] [--json] [--annotate DIR]
                             [--precropped | --margin M]

Faces are framed as the experiment's heads were trained (models/<experiment>/framing.json, written by
the train stage): heads trained on ready face crops (UTKFace's aligned chips) take each photo whole as
one face crop; heads trained on boxes plus a margin (IMDB-Wiki's crops, UTKFace in the wild) get faces
found with params' crop.detector (YuNet from data/raw/weights, or Haar) and cut with that same margin.
--precropped or --margin M override it, with a warning when they differ from the training framing.
The params' backbone embeds the faces and models/<experiment>/{age,gender}.keras predict (age: the
softmax's expected value, as the study; age_argmax: its most probable year). Prints a table, or JSON
with --json; --annotate writes each photo with its boxes and labels to DIR/<name>.jpg.
A photo without a face or that cannot be read gets a line with the problem; the exit status is 1 when
no face was found at all. Run it from the project root, after `dvc repro` (or the demo).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from stages.lib.backbones.registry import load
from stages.lib.faces.detect import CropError, make_detector
from stages.lib.sources.plan import weight_path
from stages.lib.heads.framing import choose_framing, read_framing
from stages.lib.heads.inference import annotate, check_heads, format_table, load_heads, predict_photos
from stages.lib.core.params import ParamsError, load_params


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="+", type=Path, help="image files (JPEG, PNG, ...)")
    parser.add_argument("--experiment", default="retrained", help="a key of params.yaml's experiments")
    parser.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's start-up lines (read by stages/lib/core/quiet.py; or FACE_BIAS_VERBOSE=1)")
    parser.add_argument("--annotate", type=Path, metavar="DIR", help="write annotated copies of the photos here")
    framing = parser.add_mutually_exclusive_group()
    framing.add_argument("--precropped", action="store_true",
                         help="take each photo whole as one face crop (default: as the heads were trained)")
    framing.add_argument("--margin", type=float, metavar="M",
                         help="detect faces and grow each box by M on each side (default: as the heads were trained)")
    args = parser.parse_args(argv)
    if args.margin is not None and not 0 <= args.margin <= 2:
        parser.error(f"--margin must lie between 0 and 2 (a fraction of the face box), got {args.margin:g}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        params = load_params()
        if args.experiment not in params.experiments:
            raise ParamsError(f"--experiment {args.experiment!r} is not in params.yaml's experiments: "
                              f"{', '.join(params.experiments)}")
        models_dir = params.paths.models / args.experiment
        heads = load_heads(models_dir)
        spec, embed = load(params.backbone, params.seed, params.paths.weights)
        check_heads(heads, spec, models_dir)
        framing, warnings = choose_framing(read_framing(models_dir), args.precropped, args.margin, params.crop.margin)
        detector = None if framing.kind == "chip" else make_detector(
            params.crop.detector, weight_path(params, "yunet"), params.crop.min_score)
    except (ParamsError, FileNotFoundError, ValueError, CropError, ImportError) as exc:
        print(f"predict: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"predict: warning: {warning}", file=sys.stderr)
    print(f"predict: faces framed as {framing.describe()} ({framing.source})", file=sys.stderr)
    results, found = predict_photos(args.photos, detector, framing.margin or 0.0, params.crop.size,
                                    embed, spec.input_size, heads, spec.published_outputs)
    print(results.to_json(orient="records", indent=2) if args.json else format_table(results))
    if args.annotate:
        args.annotate.mkdir(parents=True, exist_ok=True)
        for path, (image, faces) in found.items():
            target = args.annotate / f"{path.stem}.jpg"
            cv2.imwrite(str(target), annotate(image, faces, results[results["photo"] == str(path)]))
            print(f"annotated: {target}", file=sys.stderr)
    return 0 if results["problem"].isna().any() else 1


if __name__ == "__main__":
    sys.exit(main())
