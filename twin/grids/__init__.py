"""The governance grids (street, community, grid, micro-grid): reading the current grids and placing
points in them (``grids``), the grid editor's engine (``gridedit``), its rules (``gridrules``),
versioned saves, history and restore (``gridversions``), what an edit moves (``reassign``) and
micro-grid proposals (``partition``). Imports ``twin.store``, ``twin.cases`` (open statuses),
``twin.access`` (the audit) and ``twin.errors``.
"""
