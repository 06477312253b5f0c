"""3D Tiles 1.1 export: the district as a tileset any viewer (CesiumJS, 3d-tiles-renderer) streams and picks.

``frame`` places the district's CRS on the globe (ENU at the origin, ECEF through pyproj), ``quadtree`` cuts
the district into tiles (tyler's rule), ``glb`` writes one tile's binary glTF with ``EXT_mesh_features`` and
``EXT_structural_metadata`` (pure: arrays in, bytes out), and ``export`` reads the store and writes the folder
(the only module here that touches the disk or the store). Imports numpy, pyarrow, pyproj and ``twin``; no
rendering library.
"""
