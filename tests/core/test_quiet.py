"""Quiet runs: no TensorFlow start-up chatter on a stage's stderr unless asked for."""

import os
import subprocess
import sys
from pathlib import Path

from stages.lib.core.quiet import VERBOSE_ENV, is_verbose, quiet_lines

ROOT = Path(__file__).resolve().parents[2]
CHATTER_WORDS = ("oneDNN", "cuda", "cpu_feature", "absl::InitializeLog", "cuInit", "AVX")

# Lines TensorFlow 2.21 printed here on `import tensorflow` and its first device search.
STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796474903.689518   19717 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.
I0000 00:00:1796474903.690198   19717 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796474903.728857   19717 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1796475057.529569   27664 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
2024-03-01 10:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom operations are on.
"""


def test_the_startup_lines_are_dropped_and_everything_else_kept():
    kept = "features: 2,048/8,000 img (25.6%), 3.1 img/s, ETA 32m 0s\nUserWarning: something real\n"
    other_error = "E0000 00:00:1796475057.529569   27664 bfc_allocator.cc:47] out of memory\n"
    assert quiet_lines(STARTUP + kept + other_error) == kept + other_error


def test_verbose_by_environment_or_flag():
    assert is_verbose({VERBOSE_ENV: "1"}, ["stage"]) and is_verbose({}, ["predict", "--verbose"])
    assert not is_verbose({VERBOSE_ENV: "0"}, ["stage", "x.jpg"])


def _stderr(*args: str, verbose: bool = False) -> list[str]:
    env = {key: value for key, value in os.environ.items() if key not in (VERBOSE_ENV, "TF_CPP_MIN_LOG_LEVEL")}
    env.update({VERBOSE_ENV: "1"} if verbose else {})
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return done.stderr.splitlines()


def test_a_stage_that_imports_tensorflow_starts_quiet():
    """`predict` imports TensorFlow (and Keras) at start-up; its help must come without a line on stderr,
    even after TensorFlow looked for a GPU; FACE_BIAS_VERBOSE=1 lets TensorFlow's own setting through."""
    code = "import sys, stages.predict, tensorflow as tf; tf.constant(1) + 1; sys.exit(stages.predict.main(['--help']))"
    lines = _stderr("-c", code)
    assert [line for line in lines if any(word in line for word in CHATTER_WORDS)] == []
    assert lines == []
    shown = _stderr("-c", "import os, stages; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), file=__import__('sys').stderr)",
                    verbose=True)
    assert shown == ["None"]
