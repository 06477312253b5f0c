"""The case loop and live intake: case records and their transitions (``cases``, ``taxonomy.json``),
the store's single writer thread (``live``), AI detections (``detections``), Open311 GeoReport v2
(``open311``), feed replay (``replay``) and the cameras that see a place (``cameras``). Imports
``twin.geo``, ``twin.access`` and ``twin.errors``.
"""
