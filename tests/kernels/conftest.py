"""Kernel tests run the Triton path on CPU tensors through the interpreter (DESIGN §7).

TRITON_INTERPRET must be set before triton is first imported (it jit-decorates its standard library at import),
hence at the top of this conftest, which pytest imports before the test modules. On a CUDA machine it stays unset,
so the `gpu` tests run the compiled kernels.
"""

import importlib.util
import os
import sys
from pathlib import Path

import torch

KERNELS_DIR = Path(__file__).resolve().parents[2] / "kernels"

if not torch.cuda.is_available():
    # Too late if something imported triton before this conftest (its standard library is then compiled, not
    # interpreted): the triton tests then fail with "needs CUDA tensors, or TRITON_INTERPRET=1 set before ...".
    os.environ.setdefault("TRITON_INTERPRET", "1")

# A checkout that is not pip-installed has no `maro_kernels` on the path (the name is a package-dir mapping in
# pyproject): load the package from the folder under its import name.
if importlib.util.find_spec("maro_kernels") is None:
    _spec = importlib.util.spec_from_file_location(
        "maro_kernels", KERNELS_DIR / "__init__.py", submodule_search_locations=[str(KERNELS_DIR)]
    )
    sys.modules["maro_kernels"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["maro_kernels"])
