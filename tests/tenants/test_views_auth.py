"""Sign-in through allauth, in our layout: password login, TOTP activation, login with TOTP."""

import time

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY, format_hotp_value, hotp_value
from django.test import Client

from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db

PERIOD = 30


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # Each login hashes the password; the default hasher costs ~1 s per hash here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _current_code(secret: str) -> str:
    # A code computed near the end of its 30 s window may be stale when it arrives.
    if time.time() % PERIOD > PERIOD - 3:
        time.sleep(4)
    return format_hotp_value(hotp_value(secret, int(time.time()) // PERIOD))


def _in_layout(html: str) -> bool:
    return all(s in html for s in ("/static/css/app.css", 'class="brand"', "card narrow auth"))


def test_login_page_uses_the_layout_and_password_login_works(alice) -> None:
    client = Client()
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and _in_layout(page.content.decode())
    # Accounts come from invitations: no dead "sign up" link.
    assert "/accounts/signup/" not in page.content.decode()
    response = client.post(
        "/accounts/login/", {"login": "alice@acme.test", "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 302
    assert client.get("/", follow=True).request["PATH_INFO"] == "/o/acme/"


def test_wrong_password_is_a_form_error(alice) -> None:
    response = Client().post("/accounts/login/", {"login": "alice@acme.test", "password": "nope"})
    assert response.status_code == 200
    assert "not correct" in response.content.decode()


def test_activate_totp_then_login_needs_the_code(alice) -> None:
    client = Client()
    client.post("/accounts/login/", {"login": "alice@acme.test", "password": DEFAULT_PASSWORD})
    # Changing MFA asks for the password again first.
    redirect = client.get("/accounts/2fa/totp/activate/")
    assert redirect.status_code == 302 and "/reauthenticate/" in redirect["Location"]
    reauth = client.get(redirect["Location"])
    assert _in_layout(reauth.content.decode())
    back = client.post(redirect["Location"], {"password": DEFAULT_PASSWORD})
    assert back.status_code == 302 and back["Location"] == "/accounts/2fa/totp/activate/"
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200 and _in_layout(page.content.decode())
    secret = client.session[SECRET_SESSION_KEY]
    assert secret in page.content.decode()  # shown for manual entry in the app
    wrong = client.post("/accounts/2fa/totp/activate/", {"code": "000000"})
    assert wrong.status_code == 200 and not Authenticator.objects.filter(user=alice).exists()
    response = client.post("/accounts/2fa/totp/activate/", {"code": _current_code(secret)})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=alice, type=Authenticator.Type.TOTP).exists()
    assert _in_layout(client.get("/accounts/2fa/").content.decode())

    client.post("/accounts/logout/")
    assert client.get("/o/acme/").status_code == 302  # signed out

    # Password alone is not enough now: allauth asks for the code.
    client = Client()
    step1 = client.post(
        "/accounts/login/", {"login": "alice@acme.test", "password": DEFAULT_PASSWORD}
    )
    assert step1.status_code == 302 and "/2fa/authenticate/" in step1["Location"]
    challenge = client.get(step1["Location"])
    assert _in_layout(challenge.content.decode())
    assert client.get("/o/acme/").status_code == 302  # not signed in yet
    bad = client.post(step1["Location"], {"code": "123456"})
    assert bad.status_code == 200 and "Incorrect code" in bad.content.decode()
    step2 = client.post(step1["Location"], {"code": _current_code(secret)})
    assert step2.status_code == 302
    assert client.get("/o/acme/").status_code == 200
