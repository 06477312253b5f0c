"""The district twin's domain and store.

This package imports no UI or rendering library (no panel, bokeh, vtk or
pyvista); those live in :mod:`scenes`.
"""

from twin.errors import CRSError, InputError, OptionError, StoreError, TwinError

__all__ = ["CRSError", "InputError", "OptionError", "StoreError", "TwinError"]
__version__ = "0.1.0"
