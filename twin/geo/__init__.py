"""Geometry and coordinates: the district CRS and its origin (``crs``), placing local BIM and mesh
models on the map (``georef``), cleaning footprints (``footprints``) and LOD1 meshes (``mesh``).
Pure functions on arrays and GeoDataFrames; imports only ``twin.errors`` and geometry libraries.
"""
