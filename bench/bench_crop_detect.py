"""The crop stage's detection-rate pass (crop.detect_precropped): every ready crop shown to each
detector, recording how many faces it finds. Before and after on the same real faces, in one process
on one OpenCV thread (as in the stage's workers), interleaved run by run (64 faces, the stage's run),
the order swapped every run, so that a busy machine slows both alike:

  before  photo after photo: each crop decoded, cut, then shown to YuNet, Haar and the SSD in turn
  after   detector after detector: the run's crops decoded and cut, then YuNet over all of them, then
          Haar, then the SSD (faces/crop.RowCropper.crop_all)

Times are CPU seconds of the thread (time.thread_time: what another job on the machine takes is not
counted; the wall-clock ratio is printed too), per face for each detector and for the whole pass (decode,
crop, JPEG write and the three detectors). It checks that every face's `found_by_<detector>` is identical.

Then, measured and not adopted (each one's counts are checked against the plain path's):
  - the SSD on a batch of blobs (N photos per forward): OpenCV 4.x's importer of this graph refuses N > 1;
  - the SSD's DetectionOutput keeping only boxes above 0.7 (the graph says 0.01; the counts cannot change);
  - OpenCV's threads: 2 instead of 1 in one process (the stage already runs one process per core).

    python bench/bench_crop_detect.py --faces 500 --weights ~/.cache/face-bias-study/published/weights
        [--yunet /work/shared/models/face_detection_yunet.onnx] [--rounds 2]

Faces: half UTKFace aligned chips, half FairFace crops, from ../shared/datasets (read-only). The
SSD's files (ssd_face.pb, ssd_face_config.pbtxt) are read from --weights: `python -m stages.download
--only ssd_face ssd_face_config` puts them in data/raw/weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.lib.faces.crop import CropSettings, CropTask, RowCropper, batches  # noqa: E402
from stages.lib.faces.detect import SSD_INPUT, SSD_MEANS, SSD_MIN_SCORE, SsdDetector  # noqa: E402
from stages.lib.faces.images import read_image  # noqa: E402

SHARED = ROOT.parent / "shared"
DETECTORS = ("yunet", "haar", "ssd")
RUN = 64  # faces a run: the stage's run for 7,996 faces on two workers (`run_tasks`)
SSD_THRESHOLD = (b"f: 0.00999999977648", b"f: 0.699999988079")  # DetectionOutput's confidence_threshold


class Timed:
    """A detector that adds up the thread's CPU seconds its `detect` takes."""

    def __init__(self, detector):
        self.detector, self.name, self.cpu = detector, detector.name, 0.0

    def detect(self, image: np.ndarray):
        start = time.thread_time()
        found = self.detector.detect(image)
        self.cpu += time.thread_time() - start
        return found


def ready_crops(count: int) -> list[Path]:
    utk = sorted((SHARED / "datasets" / "utkface-aligned-sample").glob("*.jpg"))
    fair = sorted((SHARED / "datasets" / "fairface-sample" / "val").glob("*.jpg"))
    if not utk or not fair:
        raise SystemExit(f"bench_crop_detect: no real faces under {SHARED / 'datasets'}")
    return utk[:count // 2] + fair[:count - count // 2]


def before(cropper: RowCropper, tasks: list[CropTask]) -> list[dict[str, int]]:
    return [cropper.crop_all([task])[0].found_by for task in tasks]


def after(cropper: RowCropper, tasks: list[CropTask]) -> list[dict[str, int]]:
    return [outcome.found_by for outcome in cropper.crop_all(tasks)]


def compare(cropper: RowCropper, tasks: list[CropTask], rounds: int) -> tuple[dict, dict, dict]:
    """(CPU seconds, wall seconds, found_by of every face) of before and after; CPU seconds per detector
    under 'before:<name>' and 'after:<name>'."""
    timed = {name: Timed(cropper.detector(name)) for name in DETECTORS}
    cropper._detectors.update(timed)
    cpu, wall, found = {}, {}, {"before": [], "after": []}
    for round_ in range(rounds):
        for index, run in enumerate(batches(tasks, RUN)):
            modes = (("before", before), ("after", after))
            for mode, method in modes if (index + round_) % 2 == 0 else modes[::-1]:
                spent = {name: detector.cpu for name, detector in timed.items()}
                start_cpu, start_wall = time.thread_time(), time.perf_counter()
                answers = method(cropper, run)
                cpu[mode] = cpu.get(mode, 0.0) + time.thread_time() - start_cpu
                wall[mode] = wall.get(mode, 0.0) + time.perf_counter() - start_wall
                for name, detector in timed.items():
                    cpu[f"{mode}:{name}"] = cpu.get(f"{mode}:{name}", 0.0) + detector.cpu - spent[name]
                if round_ == 0:
                    found[mode] += answers
    return cpu, wall, found


def ssd_counts(net: cv2.dnn.Net, images: list[np.ndarray]) -> tuple[float, list[int]]:
    """(CPU seconds per face, faces above SSD_MIN_SCORE in each photo) of an SSD net, one photo a forward."""
    start, counts = time.thread_time(), []
    for image in images:
        net.setInput(cv2.dnn.blobFromImage(image, 1.0, SSD_INPUT, SSD_MEANS, True, False))
        counts.append(int((net.forward()[0, 0, :, 2] > SSD_MIN_SCORE).sum()))
    return (time.thread_time() - start) / len(images), counts


def ssd_batched(net: cv2.dnn.Net, images: list[np.ndarray], size: int) -> str:
    """What a forward of `size` blobs at once gives: its counts against one at a time, or OpenCV's refusal."""
    try:
        net.setInput(cv2.dnn.blobFromImages(images[:size], 1.0, SSD_INPUT, SSD_MEANS, True, False))
        found = net.forward()[0, 0]
    except cv2.error as exc:
        said = " ".join(str(exc).replace(">", " ").split())
        return f"refused by OpenCV {cv2.__version__}: {said[said.find('(expected'):]}"
    together = [int(((found[:, 0] == i) & (found[:, 2] > SSD_MIN_SCORE)).sum()) for i in range(size)]
    alone = ssd_counts(net, images[:size])[1]
    return f"runs; counts {'identical' if together == alone else 'DIFFERENT'} on {size} faces"


def ssd_threshold(weights: Path, images: list[np.ndarray], rounds: int) -> str:
    """The SSD with its DetectionOutput keeping boxes above 0.7 only, against the graph as published."""
    model = np.fromfile(weights / "ssd_face.pb", np.uint8)
    config = (weights / "ssd_face_config.pbtxt").read_bytes()
    if config.count(SSD_THRESHOLD[0]) != 1:
        return "not measured: the config's confidence_threshold is not the expected one"
    nets = [cv2.dnn.readNetFromTensorflow(model, np.frombuffer(text, np.uint8))
            for text in (config, config.replace(*SSD_THRESHOLD))]
    seconds, counts = {0: [], 1: []}, {}
    for round_ in range(rounds):
        for which in (0, 1) if round_ % 2 == 0 else (1, 0):
            spent, counts[which] = ssd_counts(nets[which], images)
            seconds[which].append(spent)
    same = counts[0] == counts[1]
    return (f"SSD {min(seconds[1]) * 1000:.2f} ms/face against {min(seconds[0]) * 1000:.2f} "
            f"(ratio {min(seconds[1]) / min(seconds[0]):.3f}), counts {'identical' if same else 'DIFFERENT'}")


def threads(cropper: RowCropper, images: list[np.ndarray]) -> str:
    """Every detector's counts and wall seconds per face with two OpenCV threads against one."""
    results = {}
    for count in (1, 2):
        cv2.setNumThreads(count)
        start = time.perf_counter()
        results[count] = (cropper.found_by(images), (time.perf_counter() - start) / len(images))
    cv2.setNumThreads(1)
    same = results[1][0] == results[2][0]
    return (f"2 threads {results[2][1] * 1000:.1f} ms/face (wall) against 1 thread {results[1][1] * 1000:.1f}, "
            f"counts {'identical' if same else 'DIFFERENT'}")


def report(cpu: dict, wall: dict, faces: int) -> None:
    for name in (*DETECTORS, None):
        label, key = (name, f":{name}") if name else ("pass", "")
        was, now = cpu[f"before{key}"] / faces, cpu[f"after{key}"] / faces
        print(f"  {label:<6} before {was * 1000:6.2f} ms/face  after {now * 1000:6.2f} ms/face  ratio {now / was:.3f}")
    print(f"  pass wall-clock ratio after/before {wall['after'] / wall['before']:.3f} "
          f"(before {wall['before'] / faces * 1000:.1f} ms/face, after {wall['after'] / faces * 1000:.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of before and after (summed)")
    parser.add_argument("--weights", type=Path, required=True, help="folder holding ssd_face.pb and ssd_face_config.pbtxt")
    parser.add_argument("--yunet", type=Path, default=SHARED / "models" / "face_detection_yunet.onnx")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)   # as in the crop stage's workers: one process per core
    settings = CropSettings(detector="yunet", margin=0.4, size=224, min_score=0.6, yunet_model=args.yunet,
                            ssd_files=(args.weights / "ssd_face.pb", args.weights / "ssd_face_config.pbtxt"),
                            detect_precropped=DETECTORS)
    cropper = RowCropper(settings)
    paths = ready_crops(args.faces)
    with tempfile.TemporaryDirectory() as out:
        tasks = [CropTask(i, str(p), f"{out}/{i}.jpg", "precropped", None) for i, p in enumerate(paths)]
        cpu, wall, found = compare(cropper, tasks, args.rounds)
    print(f"{len(paths)} ready crops ({len(paths) // 2} UTKFace, {len(paths) - len(paths) // 2} FairFace), one process, "
          f"one OpenCV thread, {args.rounds} interleaved rounds, runs of {RUN}; CPU time of the thread:")
    report(cpu, wall, len(paths) * args.rounds)
    identical = found["before"] == found["after"]
    for name in DETECTORS:
        print(f"  found by {name}: {np.mean([counts[name] > 0 for counts in found['after']]):.2%}")
    print(f"every face's found_by identical (hence every rate): {identical}")
    images = [read_image(str(p), upright=True) for p in paths[::max(1, len(paths) // 100)][:100]]
    ssd = SsdDetector(*settings.ssd_files)
    print("not adopted (on 100 of the faces):")
    print(f"  SSD, 4 blobs a forward: {ssd_batched(ssd._net, images, 4)}")
    print(f"  SSD, DetectionOutput above 0.7 only: {ssd_threshold(args.weights, images, args.rounds)}")
    print(f"  OpenCV threads, one process: {threads(RowCropper(settings), images)}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
