"""Training, export and benchmark scripts; not installed with the package.

Run them from the repository root as modules, ``python -m tools.NAME`` (``--help`` on each), so that
``tools`` and ``edgecodec`` import from the source tree without an install: ``tools.gpu_round device``
relies on this on a GPU machine that has only ``python3``. They import each other as ``tools.NAME``.
"""
