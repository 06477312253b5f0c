"""The UI's languages without a browser: the catalogues, the language a page speaks, names and formats."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from scenes import i18n
from scenes.i18n import (LOCALE_DIR, STATUS_NAMES, CatalogueError, case_kind_name, choose_lang, error_text,
                         format_number, format_time, js_messages, level_name, status_name, translations, use)
from twin.access.access import SIGNIN_REFUSED, add_user, set_lang, user_lang
from twin.cases.cases import CASE_STATUSES, check_transition
from twin.errors import InputError, OptionError
from twin.store.store import open_for_command

ROOT = Path(__file__).parents[2]
PYBABEL = Path(sys.executable).with_name("pybabel")
PLACEHOLDER = re.compile(r"\{([a-z_]*)(?:![rsa])?(?::[^{}]*)?\}")  # a field's name; conversion and format may differ


def catalogue(lang: str):
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "twin.po").open("rb") as f:
        return read_po(f)


def test_every_message_of_the_source_is_in_the_catalogues_and_translated_into_chinese(tmp_path):
    """A fresh extraction (babel.cfg: Python, templates, view3d.js) finds no msgid the committed catalogues
    lack, and every zh msgid has a translation with the same placeholders."""
    pot = tmp_path / "twin.pot"
    subprocess.run([str(PYBABEL), "-q", "extract", "-F", "babel.cfg", "-o", str(pot), "."], cwd=ROOT, check=True)
    with pot.open("rb") as f:
        wanted = {m.id for m in read_po(f) if m.id}
    assert "Oblique view" in wanted, "(the view's strings are extracted from view3d.js)"
    assert "Sign in with your district account." in wanted, "(and the login page's from its template)"
    for lang in ("zh", "en"):
        assert wanted <= {m.id for m in catalogue(lang) if m.id}, f"{lang}: run `pybabel update` (scenes/i18n.py)"
    for message in catalogue("zh"):
        if message.id:
            assert message.string and not message.fuzzy, f"zh: no translation of {message.id!r}"
            assert sorted(PLACEHOLDER.findall(message.string)) == sorted(PLACEHOLDER.findall(message.id)), message.id


def test_domain_words_are_chinese_by_default_and_english_on_request():
    use("zh")
    assert [status_name(s) for s in CASE_STATUSES] == ["已上报", "已派遣", "处置中", "已办结", "已评价", "已结案", "已驳回",
                                                       "已重启", "已接单", "现场处置中", "已上报上级"]
    assert [level_name(v) for v in ("street", "community", "grid", "micro")] == ["街道", "社区", "网格", "微网格"]
    assert case_kind_name("fire_safety.corridor_clutter") == "楼道堆物"  # taxonomy.json's name
    assert case_kind_name("fire_safety") == "消防安全"
    assert translations("zh").gettext(SIGNIN_REFUSED) != SIGNIN_REFUSED, "the store's refusal is in the catalogue"
    use("en")
    assert status_name("in_progress") == "In progress" and case_kind_name("fire_safety") == "Fire safety"
    assert set(STATUS_NAMES) == set(CASE_STATUSES)


def test_dates_and_numbers_follow_the_language():
    use("zh")
    assert format_time("2026-12-05 14:03:59") == "2026年12月5日 14:03"
    assert format_time("2026-12-05 14:03:59", short=True) == "12-05 14:03"
    assert format_number(1234567) == "1,234,567" and format_number(12.345, digits=1) == "12.3"
    assert format_time(None) == ""
    use("en")
    assert format_time("2026-12-05 14:03:59") == "5 Dec 2026 14:03"


def test_the_view_gets_its_strings_from_the_catalogue():
    assert {"3D", "Top", "Reset", "Oblique view"} <= set(js_messages())
    use("zh")
    assert i18n.js_texts()["Top view"] == "俯视图"


def test_a_page_speaks_its_query_else_the_users_choice_else_chinese():
    assert choose_lang(None, None) == "zh"
    assert choose_lang(None, "en") == "en"
    assert choose_lang("zh", "en") == "zh", "?lang= is for one page, over the preference"
    assert choose_lang("en", None) == "en"
    assert choose_lang("fr", None) == "zh", "an unknown ?lang= is ignored"


def test_a_users_language_is_kept_in_the_store(demo_copy):
    with open_for_command(demo_copy, create=False) as store:
        add_user(store.con, "zhao.min", "a long passphrase", role="leader")
        add_user(store.con, "amy.lee", "a long passphrase", role="leader", lang="en")
        assert user_lang(store.con, "zhao.min") is None and user_lang(store.con, "amy.lee") == "en"
        set_lang(store.con, "zhao.min", "en")
        assert user_lang(store.con, "zhao.min") == "en"
        with pytest.raises(OptionError):
            set_lang(store.con, "zhao.min", "fr")
        assert user_lang(store.con, "zhao.min") == "en"


def test_the_command_line_adds_a_user_with_a_language(demo_copy):
    answer = subprocess.run([sys.executable, "cli.py", "users", "add", "li.na", "--role", "leader", "--lang", "en",
                             "--password-stdin", "--db", str(demo_copy), "--json"], cwd=ROOT,
                            input="a long passphrase\n", capture_output=True, text=True)
    assert answer.returncode == 0, answer.stderr
    with open_for_command(demo_copy, create=False) as store:
        assert user_lang(store.con, "li.na") == "en"


def test_a_missing_compiled_catalogue_is_a_clear_error(tmp_path, monkeypatch):
    """Without the .mo the install compiles, the UI refuses to start rather than speak English silently."""
    shutil.copytree(LOCALE_DIR, tmp_path / "locale")
    (tmp_path / "locale" / "zh" / "LC_MESSAGES" / "twin.mo").unlink()
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path / "locale")
    translations.cache_clear()
    try:
        with pytest.raises(CatalogueError, match="pybabel compile"):
            use("zh")
    finally:
        monkeypatch.undo()
        translations.cache_clear()


def test_the_errors_the_browser_shows_speak_the_users_language_and_name_codes():
    """twin's errors are templates (twin.errors.N_): the UI translates them and names the statuses they carry."""
    for to_status, wanted in (("dispatched", "案件不能从“已结案”转为“已派遣”；“已结案”已是最终状态。"),
                              ("closed", None)):
        with pytest.raises(InputError) as caught:
            check_transition("closed" if wanted else "reported", to_status)
        use("zh")
        text = error_text(caught.value)
        if wanted:
            assert text == wanted
        else:  # a list of allowed statuses, named and joined the Chinese way
            assert text.startswith("案件不能从“已上报”转为“已结案”") and "已派遣、" in text and "_" not in text
        use("en")
        assert "'Closed'" in error_text(caught.value) and "'closed'" in str(caught.value), "the CLI keeps the codes"
    use("zh")
    assert error_text(InputError("a message without a template {x}")) == "a message without a template {x}"
