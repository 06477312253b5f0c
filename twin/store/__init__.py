"""The store: the DuckDB schema and its upgrades (``schema``), opening, transactions and bulk writes
(``store``), and the read-side queries the screens and notebooks use (``queries``). Imports
``twin.errors``, ``twin.geo`` and the case statuses of ``twin.cases``; nothing here knows about screens.
"""
