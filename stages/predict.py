"""Age and gender of every face in some photos, with a trained experiment's heads or a published model.

    python -m stages.predict PHOTO [PHOTO...] [--experiment retrained] [--json] [--annotate DIR]
                             [--precropped | --margin M]
    python -m stages.predict --model NAME [--precropped] [--json] PHOTO [PHOTO...]
    python -m stages.predict --list-models
    python -m stages.predict --measure [--json] [--precropped] PHOTO [PHOTO...]

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

--model NAME answers with a published model (stages/lib/backbones/published.py; --list-models names
them with their family, source and training data) instead of the experiment's heads: faces found with
params' crop.detector (or, --precropped, each photo whole as the face box), then the model's own
framing and alignment. It needs only the model's weights (`python -m stages.download --only NAME`).
JSON records: photo, face, x, y, w, h, age (null for a band model), age_band, gender, p_female, problem.

--measure adds each face's apparent skin colour and photo quality (docs/measurements.md): skin_lightness,
skin_hue, exposure (the clipped shares), sharpness, yaw, pitch, roll, and measure_problem where one could
not be taken. Without --model or trained heads it prints the measurements alone (problem: why a face
could not be measured), exit 0: it needs no run and no weights (faces found by Haar when YuNet's
weights are absent; skin colour needs the dlib extra for landmarks).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import pandas as pd

from stages.lib.backbones import published
from stages.lib.backbones.published_photos import format_cards, format_records, predict_photos as predict_with_model
from stages.lib.backbones.registry import load
from stages.lib.faces.detect import CropError, make_detector
from stages.lib.faces.measure import MeasureSettings, format_measurements, measure_photos, with_measurements
from stages.lib.sources.plan import weight_path
from stages.lib.heads.framing import choose_framing, read_framing
from stages.lib.heads.inference import Cutting, annotate, check_heads, format_table, load_heads, predict_photos
from stages.lib.core.params import ParamsError, load_params


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="*", type=Path, help="image files (JPEG, PNG, ...)")
    parser.add_argument("--experiment", help="a key of params.yaml's experiments (default: retrained)")
    parser.add_argument("--model", metavar="NAME", help="a published model instead of an experiment's heads")
    parser.add_argument("--list-models", action="store_true", help="list the published models and exit")
    parser.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's start-up lines (read by stages/lib/core/quiet.py; or FACE_BIAS_VERBOSE=1)")
    parser.add_argument("--annotate", type=Path, metavar="DIR", help="write annotated copies of the photos here")
    parser.add_argument("--measure", action="store_true",
                        help="add each face's skin colour, exposure, sharpness and head pose; alone without a model")
    framing = parser.add_mutually_exclusive_group()
    framing.add_argument("--precropped", action="store_true",
                         help="take each photo whole as one face crop (default: as the heads were trained)")
    framing.add_argument("--margin", type=float, metavar="M",
                         help="detect faces and grow each box by M on each side (default: as the heads were trained)")
    args = parser.parse_args(argv)
    if not args.photos and not args.list_models:
        parser.error("give at least one PHOTO (or --list-models)")
    if args.model is not None and (args.experiment or args.margin is not None or args.annotate):
        parser.error("--model frames faces its own way and has no experiment: leave out --experiment, --margin "
                     "and --annotate")
    args.experiment = args.experiment or "retrained"
    if args.margin is not None and not 0 <= args.margin <= 2:
        parser.error(f"--margin must lie between 0 and 2 (a fraction of the face box), got {args.margin:g}")
    return args


def predict_published(args: argparse.Namespace) -> int:
    """--model: the photos through a published model, with its own framing."""
    try:
        params = load_params()
        model = published.load(args.model, params.paths.weights)
        detector = None if args.precropped else make_detector(
            params.crop.detector, _weight_or_none(params, "yunet"), params.crop.min_score,
            ssd_files=_ssd_files(params))
    except KeyError as exc:
        print(f"predict: --model {exc.args[0]}", file=sys.stderr)
        return 2
    except (ParamsError, FileNotFoundError, ValueError, CropError, ImportError) as exc:
        print(f"predict: {exc}", file=sys.stderr)
        return 2
    framing = "each photo whole as the face box" if detector is None else f"faces found by {detector.name}"
    print(f"predict: {args.model}, {framing}, then the model's own framing", file=sys.stderr)
    records = predict_with_model(model, args.photos, detector, params.age_bands)
    if args.measure:
        records = with_measurements(records, _measured(args, params, detector, params.crop.margin))
    print(json.dumps(records, indent=2) if args.json else format_records(records))
    if args.measure and not args.json:
        print(format_measurements(_measured(args, params, detector, params.crop.margin)))
    return 0 if any(record["problem"] is None for record in records) else 1


def _weight_or_none(params, name: str) -> Path | None:
    return weight_path(params, name) if name in params.weights else None


def _ssd_files(params) -> tuple[Path, Path] | None:
    if "ssd_face" not in params.weights or "ssd_face_config" not in params.weights:
        return None
    return weight_path(params, "ssd_face"), weight_path(params, "ssd_face_config")


def heads_trained(experiment: str) -> bool:
    """True when params.yaml can be read and names trained heads for `experiment`."""
    try:
        folder = load_params().paths.models / experiment
    except ParamsError:
        return False
    return (folder / "age.keras").is_file() and (folder / "gender.keras").is_file()


def _measured(args: argparse.Namespace, params, detector, margin: float) -> list[dict]:
    return measure_photos(args.photos, detector, margin=margin, size=params.crop.size,
                          settings=MeasureSettings(**params.measure.model_dump()))


def measure_alone(args: argparse.Namespace) -> int:
    """--measure with no model to ask: each face's measurements alone (exit 0 whatever they found)."""
    try:
        params = load_params()
    except ParamsError as exc:
        print(f"predict: {exc}", file=sys.stderr)
        return 2
    detector, found_by = None, "each photo whole as one face crop"
    if not args.precropped:
        yunet = _weight_or_none(params, "yunet")
        name = params.crop.detector if params.crop.detector != "yunet" or (yunet and yunet.is_file()) else "haar"
        try:
            detector = make_detector(name, yunet, params.crop.min_score, ssd_files=_ssd_files(params))
        except (CropError, FileNotFoundError) as exc:
            detector, name = make_detector("haar", None, params.crop.min_score), f"haar ({exc})"
        found_by = f"faces found by {name}"
    print(f"predict: measurements alone (no trained heads), {found_by}", file=sys.stderr)
    margin = args.margin if args.margin is not None else params.crop.margin
    records = _measured(args, params, detector, margin)
    print(json.dumps(records, indent=2) if args.json else format_measurements(records))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_models:
        print(format_cards([published.card(name) for name in published.names()]))
        return 0
    if args.model is not None:
        return predict_published(args)
    if args.measure and not heads_trained(args.experiment):
        return measure_alone(args)
    try:
        params = load_params()
        params.experiment(args.experiment)
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
    results, found = predict_photos(args.photos, Cutting(detector, framing.margin or 0.0, params.crop.size),
                                    (spec, embed), heads, batch_size=params.backbone.batch_size,
                                    keep_found=args.annotate is not None)
    if args.measure:
        measured = _measured(args, params, detector, framing.margin or 0.0)
        results = pd.DataFrame(with_measurements(results.to_dict("records"), measured))
    print(results.to_json(orient="records", indent=2) if args.json else format_table(results))
    if args.measure and not args.json:
        print(format_measurements(measured))
    if args.annotate:
        args.annotate.mkdir(parents=True, exist_ok=True)
        for path, (image, faces) in found.items():
            target = args.annotate / f"{path.stem}.jpg"
            cv2.imwrite(str(target), annotate(image, faces, results[results["photo"] == str(path)]))
            print(f"annotated: {target}", file=sys.stderr)
    return 0 if results["problem"].isna().any() else 1


if __name__ == "__main__":
    sys.exit(main())
