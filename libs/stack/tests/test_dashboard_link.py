"""``cineamate run`` prints the dashboard's address with the read token it needs."""

from __future__ import annotations

from pydantic import SecretStr

from cineamate.common.settings import CommonSettings
from cineamate.stack.run import dashboard_link

ENTRY = "http://127.0.0.1:8000"


def test_link_carries_the_read_token_url_encoded() -> None:
    settings = CommonSettings.model_construct(read_token=SecretStr("a+b/c="), auth_disabled=False)

    assert dashboard_link(ENTRY, settings) == f"{ENTRY}/?token=a%2Bb%2Fc%3D"


def test_link_has_no_token_when_checks_are_off() -> None:
    settings = CommonSettings.model_construct(read_token=SecretStr("secret"), auth_disabled=True)

    assert dashboard_link(ENTRY, settings) == f"{ENTRY}/"
