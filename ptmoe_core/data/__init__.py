"""Data layer: data specs -> ``datasets.Dataset`` of examples, built-in tasks, mixing, formatting.

See ``sources`` for the spec syntax, ``mixture`` for how specs are mixed, ``formatting`` for
how an example becomes token ids with label and router masks.
"""

from .builtin import TASKS as BUILTIN_TASKS
from .builtin import builtin_names
from .files import DEFAULT_MAX_BYTES
from .formatting import DEFAULT_INSTRUCTIONS, FormatConfig, collate, encode_example
from .mixture import build_datasets, eval_sets, mix
from .schema import COLUMNS, FEATURES, SPLITS, make_example, to_dataset
from .sources import PREFIXES, Spec, load_spec, parse_spec, preview, spec_name

__all__ = [
    "BUILTIN_TASKS",
    "COLUMNS",
    "DEFAULT_INSTRUCTIONS",
    "DEFAULT_MAX_BYTES",
    "FEATURES",
    "PREFIXES",
    "SPLITS",
    "FormatConfig",
    "Spec",
    "build_datasets",
    "builtin_names",
    "collate",
    "encode_example",
    "eval_sets",
    "load_spec",
    "make_example",
    "mix",
    "parse_spec",
    "preview",
    "spec_name",
    "to_dataset",
]
