"""The planner's screen: the grids of one parent on a 2D map (scale bar, north arrow, each grid labelled with its
name), edited in the mode the labelled buttons turn on (move vertex, split, merge, draw, delete; Bokeh's own tools
underneath).

Every edit on the plan becomes one call of the grid engine (:mod:`twin.grids.gridedit`);
after each edit the rules are checked by the check the save runs
(:func:`twin.grids.gridversions.edit_check`, with the redraw of the children of grids
above micro level), the offending places drawn on a red layer and listed in plain
words, and a side table shows what the edit moves, before → after per affected grid.
Saving needs a reason and goes through one writer job; renames are saved with it.

One module per job, composed by :class:`GridEditor` (the Panel viewer, param state):

- :mod:`~scenes.planner.plot`: the plan (Bokeh sources, figure, tools, map furniture; relative coordinates);
- :mod:`~scenes.planner.session`: the edit session of one parent (engine edits, rules, what moves);
- :mod:`~scenes.planner.rules`: the rules display and the before → after table;
- :mod:`~scenes.planner.saving`: saving (the ``save`` callables, the writes) and a grid's history;
- :mod:`~scenes.planner.proposal`: the micro-grid proposal, judged against the grids now;
- :mod:`~scenes.planner.editor`: :class:`GridEditor`.
"""

from scenes.planner.editor import GridEditor
from scenes.planner.saving import save_in_transaction, save_through_writer

__all__ = ["GridEditor", "save_in_transaction", "save_through_writer"]
