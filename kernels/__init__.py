"""maro_kernels: the fused policy-gradient loss of maro_lightning (DESIGN §4.1).

Depends on torch (and triton when present) only; never imports maro_lightning.
"""
