"""The library behind the stages: datasets, faces, backbone, heads, sampling, metrics, plots."""
