"""Kernel tests: TRITON_INTERPRET is set in the root conftest (tests/conftest.py), before triton is imported."""

import importlib.util
import sys
from pathlib import Path

KERNELS_DIR = Path(__file__).resolve().parents[2] / "kernels"

# A checkout that is not pip-installed has no `maro_kernels` on the path (the name is a package-dir mapping in
# pyproject): load the package from the folder under its import name.
if importlib.util.find_spec("maro_kernels") is None:
    _spec = importlib.util.spec_from_file_location(
        "maro_kernels", KERNELS_DIR / "__init__.py", submodule_search_locations=[str(KERNELS_DIR)]
    )
    sys.modules["maro_kernels"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["maro_kernels"])
