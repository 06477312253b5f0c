"""The district twin's domain and store.

Sub-packages by topic: ``geo`` (CRS, georeferencing, footprints, meshes), ``store`` (schema,
transactions, read-side queries), ``grids`` (grids and their editor's engine), ``cases`` (the case
loop, live intake and the writer), ``access`` (users, the access gate, audit, keys). Beside them:
``buildings`` (building rows), ``inspector`` (the raw reads behind a card), ``errors`` and ``timing``.

This package imports no UI or rendering library (no panel, bokeh, vtk or
pyvista); those live in :mod:`scenes`.
"""

from twin.errors import CRSError, InputError, OptionError, StoreError, TwinError

__all__ = ["CRSError", "InputError", "OptionError", "StoreError", "TwinError"]
__version__ = "0.1.0"
