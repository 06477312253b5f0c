"""Translation of user-visible strings (the i18n branch replaces this stand-in with gettext)."""


def _(message: str) -> str:
    return message
