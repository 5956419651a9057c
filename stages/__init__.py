"""DVC stages of the face age/gender bias study: one module per stage, thin, over stages.lib.

Every stage and CLI starts quiet: TensorFlow's start-up chatter is silenced before anything can import
it (stages/lib/core/quiet.py; FACE_BIAS_VERBOSE=1 or --verbose brings it back)."""

from stages.lib.core import quiet

quiet.install()
