"""DVC stages of the face age/gender bias study: one module per stage, thin, over stages.lib."""
