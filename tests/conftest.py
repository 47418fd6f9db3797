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
