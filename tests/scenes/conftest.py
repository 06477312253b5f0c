"""The screen tests read English labels: in this process the UI speaks English unless a test says otherwise
(served apps follow their users' language, English for bench.browser's users)."""

import pytest

from scenes.i18n import DEFAULT_LANG, use


@pytest.fixture(autouse=True)
def english_ui():
    use("en")
    yield
    use(DEFAULT_LANG)
