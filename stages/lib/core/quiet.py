"""Quiet runs: TensorFlow's and absl's start-up chatter kept off stderr, so that a stage prints DVC's
line, progress, warnings and its own summary, nothing else.

`stages/__init__.py` calls `install()` before any stage or library module can import TensorFlow:
- TF_CPP_MIN_LOG_LEVEL=2 (unless set): TensorFlow's own INFO and WARNING lines at run time;
- the lines TensorFlow's libraries log while they load, before that setting is read (absl's "All log
  messages before absl::InitializeLog()", oneDNN, cuda drivers, CPU features), are caught during
  `import tensorflow` and dropped, with those of its first search for devices (a CUDA build on a
  machine without a GPU logs "failed call to cuInit" as an error); every other line written then is
  passed on unchanged.

FACE_BIAS_VERBOSE=1 in the environment, or `--verbose` on a command line, leaves all of it as it was.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator, Mapping, MutableMapping, Sequence

VERBOSE_ENV = "FACE_BIAS_VERBOSE"
VERBOSE_FLAG = "--verbose"
TENSORFLOW = "tensorflow"
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
CHATTER = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \w+\.cc:\d+\]"                              # absl: I0000 00:00:17.. 123 port.cc:153]
    r"|\d{4}-\d\d-\d\d [\d:.]+: [IW] (?:tensorflow|external|tsl)/"       # older TensorFlow: 2024-.. I tensorflow/...
    r"|To enable the following instructions: .*rebuild TensorFlow"
    # errors only in name: a CUDA build of TensorFlow looking for a GPU on a machine without one
    r"|E\d{4} [\d:.]+\s+\d+ \w+\.cc:\d+\] (?:failed call to cuInit|Unable to register cu\w+ factory)")


def is_verbose(environ: Mapping[str, str], argv: Sequence[str]) -> bool:
    return environ.get(VERBOSE_ENV, "").strip().lower() in {"1", "true", "yes"} or VERBOSE_FLAG in argv[1:]


def quiet_lines(text: str) -> str:
    """`text` without TensorFlow's start-up chatter, line by line."""
    return "".join(line for line in text.splitlines(keepends=True) if not CHATTER.match(line))


def install(environ: MutableMapping[str, str] = os.environ, argv: Sequence[str] = sys.argv) -> None:
    """Quiet TensorFlow for this process (and the processes it starts), unless asked to be verbose."""
    if is_verbose(environ, argv):
        return
    for key, value in QUIET_ENV.items():
        environ.setdefault(key, value)
    if TENSORFLOW not in sys.modules and not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` through the other finders and loads it with its start-up lines filtered."""

    def find_spec(self, name, path=None, target=None):
        if name != TENSORFLOW:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            self.loader.exec_module(module)
            module.config.list_physical_devices()   # the device search logs at its first use: now, filtered


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """Everything written to file descriptor 2 inside, passed on without the chatter when it ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(quiet_lines(capture.read().decode(errors="replace")))
            sys.stderr.flush()
