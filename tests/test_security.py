"""What the red team found (QUALITY cases 24-26, 33): no known credentials, login and API token
lock-outs, a Content-Security-Policy on every page with no inline script left, throttled
expensive endpoints, token expiry and revocation on a password change."""

import os
import re
import stat
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts import checks
from accounts.models import ApiToken
from accounts.services import api_token_create
from facelabel.settings import secret_key_from_file
from projects.models import Batch, Export
from tests.conftest import client_for

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"

# ---- no known credentials (case 24) --------------------------------------------------------


def test_the_demo_admin_gets_a_generated_password_shown_once(db, monkeypatch):
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    first, second = StringIO(), StringIO()

    call_command("ensure_demo_admin", stdout=first)
    call_command("ensure_demo_admin", stdout=second)

    password = re.search(r"as admin / (\S+)", first.getvalue())[1]
    assert len(password) >= 16
    request = RequestFactory().post("/login/")
    assert authenticate(request, username="admin", password=password).is_superuser
    assert authenticate(request, username="admin", password="facelabel-demo") is None
    assert password not in second.getvalue()  # shown once
    assert "changepassword admin" in second.getvalue()
    assert get_user_model().objects.count() == 1


def test_two_installs_get_different_admin_passwords(db, monkeypatch):
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    passwords = []
    for _ in range(2):
        get_user_model().objects.all().delete()
        out = StringIO()
        call_command("ensure_demo_admin", stdout=out)
        passwords.append(re.search(r"as admin / (\S+)", out.getvalue())[1])
    assert passwords[0] != passwords[1]


def test_the_demo_admin_takes_the_password_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "chosen-by-the-operator-7")
    out = StringIO()

    call_command("ensure_demo_admin", stdout=out)

    assert "chosen-by-the-operator-7" not in out.getvalue()
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password("chosen-by-the-operator-7")


def test_a_missing_secret_key_is_generated_once_and_readable_only_by_its_owner(tmp_path):
    path = tmp_path / "var" / "secret_key"

    key = secret_key_from_file(path)

    assert len(key) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key_from_file(path) == key
    assert secret_key_from_file(tmp_path / "other" / "secret_key") != key
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no temporary left


@pytest.mark.parametrize(
    ("key", "generated", "error"),
    [
        ("a-random-looking-key-" * 4, True, "accounts.E001"),  # from var/, not the environment
        ("dev-only-insecure-key-set-SECRET_KEY-in-production-3f9a1c7e5b", False, "accounts.E002"),
        ("django-insecure-" + "x1y2z3" * 10, False, "accounts.E002"),
        ("short-but-varied-key", False, "accounts.E003"),
        ("ab" * 40, False, "accounts.E003"),
    ],
)
def test_the_deploy_check_refuses_a_missing_published_or_weak_key(settings, key, generated, error):
    settings.SECRET_KEY = key
    settings.SECRET_KEY_IS_GENERATED = generated

    assert [e.id for e in checks.secret_key_check()] == [error]
    assert all(e.is_serious() for e in checks.secret_key_check())


def test_the_deploy_check_takes_a_strong_key_from_the_environment(settings):
    settings.SECRET_KEY = "Jx3-" + "q8Vw2mZr" * 8
    settings.SECRET_KEY_IS_GENERATED = False
    assert checks.secret_key_check() == []


def test_check_deploy_fails_without_a_secret_key(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    env |= {"DEBUG": "false", "SECURE_HTTPS": "true", "FACELABEL_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "accounts.E001" in result.stderr


# ---- login throttling (case 25) ------------------------------------------------------------


def _login(client: Client, url: str, username: str, password: str, address: str = "10.1.1.1"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_after_too_many_wrong_passwords_the_right_one_is_refused(client, users, settings, url):
    users["alice"].is_staff = True
    users["alice"].save(update_fields=["is_staff"])

    wrong = [
        _login(client, url, "alice", f"guess-{i}").status_code for i in range(settings.AXES_FAILURE_LIMIT)
    ]
    right = _login(client, url, "alice", "alice-password")

    assert wrong[:-1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)  # the form again, with an error
    assert right.status_code == 429
    assert "Too many attempts" in right.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_account_is_locked_from_other_addresses_too(client, users, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "/login/", "alice", f"guess-{i}", address=f"10.2.0.{i}")

    assert _login(Client(), "/login/", "alice", "alice-password", address="10.9.9.9").status_code == 429


def test_one_address_is_locked_for_every_account(client, users, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "/login/", f"nobody-{i}", "guess")

    assert _login(Client(), "/login/", "bob", "bob-password").status_code == 429
    other_address = _login(Client(), "/login/", "bob", "bob-password", address="10.3.3.3")
    assert other_address.status_code == 302


def test_a_few_wrong_passwords_then_the_right_one_log_in(client, users):
    for i in range(3):
        _login(client, "/login/", "alice", f"guess-{i}")

    response = _login(client, "/login/", "alice", "alice-password")

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(users["alice"].pk)


# ---- API tokens ----------------------------------------------------------------------------


def _api(client: Client, key: str, address: str = "10.4.4.4"):
    return client.get(reverse("api-tokens"), HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR=address)


def test_after_many_wrong_tokens_even_a_right_one_is_refused_from_that_address(client, users):
    _, key = api_token_create(user=users["alice"], name="ci")

    wrong = {_api(client, f"fl_guess{i}").status_code for i in range(20)}
    right = _api(client, key)

    assert wrong == {401}
    assert right.status_code == 429
    assert _api(client, key, address="10.5.5.5").status_code == 200  # another address is unaffected


def test_tokens_expire_when_a_maximum_age_is_set(client, users, settings):
    old, old_key = api_token_create(user=users["alice"], name="old")
    _, new_key = api_token_create(user=users["alice"], name="new")
    ApiToken.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(days=31))

    assert _api(client, old_key).status_code == 200  # by default tokens do not expire
    settings.API_TOKEN_MAX_AGE_DAYS = 30
    expired = _api(client, old_key)

    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    assert _api(client, new_key).status_code == 200


def test_changing_the_password_revokes_every_api_token(client, users):
    alice = users["alice"]
    _, key = api_token_create(user=alice, name="laptop")
    _, bob_key = api_token_create(user=users["bob"], name="bob's")
    alice.last_login = timezone.now()
    alice.save(update_fields=["last_login"])
    alice.first_name = "Alice"
    alice.save()
    assert _api(client, key).status_code == 200  # other saves leave the tokens alone

    alice.set_password("a-new-password-1")
    alice.save()

    assert _api(client, key).status_code == 401
    assert ApiToken.objects.get(user=alice).revoked_at is not None
    assert _api(client, bob_key).status_code == 200


def test_a_password_changed_on_the_password_page_revokes_the_tokens(client, users):
    _, key = api_token_create(user=users["alice"], name="laptop")
    alice = get_user_model().objects.get(username="alice")
    alice.set_password("alice-password")  # the same hash again would not count as a change
    alice.save()

    alice.set_password("changed-in-the-admin-9")
    alice.save(update_fields=["password"])

    assert _api(client, key).status_code == 401


# ---- throttled expensive endpoints (case 33) -----------------------------------------------


@pytest.fixture
def two_predictions_a_minute(monkeypatch):
    from facelabel.throttling import RouteUserThrottle

    monkeypatch.setattr(RouteUserThrottle, "THROTTLE_RATES", {"predict": "2/min", "schema": "2/min"})


def test_predict_is_throttled_per_user_and_per_address(client, users, two_predictions_a_minute):
    url = reverse("api-predict")
    client_for(client, users["alice"])
    first = [client.post(url, REMOTE_ADDR="10.6.6.6").status_code for _ in range(2)]
    third = client.post(url, REMOTE_ADDR="10.6.6.6")
    from_elsewhere = client.post(url, REMOTE_ADDR="10.7.7.7")
    client_for(client, users["bob"])
    bob_same_address = client.post(url, REMOTE_ADDR="10.6.6.6")

    assert 429 not in first
    assert third.status_code == 429
    assert int(third["Retry-After"]) > 0
    assert from_elsewhere.status_code == 429  # alice's own budget is spent
    assert bob_same_address.status_code == 429  # so is the address's
    assert client.get(reverse("api-models")).status_code == 200  # cheap endpoints are not counted


def test_forwarded_for_headers_do_not_buy_a_fresh_budget(client, users, two_predictions_a_minute):
    client_for(client, users["alice"])
    codes = [
        client.post(reverse("api-predict"), HTTP_X_FORWARDED_FOR=f"1.2.3.{i}").status_code for i in range(3)
    ]
    assert codes[-1] == 429


# ---- Content-Security-Policy (case 26) -----------------------------------------------------


@pytest.fixture
def pages(project, users) -> list[str]:
    alice = users["alice"]
    batch = Batch.objects.create(project=project, uploaded_by=alice, status=Batch.Status.DONE, image_count=0)
    export = Export.objects.create(project=project, requested_by=alice, status=Export.Status.RUNNING)
    p = project.id
    return [
        "/",
        f"/projects/{p}/",
        f"/projects/{p}/members/",
        f"/projects/{p}/upload/",
        f"/projects/{p}/batches/{batch.id}/",
        f"/projects/{p}/review/",
        f"/projects/{p}/exports/{export.id}/",
        f"/projects/{p}/health/",
        "/account/",
        "/admin/",
        "/admin/training/trial/add/",
        "/api/docs/",
        "/play/",
        *[
            f"/play/{emotion}/"
            for emotion in ("happy", "sad", "angry", "fear", "disgust", "surprise", "neutral")
        ],
        "/no-such-page/",
    ]


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def test_every_page_carries_a_policy_without_inline_scripts(client, users, pages):
    users["alice"].is_staff = users["alice"].is_superuser = True
    users["alice"].save()
    anonymous = [Client().get(url) for url in ("/login/", "/admin/login/", "/play/", "/play/happy/")]
    client_for(client, users["alice"])

    for response in anonymous + [client.get(url) for url in pages]:
        path = response.wsgi_request.path
        assert response.status_code == (404 if path == "/no-such-page/" else 200), path
        policy = _policy(response)
        assert policy["script-src"] == ["'self'"], path
        assert policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]


def test_the_camera_pages_may_show_blob_and_data_images_and_the_camera_stream(client):
    policy = _policy(client.get("/play/happy/"))
    assert {"data:", "blob:"} <= set(policy["img-src"])
    assert "mediastream:" in policy["media-src"]


INLINE_HANDLER = re.compile(r"""<[^>]*\son[a-z]+\s*=""", re.IGNORECASE)
SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.IGNORECASE | re.DOTALL)


def test_no_template_has_an_inline_script_or_event_handler():
    found = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(ROOT)}: {m[:60]}" for m in INLINE_HANDLER.findall(text)]
        for attributes, body in SCRIPT.findall(text):
            if body.strip() and "application/json" not in attributes:
                found.append(f"{path.relative_to(ROOT)}: <script> with a body")
            if "javascript:" in attributes:
                found.append(f"{path.relative_to(ROOT)}: javascript: URL")
        if "javascript:" in text:
            found.append(f"{path.relative_to(ROOT)}: javascript: URL")
    assert found == []
