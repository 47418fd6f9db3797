"""Suite-wide set-up.

Triton kernels run on CPU tensors through the interpreter (docs/design.md#testing). TRITON_INTERPRET must be set before
triton is first imported anywhere (triton jit-decorates its standard library at import), so it is set here, in the
root conftest that pytest imports before any test module. On a CUDA machine it stays unset, so the `gpu` tests run
the compiled kernels.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _cache_parsed_docstrings() -> None:
    """Building LightningCLI's parser parses the docstrings of every class it documents (attribute docstrings too),
    most of the cost of a `maro fit --print_config`; the suite builds that parser dozens of times over the same
    classes. Keep each parsed docstring for the session (a pure function of the class: the result is the same)."""
    from jsonargparse import _optionals

    parse, parsed = _optionals.parse_docstring, {}

    def parse_once(component, params=False, logger=None):  # noqa: ANN001, ANN202
        key = (component, params)
        if key not in parsed:
            parsed[key] = parse(component, params=params, logger=logger)
        return parsed[key]

    _optionals.parse_docstring = parse_once


_cache_parsed_docstrings()
