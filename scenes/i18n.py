"""The UI's languages: Simplified Chinese first, English as a switch, from gettext catalogues.

The catalogues (``scenes/locale/<lang>/LC_MESSAGES/twin.po``) are managed with Babel
(``babel.cfg`` at the project root)::

    pybabel extract -F babel.cfg -o scenes/locale/twin.pot .
    pybabel update -i scenes/locale/twin.pot -d scenes/locale -D twin
    pybabel compile -d scenes/locale -D twin     # the install (make setup) runs this

Each browser session has its language (:func:`use`), chosen by :func:`choose_lang` from the
page's ``?lang=``, the user's preference kept in the store, and the default. :func:`_` looks up
the language of the session it runs in (Panel's current document), so components built and
refreshed inside a session speak its language. Domain words (statuses, case categories and
kinds, roles, grid levels, resident tags) are named here from their codes; the codes stay in the
store and the APIs.
"""

from __future__ import annotations

import contextlib
import gettext
import json
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime
from functools import cache, partial
from pathlib import Path

import panel as pn
from babel.messages.extract import extract
from babel.numbers import format_decimal

from twin.access.access import LANGS
from twin.errors import N_, TwinError

DEFAULT_LANG = LANGS[0]
LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "twin"
BABEL_LOCALES = {"zh": "zh_Hans_CN", "en": "en"}
JS_SOURCE = Path(__file__).with_name("view3d.js")
WORKER_JS = Path(__file__).with_name("worker.js")  # the grid worker's phone page (scenes/field.py)
TAXONOMY = Path(__file__).parents[1] / "twin" / "cases" / "taxonomy.json"

_session_langs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_fallback = [DEFAULT_LANG]  # outside a session (scripts, tests without a server)
# A plain HTTP request's language (the phone page's API, scenes/field.py): each request runs in its own context.
_request_lang: ContextVar[str | None] = ContextVar("request_lang", default=None)


class CatalogueError(TwinError):
    """A compiled catalogue (``.mo``) is missing: the UI would silently fall back to English."""


@cache
def translations(lang: str) -> gettext.GNUTranslations:
    """The compiled catalogue of ``lang``; a :class:`CatalogueError` naming the fix when it was never compiled."""
    if lang not in LANGS:
        raise CatalogueError(f"language {lang!r}: the UI speaks {', '.join(LANGS)}.")
    mo = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"
    if not mo.exists():
        raise CatalogueError(f"{mo} is missing: the catalogues are compiled by the install. Run `make setup`, or "
                             f"`pybabel compile -d {LOCALE_DIR} -D {DOMAIN}` from the project's root.")
    with mo.open("rb") as f:
        return gettext.GNUTranslations(f)


def use(lang: str) -> None:
    """Speak ``lang`` in the current Panel session (or, outside one, everywhere not in a session)."""
    translations(lang)  # refuse an unknown or uncompiled language here, not at the first label
    doc = pn.state.curdoc
    if doc is None:
        _fallback[0] = lang
    else:
        _session_langs[doc] = lang


@contextlib.contextmanager
def speaking(lang: str) -> Iterator[None]:
    """Speak ``lang`` inside the block, in this context only (a Tornado request's handler, not a session)."""
    translations(lang)
    token = _request_lang.set(lang)
    try:
        yield
    finally:
        _request_lang.reset(token)


def current_lang() -> str:
    """The language of the current request (:func:`speaking`) or session (:func:`use`)."""
    asked = _request_lang.get()
    if asked is not None:
        return asked
    doc = pn.state.curdoc
    return _session_langs.get(doc, _fallback[0]) if doc is not None else _fallback[0]


def _(message: str) -> str:
    """``message`` in the current session's language."""
    return translations(current_lang()).gettext(message)


def choose_lang(asked: str | None, preference: str | None) -> str:
    """The page's language: ``?lang=`` when it names one, else the user's preference, else the default."""
    for lang in (asked, preference):
        if lang in LANGS:
            return lang
    return DEFAULT_LANG


# -- domain words -------------------------------------------------------------
STATUS_NAMES = {"reported": N_("Reported"), "dispatched": N_("Dispatched"), "in_progress": N_("In progress"),
                "resolved": N_("Resolved"), "evaluated": N_("Evaluated"), "closed": N_("Closed"),
                "rejected": N_("Rejected"), "reopened": N_("Reopened"), "accepted": N_("Accepted"),
                "on_site": N_("On site"), "handed_up": N_("Handed up")}
EVALUATION_NAMES = {"satisfied": N_("satisfied"), "not_satisfied": N_("not satisfied"),
                    "default": N_("evaluated by default")}
ROLE_NAMES = {"leader": N_("Leader"), "operator": N_("Operator"), "planner": N_("Planner"), "admin": N_("Admin"),
              "worker": N_("Grid worker"), "department": N_("Department"), "resident": N_("Resident"),
              "merchant": N_("Merchant")}
LEVEL_NAMES = {"street": N_("Street"), "community": N_("Community"), "grid": N_("Grid"), "micro": N_("Micro-grid")}
# Resident tags are kept in Chinese (data/names.py TAGS); English sessions name them here.
TAG_NAMES = {"独居老人": N_("Elderly living alone"), "残疾人": N_("Disabled"), "党员": N_("Party member"),
             "租户": N_("Tenant"), "低保": N_("Minimum-income support"), "退役军人": N_("Veteran"),
             "留守儿童": N_("Child left behind")}
GENDER_NAMES = {"男": N_("male"), "女": N_("female")}
USE_NAMES = {"residential": N_("residential"), "commercial": N_("commercial"), "office": N_("office"),
             "public": N_("public"), "school": N_("school"), "hospital": N_("hospital"), "market": N_("market"),
             "industrial": N_("industrial")}
CAMERA_STATUS_NAMES = {"online": N_("online"), "offline": N_("offline"), "fault": N_("fault")}
HEIGHT_SOURCE_NAMES = {"height": N_("surveyed height"), "levels": N_("floor count"), "default": N_("default height"),
                       "bim": N_("BIM model"), "mesh": N_("mesh model")}
AUDIT_ACTION_NAMES = {"signin": N_("signed in"), "signin.failed": N_("sign-in refused"),
                      "session.open": N_("opened the app"), "session.refused": N_("session refused"),
                      "user.add": N_("added a user"), "user.disable": N_("disabled a user"),
                      "user.passwd": N_("changed a password"), "residents.view": N_("viewed residents"),
                      "residents.export": N_("exported residents"), "resident.unmask": N_("unmasked a resident"),
                      "case.intake": N_("took in cases"), "case.transition": N_("moved a case"),
                      "grid.save": N_("saved grids"), "grid.restore": N_("restored a grid version"),
                      "grid.import": N_("imported grids"), "grids.export": N_("exported grids"),
                      "key.add": N_("added an API key"), "key.revoke": N_("revoked an API key"),
                      "user.grants": N_("bound a user to grids"), "access.refused": N_("access refused"),
                      "audit.export": N_("exported the audit trail"), "case.assign": N_("reassigned a case"),
                      "case.evaluate": N_("evaluated a case"), "duties.import": N_("imported the duties list"),
                      "party.import": N_("imported party records"), "party.export": N_("exported party records"),
                      "case.photo": N_("added a case photo"), "patrol.start": N_("started patrol"),
                      "patrol.stop": N_("ended patrol"), "patrol.position": N_("checked in on patrol"),
                      "patrol.purge": N_("deleted old patrol positions"),
                      # the volunteer scheme (twin.volunteers)
                      "volunteer.account": N_("made a resident's account"), "volunteer.code": N_("issued a new code"),
                      "volunteer.activate": N_("set a password with a code"),
                      "volunteer.publish": N_("published a volunteer task"), "volunteer.grab": N_("grabbed a task"),
                      "volunteer.checkin": N_("checked in on a task"), "volunteer.checkout": N_("checked out of a task"),
                      "volunteer.confirm": N_("confirmed a task done"), "points.credit": N_("credited points"),
                      "points.spend": N_("spent points"), "redemption.use": N_("took a redemption code"),
                      "volunteer.report": N_("reported a problem (小杜拍)"), "volunteer.review": N_("reviewed a report"),
                      "merchant.add": N_("added a merchant"), "reward.add": N_("added a reward")}
# twin.store.schema.PARTY_ORG_KINDS; the 3D view's legend names them by the same msgids (view3d.js).
PARTY_KIND_NAMES = {"committee": N_("Party committee"), "general_branch": N_("General party branch"),
                    "branch": N_("Party branch"), "joint_branch": N_("Joint party branch"), "group": N_("Party group")}
SOURCE_NAMES = {"ai": N_("camera AI"), "open311": N_("Open311 app"), "intake": N_("intake"),
                "hotline": N_("hotline"), "patrol": N_("patrol"), "citizen": N_("citizen")}


def _named(names: dict[str, str], code: object) -> str:
    """A code's name in the session's language; a code without one is shown as itself (never dropped)."""
    return _(names[code]) if code in names else str(code)


# Each takes a code and gives its name in the session's language.
status_name = partial(_named, STATUS_NAMES)
role_name = partial(_named, ROLE_NAMES)
level_name = partial(_named, LEVEL_NAMES)
tag_name = partial(_named, TAG_NAMES)
gender_name = partial(_named, GENDER_NAMES)
use_name = partial(_named, USE_NAMES)
source_name = partial(_named, SOURCE_NAMES)
audit_action_name = partial(_named, AUDIT_ACTION_NAMES)
camera_status_name = partial(_named, CAMERA_STATUS_NAMES)
party_kind_name = partial(_named, PARTY_KIND_NAMES)
evaluation_name = partial(_named, EVALUATION_NAMES)

# Codes in an error's parameters, named by the parameter's name (its last word): the UI shows no codes.
_PARAM_NAMERS = {"status": status_name, "statuses": status_name, "role": role_name, "level": level_name}


def error_text(error: TwinError) -> str:
    """A :class:`TwinError` in the session's language: its template (``twin.errors.N_``) translated and filled,
    statuses, roles and levels among its parameters named, and text parameters that are msgids translated;
    a message without a template as it was raised."""
    template = getattr(error, "template", "")
    if not template:
        return str(error)
    namer = {k: _PARAM_NAMERS.get(k.rsplit("_", 1)[-1]) for k in error.params}
    params = {k: ("、" if current_lang() == "zh" else ", ").join(map(namer[k] or _, v)) if isinstance(v, list)
              else namer[k](v) if namer[k] and v is not None else _(v) if isinstance(v, str) and v else v
              for k, v in error.params.items()}
    try:
        return _(template).format(**params)
    except (KeyError, IndexError, ValueError):  # a translation whose placeholders drifted: the English, filled
        return str(error)
height_source_name = partial(_named, HEIGHT_SOURCE_NAMES)


@cache
def _taxonomy() -> dict[str, tuple[str, str]]:
    """Category and kind codes to their (Chinese, English) names."""
    taxonomy = json.loads(TAXONOMY.read_text(encoding="utf-8"))
    return {t["code"]: (t["name"], t["name_en"]) for t in taxonomy["categories"] + taxonomy["subcategories"]}


def case_kind_name(code: str | None, lang: str | None = None) -> str:
    """A case category's or kind's (subcategory's) name from the taxonomy, in ``lang`` (default: the session's)."""
    names = _taxonomy().get(code)
    if names is None:
        return "" if code is None else str(code)
    return names[0] if (lang or current_lang()) == "zh" else names[1]


# -- formats ------------------------------------------------------------------
def format_number(value: float, *, digits: int = 0) -> str:
    """A number grouped in the session's locale (``12,345``), with at most ``digits`` decimals."""
    pattern = "#,##0" + ("." + "#" * digits if digits else "")
    return format_decimal(value, format=pattern, locale=BABEL_LOCALES[current_lang()])


def format_time(value: object, *, short: bool = False) -> str:
    """A date and time to the minute: ``2026年12月5日 14:03`` (zh) or ``5 Dec 2026 14:03`` (en);
    ``short``: ``12-05 14:03`` where space is short. Empty for a missing value."""
    if value is None or value != value or str(value) in ("", "NaT", "None"):
        return ""
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if short:
        return at.strftime("%m-%d %H:%M")
    if current_lang() == "zh":
        return f"{at.year}年{at.month}月{at.day}日 {at:%H:%M}"
    return f"{at.day} {at:%b %Y %H:%M}"


# -- the 3D view's strings ------------------------------------------------------
@cache
def js_messages(source: Path = JS_SOURCE) -> tuple[str, ...]:
    """The msgids of a JavaScript file (its ``_("...")`` calls; ``view3d.js`` by default), found with Babel's
    javascript extractor."""
    with source.open("rb") as f:
        return tuple(dict.fromkeys(m[1] for m in extract("javascript", f, keywords={"_": None})))


def js_texts(source: Path = JS_SOURCE) -> dict[str, str]:
    """A JavaScript file's strings (the 3D view's by default) in the session's language, by English msgid."""
    return {m: _(m) for m in js_messages(source)}


def translated_legend(legend: dict) -> dict:
    """A legend of :func:`scenes.layers.building_colours` (English msgids, shared by every session) in the
    session's language; numbers pass through as they are."""
    title = legend.get("title")
    if title and legend.get("level"):  # coloured per grid at a level (scenes.layers.grid_measure_colours)
        title = f"{_(title)} · {level_name(legend['level'])}"
    elif title:
        title = _(title)
    return {**legend, "title": title,
            "items": [[colour, _(text)] for colour, text in legend.get("items", [])]}
