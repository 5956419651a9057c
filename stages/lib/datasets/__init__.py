"""Dataset adapters: each turns one dataset's raw files into manifest rows and reject rows.

`ADAPTERS` maps the `adapter` named in params.yaml (`datasets.<name>.adapter`) to its options model
and its reader. `parse_options` validates the dataset's `options` (unknown keys and bad values raise
`OptionsError` naming `datasets.<name>.options.<key>`); `read_dataset` reads the dataset's folder
with its own age range and draws its sample (the options every adapter takes, `common.Options`);
`run_adapter` does both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from stages.lib.datasets import fairface, folder, imdb_wiki, synthetic, utkface
from stages.lib.datasets.common import AdapterResult, DatasetError, DatasetFolder, Options, dataset_labels, sample_rows
from stages.lib.core.params import Labels, ParamsError

__all__ = ["ADAPTERS", "Adapter", "AdapterResult", "DatasetError", "OptionsError", "parse_options", "read_dataset",
           "run_adapter"]


class OptionsError(ParamsError):
    """A dataset's `options` in params.yaml that its adapter cannot use."""


@dataclass(frozen=True)
class Adapter:
    options: type[Options]
    read: Callable[[DatasetFolder], AdapterResult]
    # True when the adapter makes its own images in the folder it is given (synthetic), rather than
    # reading what the download stage put there.
    generates: bool = False
    # The whole dataset as published, for its options: (it in words, its faces), so that a run on a
    # sample says how much of it it read; None where unknown.
    published_size: Callable[[dict], tuple[str, int] | None] = lambda options: None


ADAPTERS: dict[str, Adapter] = {
    "imdb_wiki": Adapter(imdb_wiki.ImdbWikiOptions, imdb_wiki.read),
    "utkface": Adapter(utkface.UTKFaceOptions, utkface.read, published_size=utkface.published_size),
    "fairface": Adapter(fairface.FairFaceOptions, fairface.read, published_size=fairface.published_size),
    "folder": Adapter(folder.FolderOptions, folder.read),
    "synthetic": Adapter(synthetic.SyntheticOptions, synthetic.read, generates=True),
}


def _describe(error: dict, prefix: str) -> str:
    location = ".".join([prefix, *(str(part) for part in error["loc"])])
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown option"
    if error["type"] == "missing":
        return f"{location}: required option is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"{location}: {message} (got {error.get('input')!r})"


def parse_options(adapter_name: str, dataset: str, options: dict, labels: Labels | None = None) -> Options:
    """The adapter's validated options; OptionsError naming every bad `datasets.<dataset>.options.<key>`.
    With `labels`, the dataset's age range is checked against them too."""
    if adapter_name not in ADAPTERS:
        raise OptionsError(f"datasets.{dataset}.adapter: {adapter_name!r} is not one of {', '.join(ADAPTERS)}")
    model = ADAPTERS[adapter_name].options
    try:
        parsed = model.model_validate(options or {})
    except ValidationError as exc:
        prefix = f"datasets.{dataset}.options"
        allowed = ", ".join(model.model_fields)
        lines = "\n  ".join(_describe(e, prefix) for e in exc.errors())
        raise OptionsError(f"params.yaml is not valid:\n  {lines}\n  ({adapter_name} options: {allowed})") from None
    if labels is not None:
        _own_labels(parsed, labels, dataset)
    return parsed


def _own_labels(options: Options, labels: Labels, dataset: str) -> Labels:
    try:
        return dataset_labels(options, labels)
    except ValueError as error:
        raise OptionsError(f"params.yaml: datasets.{dataset}.options: {error}") from None


def read_dataset(adapter_name: str, root: Path, dataset: str, options: Options, *, labels: Labels) -> AdapterResult:
    """Read `dataset` from `root` with its adapter, its age range (`dataset_labels`) and its sample."""
    folder = DatasetFolder(Path(root), dataset, options, _own_labels(options, labels, dataset))
    result = ADAPTERS[adapter_name].read(folder)
    return result if options.sample is None else sample_rows(result, dataset, options.sample, options.sample_seed)


def run_adapter(adapter_name: str, root: Path, dataset: str, options: dict, *, labels: Labels) -> AdapterResult:
    """Validate `options` and read the dataset `dataset` from `root` with the adapter `adapter_name`."""
    return read_dataset(adapter_name, root, dataset, parse_options(adapter_name, dataset, options, labels), labels=labels)
