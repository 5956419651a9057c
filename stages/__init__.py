"""DVC stages of the face age/gender bias study: one module per stage, thin, over stages.lib.

Every stage and CLI starts quiet: TensorFlow's start-up chatter is silenced before anything can import
it (stages/lib/core/quiet.py; FACE_BIAS_VERBOSE=1 or --verbose brings it back).

A stage that DVC runs (`python -m stages.<name>` with DVC_STAGE set) is handed to a warm interpreter
that has imported the libraries already, where one is up (stages/lib/core/preload.py;
FACE_BIAS_PRELOAD=0 turns that off): this returns only where the stage is to run here."""

from stages.lib.core import preload, quiet

quiet.install()
preload.hand_off()
