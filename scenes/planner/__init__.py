"""The planner's screen: the grids of one parent on a 2D plan, edited with Bokeh's own tools.

Every edit on the plan becomes one call of the grid engine (:mod:`twin.grids.gridedit`);
after each edit the rules are checked, the offending places drawn on a red layer
and listed, and a side table shows what the edit moves, before → after per
affected grid. Saving needs a reason and goes through one writer job.

One module per job, composed by :class:`GridEditor` (the Panel viewer, param state):

- :mod:`~scenes.planner.plot`: the plan (Bokeh sources, figure, tools; relative coordinates);
- :mod:`~scenes.planner.session`: the edit session of one parent (engine edits, rules, what moves);
- :mod:`~scenes.planner.rules`: the rules display and the before → after table;
- :mod:`~scenes.planner.saving`: saving (the ``save`` callables, the writes) and a grid's history;
- :mod:`~scenes.planner.proposal`: the micro-grid proposal;
- :mod:`~scenes.planner.editor`: :class:`GridEditor`.
"""

from scenes.planner.editor import GridEditor
from scenes.planner.saving import save_in_transaction, save_through_writer

__all__ = ["GridEditor", "save_in_transaction", "save_through_writer"]
