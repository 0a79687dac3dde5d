"""Model folders: ``bundle.ModelBundle`` loads and checks one, ``contract`` says what it holds (and
``docs/models.md`` why), ``entropy_model`` codes a frame's latents with it.

``ModelBundle`` and ``default_model_dir`` are imported on first use, so that importing ``contract`` (plain
constants) does not load the C extensions that the hyper-synthesis and the context need.
"""
from __future__ import annotations

__all__ = ["ModelBundle", "default_model_dir"]


def __getattr__(name):
    if name in __all__:
        from edgecodec.models import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
