"""Stage `identity`: dlib's face descriptor over every crop, for the split's look-alike clusters.

    python -m stages.identity [--no-progress]

Runs only when params' split.clusters.embedding is `dlib_resnet` (see stages/lib/splitting/identity.py):
data/identity/ then holds features.npy, index.parquet, meta.json and throughput.json in the features
stage's format. The folder persists between runs and a finished pass over the same crops is reused, so
changing the split's threshold or fractions never runs dlib again. data/identity/status.json always
says whether the pass was made, and why not: clusters off, the heads' own features asked for, or the
dlib extra not installed (then the split keeps identities only and says so).
"""

from __future__ import annotations

import argparse
import sys

from stages.lib.backbones.dlib_resnet import BackboneUnavailable
from stages.lib.backbones.store import run_features
from stages.lib.core.params import load_params
from stages.lib.core.cli import run_stage
from stages.lib.core.schema import read_manifest
from stages.lib.splitting.identity import (STATUS_FILE, identity_params, needs_identity_pass, skipped_status,
                                           write_status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.identity", description=__doc__.splitlines()[0])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    args = parser.parse_args(argv)
    return run_stage("identity", lambda: _run(args))


def _run(args) -> int | None:
    """dlib's descriptor of every crop in paths.identity (or why there is none); returns the faces described."""
    params = load_params()
    out = params.paths.identity
    (out / STATUS_FILE).unlink(missing_ok=True)  # a pass that fails leaves no stale status behind
    clusters = params.split.clusters
    try:
        if not needs_identity_pass(clusters):
            status = skipped_status(clusters)
        else:
            meta = run_features(read_manifest(params.paths.crops_manifest), identity_params(params), out,
                                show_progress=False if args.no_progress else None)
            status = {"computed": True, "embedding": "dlib_resnet", "rows": meta["shape"][0], "reason": None}
    except BackboneUnavailable as missing:   # no dlib extra: the split keeps identities only, and says why
        status = {"computed": False, "embedding": "dlib_resnet", "reason": str(missing)}
    write_status(out, status)
    print(f"identity: {status['rows']:,} dlib descriptors in {out}" if status["computed"]
          else f"identity: no pass ({status['reason']})")
    return status.get("rows")

if __name__ == "__main__":
    sys.exit(main())
