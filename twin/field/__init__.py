"""The grid workers' field loop: what the phone page at ``/worker`` reads and does.

A worker's list and case (``worklist``), the steps they take on a case and the phone's actions applied
exactly once by their idempotency keys (``actions``), photos checked by their content and stored without
their metadata (``photos``), and patrol: shifts, check-ins, each micro-grid's coverage of the day and the
positions' retention (``patrol``). Imports ``twin.cases``, ``twin.access``, ``twin.store``, ``twin.grids``
and ``twin.errors``; never a UI library.
"""
