"""Where the project is when DVC runs a stage in a copy of it.

`dvc exp run --queue` (then `dvc queue start`) and `dvc exp run --temp` run each experiment in
`<project>/.dvc/tmp/exps/<tmp…>/`: a git checkout of the experiment with DVC's outputs checked out of
the shared cache. What git ignores and DVC does not track (`data/manual/…`, put in by hand) is not in
that copy, and a relative path such as `../shared/datasets/…` points elsewhere from there. The stages
therefore resolve the local paths of params' sources against `project_root`: the project the copy
was made from, or the working directory itself outside such a copy.
"""

from __future__ import annotations

from pathlib import Path

EXPERIMENT_COPIES = (".dvc", "tmp", "exps")   # DVC's folder of temporary experiment workspaces


def project_root(cwd: Path) -> Path:
    """The project `cwd` belongs to: the one holding `.dvc/tmp/exps/` when `cwd` is a copy inside it."""
    parts = Path(cwd).absolute().parts
    size = len(EXPERIMENT_COPIES)
    for start in range(len(parts) - size - 1, 0, -1):   # the copy's own folder must follow `exps`
        if parts[start:start + size] == EXPERIMENT_COPIES:
            return Path(*parts[:start])
    return Path(cwd)
