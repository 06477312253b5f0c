"""Fuzzing tooling shared by ``bench/security.py`` and ``tests/fuzz``: the harness and one target per entry point.

``harness`` feeds inputs and sorts the outcomes; ``footprints``, ``ifc``, ``open311``, ``detections`` and
``search`` each define a ``TARGET`` (inputs, the session that feeds one, the tables a refusal must leave as
they were). Imports the product and hypothesis, never anything from ``tests/``.
"""
