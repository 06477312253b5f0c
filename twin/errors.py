"""One error hierarchy for the whole product.

Every message says what went wrong, where (file, feature, table), what was
expected and what was found, and how to fix it, in the manner of shapely's
``errors`` module and geopandas' CRS messages.

Messages the browser shows are templates marked with :func:`N_` and filled from keyword
parameters (``InputError(N_("no case {case_id!r} in the store"), case_id=...)``): the command
line prints them in English, and the UI translates the template and fills it in the user's
language (``scenes.i18n.error_text``).
"""

from __future__ import annotations

from collections.abc import Iterable


class TwinError(Exception):
    """Base class of every error the product raises on purpose.

    The command line turns a ``TwinError`` into exit code 2 and prints its
    message; anything else is a bug.
    """

    exit_code = 2

    def __init__(self, message: str = "", /, **params: object) -> None:
        filled = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in params.items()}
        super().__init__(message.format(**filled) if params else message)
        self.template = message
        self.params = params


def N_(message: str) -> str:
    """Mark a message template for the UI's catalogues (``pybabel extract`` finds it); it returns it unchanged."""
    return message


class InputError(TwinError):
    """Input data (a file, a feature, a request) cannot be used as given."""


class CRSError(InputError):
    """A coordinate reference system is missing, unknown or unsuitable."""


class StoreError(TwinError):
    """The DuckDB store is missing, of another schema version, or unusable."""


class StoreUnavailable(StoreError):
    """The store's PostgreSQL server cannot be reached for now (stopped, restarting, unreachable): the work is not
    acknowledged (only a COMMIT cut off may have been kept), and may be sent again in a few seconds (``twin serve``
    answers 503 with ``Retry-After``)."""


class OptionError(TwinError, ValueError):
    """A keyword option has a value outside its documented choices."""


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    """Raise :class:`OptionError` unless ``value`` is one of ``choices``.

    Parameters
    ----------
    name : str
        Name of the option, as the caller spells it.
    value : object
        The value given.
    choices : iterable
        The valid values, listed in the message.
    """
    valid = list(choices)
    if value not in valid:
        listed = ", ".join(repr(c) for c in valid)
        raise OptionError(f"{name}={value!r} is not a valid choice; expected one of {listed}.")


class GridEditError(InputError):
    """A grid edit cannot be made as asked (a split line that does not cut, a merge of grids that do not touch)."""


class GridRuleError(GridEditError):
    """A grid edit or import would break a rule of the grids (inside the parent, no overlap or gap,
    no building cut by a micro-grid boundary); nothing is saved.

    Attributes
    ----------
    violations : list of twin.grids.gridrules.Violation
        Every broken rule, with the grid, the offending geometry and its area in m².
    """

    def __init__(self, message: str, violations: list | None = None, /, **params: object) -> None:
        super().__init__(message, **params)
        self.violations = list(violations or [])


class AccessError(TwinError):
    """Who may see or do what: a refused sign-in, a missing role or grid, an unmasking without a reason."""
