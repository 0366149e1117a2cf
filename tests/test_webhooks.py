"""Webhooks: signed deliveries to a real HTTP server on loopback, retries, the SSRF rules, the API
and its permission matrix (other teams 404, roles below owner 403, nothing changes)."""

import hashlib
import hmac
import ipaddress
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from tests.conftest import client_for
from webhooks import services, targets
from webhooks.models import Event, Webhook, WebhookDelivery
from webhooks.tasks import deliver_webhook


class Receiver(ThreadingHTTPServer):
    """Records every request; answers the queued status codes first, then 200."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.received: list[dict] = []
        self.answers: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _ReceiverHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append({"headers": dict(self.headers), "body": body, "path": self.path})
        code = self.server.answers.pop(0) if self.server.answers else 200
        self.send_response(code)
        if 300 <= code < 400:
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(f"answer {code} ".encode() * 500)  # longer than what is kept

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT = 2
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    return settings


@pytest.fixture
def webhook(project, users, receiver, loopback_allowed):
    return services.webhook_create(project=project, user=users["alice"], url=receiver.url)


def fire(django_capture_on_commit_callbacks, project, event="batch.finished", payload=None) -> list[int]:
    with django_capture_on_commit_callbacks(execute=True):
        return services.webhook_event(project.id, event, payload or {"batch": 7, "images": 3})


class TestDelivery:
    def test_the_signature_verifies_over_the_exact_body_received(
        self, webhook, receiver, project, django_capture_on_commit_callbacks
    ):
        [delivery_id] = fire(django_capture_on_commit_callbacks, project)

        [request] = receiver.received
        body = request["body"]
        expected = "sha256=" + hmac.new(webhook.secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request["headers"]["X-Facelabel-Signature"], expected)
        assert request["headers"]["Content-Type"] == "application/json"
        assert request["headers"]["X-Facelabel-Event"] == "batch.finished"
        assert request["headers"]["X-Facelabel-Delivery"] == str(delivery_id)
        document = json.loads(body)
        assert document["event"] == "batch.finished"
        assert document["project"] == project.id
        assert document["delivery"] == delivery_id
        assert document["data"] == {"batch": 7, "images": 3}
        assert "sent_at" in document
        assert body == json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        delivery = WebhookDelivery.objects.get(id=delivery_id)
        assert delivery.status == WebhookDelivery.Status.SUCCEEDED
        assert delivery.attempts == 1
        assert delivery.response_status == 200
        assert len(delivery.response_body) == 2000
        assert delivery.delivered_at is not None

    def test_a_500_is_retried_and_the_next_200_succeeds(
        self, webhook, receiver, project, django_capture_on_commit_callbacks
    ):
        receiver.answers = [500]

        [delivery_id] = fire(django_capture_on_commit_callbacks, project)

        assert len(receiver.received) == 2
        first, second = receiver.received
        assert first["headers"]["X-Facelabel-Delivery"] == second["headers"]["X-Facelabel-Delivery"]
        delivery = WebhookDelivery.objects.get(id=delivery_id)
        assert delivery.status == WebhookDelivery.Status.SUCCEEDED
        assert delivery.attempts == 2
        assert delivery.response_status == 200
        assert delivery.error == ""

    def test_429_and_5xx_stop_after_the_maximum_attempts(
        self, webhook, receiver, project, django_capture_on_commit_callbacks
    ):
        receiver.answers = [503, 429, 500, 500]

        [delivery_id] = fire(django_capture_on_commit_callbacks, project)

        assert len(receiver.received) == 3  # WEBHOOK_MAX_ATTEMPTS
        delivery = WebhookDelivery.objects.get(id=delivery_id)
        assert delivery.status == WebhookDelivery.Status.FAILED
        assert delivery.attempts == 3
        assert delivery.response_status == 500
        assert delivery.error == "HTTP 500"
        assert delivery.delivered_at is None

    def test_a_404_fails_without_a_retry(
        self, webhook, receiver, project, django_capture_on_commit_callbacks
    ):
        receiver.answers = [404]

        [delivery_id] = fire(django_capture_on_commit_callbacks, project)

        assert len(receiver.received) == 1
        delivery = WebhookDelivery.objects.get(id=delivery_id)
        assert delivery.status == WebhookDelivery.Status.FAILED
        assert delivery.attempts == 1
        assert delivery.response_status == 404

    def test_a_redirect_is_not_followed(self, webhook, receiver, project, django_capture_on_commit_callbacks):
        receiver.answers = [302]

        [delivery_id] = fire(django_capture_on_commit_callbacks, project)

        assert len(receiver.received) == 1
        delivery = WebhookDelivery.objects.get(id=delivery_id)
        assert delivery.status == WebhookDelivery.Status.FAILED
        assert delivery.response_status == 302
        assert "not followed" in delivery.error

    def test_a_refused_connection_is_retried_then_fails(
        self, project, users, loopback_allowed, django_capture_on_commit_callbacks
    ):
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        services.webhook_create(project=project, user=users["alice"], url=f"http://127.0.0.1:{port}/")

        [delivery_id] = fire(django_capture_on_commit_callbacks, project)

        delivery = WebhookDelivery.objects.get(id=delivery_id)
        assert delivery.status == WebhookDelivery.Status.FAILED
        assert delivery.attempts == 3
        assert delivery.response_status is None
        assert "ConnectionError" in delivery.error

    def test_repeated_tasks_on_a_finished_delivery_send_nothing(
        self, webhook, receiver, project, django_capture_on_commit_callbacks
    ):
        receiver.answers = [404]
        [failed_id] = fire(django_capture_on_commit_callbacks, project)
        [succeeded_id] = fire(django_capture_on_commit_callbacks, project)
        assert len(receiver.received) == 2

        for _ in range(2):
            deliver_webhook.delay(failed_id)
            deliver_webhook.delay(succeeded_id)

        assert len(receiver.received) == 2
        assert WebhookDelivery.objects.get(id=failed_id).attempts == 1
        assert WebhookDelivery.objects.get(id=succeeded_id).attempts == 1

    def test_only_active_webhooks_that_want_the_event_get_a_delivery(
        self, webhook, receiver, project, users, django_capture_on_commit_callbacks
    ):
        exports_only = services.webhook_create(
            project=project, user=users["alice"], url=receiver.url + "?exports", events=["export.ready"]
        )
        services.webhook_create(project=project, user=users["alice"], url=receiver.url + "?off")
        Webhook.objects.filter(url__endswith="?off").update(is_active=False)

        batch_ids = fire(django_capture_on_commit_callbacks, project, "batch.finished")
        export_ids = fire(django_capture_on_commit_callbacks, project, "export.ready", {"export": 1})

        assert [WebhookDelivery.objects.get(id=i).webhook for i in batch_ids] == [webhook]
        assert {WebhookDelivery.objects.get(id=i).webhook for i in export_ids} == {webhook, exports_only}
        assert len(receiver.received) == 3

    def test_nothing_is_sent_before_the_transaction_commits(
        self, webhook, receiver, project, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            [delivery_id] = services.webhook_event(project.id, "batch.finished", {})

        assert receiver.received == []
        assert len(callbacks) == 1
        assert WebhookDelivery.objects.get(id=delivery_id).status == WebhookDelivery.Status.PENDING

    def test_a_disabled_webhook_does_not_send_its_queued_delivery(
        self, webhook, receiver, project, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=False):
            [delivery_id] = services.webhook_event(project.id, "batch.finished", {})
        services.webhook_update(webhook=webhook, is_active=False)

        deliver_webhook.delay(delivery_id)

        assert receiver.received == []
        assert WebhookDelivery.objects.get(id=delivery_id).status == WebhookDelivery.Status.FAILED

    def test_the_backoff_doubles_and_is_capped(self):
        assert [services.retry_delay(n) for n in (1, 2, 3)] == [2, 4, 8]
        assert services.retry_delay(30) == 600


REFUSED_URLS = [
    "http://127.0.0.1/hook",
    "http://localhost:8000/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://192.168.1.1/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "https://[fe80::1]/hook",
]


@pytest.fixture
def private_refused(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    return settings


@pytest.fixture
def resolves_to_loopback(monkeypatch):
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if host == "hooks.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


class TestTargets:
    @pytest.mark.parametrize("url", REFUSED_URLS)
    def test_private_targets_are_refused_at_create(self, url, project, users, private_refused):
        with pytest.raises(ValidationError, match="private, loopback or reserved"):
            services.webhook_create(project=project, user=users["alice"], url=url)
        assert not Webhook.objects.exists()

    def test_a_hostname_resolving_to_loopback_is_refused(
        self, project, users, private_refused, resolves_to_loopback
    ):
        with pytest.raises(ValidationError, match=r"hooks\.example\.com resolves to 127\.0\.0\.1"):
            services.webhook_create(project=project, user=users["alice"], url="https://hooks.example.com/x")
        assert not Webhook.objects.exists()

    @pytest.mark.parametrize(
        "url", ["ftp://example.com/hook", "file:///etc/passwd", "example.com/hook", "http://"]
    )
    def test_only_http_and_https_urls_are_taken(self, url, project, users, private_refused):
        with pytest.raises(ValidationError):
            services.webhook_create(project=project, user=users["alice"], url=url)
        assert not Webhook.objects.exists()

    @pytest.mark.parametrize("host", ["no-such-host.invalid", "a" * 64 + ".example.com"])
    def test_a_host_that_does_not_resolve_is_refused(self, host, project, users, private_refused):
        with pytest.raises(ValidationError, match="could not be resolved"):
            services.webhook_create(project=project, user=users["alice"], url=f"https://{host}/hook")
        assert not Webhook.objects.exists()

    def test_a_public_address_is_taken(self, project, users, private_refused):
        webhook = services.webhook_create(
            project=project, user=users["alice"], url="https://93.184.215.14/hook"
        )
        assert webhook.url == "https://93.184.215.14/hook"

    @pytest.mark.parametrize(
        ("address", "public"),
        [
            ("8.8.8.8", True),
            ("2606:4700:4700::1111", True),
            ("100.64.0.1", False),
            ("172.16.0.1", False),
            ("fc00::1", False),
            ("::", False),
            ("2002:7f00:1::1", False),  # 6to4 wrapping 127.0.0.1
            ("240.0.0.1", False),
            ("::ffff:7f00:1", False),  # IPv4-mapped 127.0.0.1, hex spelling
            ("64:ff9b::a00:1", False),  # NAT64 wrapping 10.0.0.1
            ("64:ff9b::808:808", True),  # NAT64 wrapping 8.8.8.8
        ],
    )
    def test_address_rules(self, address, public):
        assert targets._is_public(ipaddress.ip_address(address)) is public

    def test_targets_are_checked_again_at_send_time(
        self, webhook, receiver, project, settings, django_capture_on_commit_callbacks
    ):
        settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False  # as if the DNS now pointed at loopback

        [delivery_id] = fire(django_capture_on_commit_callbacks, project)

        assert receiver.received == []
        delivery = WebhookDelivery.objects.get(id=delivery_id)
        assert delivery.status == WebhookDelivery.Status.FAILED
        assert delivery.attempts == 1
        assert "Refused" in delivery.error

    def test_a_hostname_that_moved_to_loopback_is_refused_at_send_time(
        self, project, users, private_refused, resolves_to_loopback, django_capture_on_commit_callbacks
    ):
        webhook = Webhook.objects.create(
            project=project, url="http://hooks.example.com/x", created_by=users["alice"]
        )

        [delivery_id] = fire(django_capture_on_commit_callbacks, project)

        delivery = WebhookDelivery.objects.get(id=delivery_id)
        assert delivery.webhook == webhook
        assert delivery.status == WebhookDelivery.Status.FAILED
        assert "resolves to 127.0.0.1" in delivery.error


# Spellings that fool one URL parser or reach loopback through inet_aton (QUALITY case 23).
PARSER_TRICKS = [
    "http://127.0.0.1:{port}\\@8.8.8.8/x",  # urlsplit: host 8.8.8.8; urllib3: 127.0.0.1
    "http://8.8.8.8\\@127.0.0.1:{port}/x",
    "http://user@127.0.0.1:{port}/x",
    "http://8.8.8.8@127.0.0.1:{port}/x",
    "http://127.0.0.1%2f@8.8.8.8/x",
    "http://127.0.0.1%5c@8.8.8.8/x",
    "http://127.0.0.1%40@8.8.8.8/x",
    "http://127.0.0.1%2F.example.com/x",
    "http://127.0.0.1 @8.8.8.8/x",
    "http://127.0.0.1:{port} /x",
    "http://127.0.0.1\t:{port}/x",
    "http://bad\x00host:{port}/x",
    "http://2130706433:{port}/x",  # decimal 127.0.0.1
    "http://0x7f000001:{port}/x",
    "http://0x7f.0.0.1:{port}/x",
    "http://0177.0.0.1:{port}/x",  # octal
    "http://127.1:{port}/x",
]
LOOPBACK_NAMES = ["http://localhost:{port}/x", "http://[::ffff:7f00:1]:{port}/x", "http://[::1]:{port}/x"]


class TestParserTricks:
    @pytest.mark.parametrize("url", PARSER_TRICKS)
    def test_a_tricky_url_is_refused_at_create_even_where_private_targets_are_allowed(
        self, url, project, users, loopback_allowed
    ):
        with pytest.raises(ValidationError):
            services.webhook_create(project=project, user=users["alice"], url=url.format(port=8080))
        assert not Webhook.objects.exists()

    @pytest.mark.parametrize("url", PARSER_TRICKS + LOOPBACK_NAMES)
    def test_a_tricky_or_loopback_url_is_refused_by_patch(self, url, client, project, users, private_refused):
        webhook = services.webhook_create(project=project, user=users["alice"], url="https://93.184.215.14/h")
        client_for(client, users["alice"])

        response = client.patch(api_url(project, webhook), {"url": url.format(port=8080)}, "application/json")

        assert response.status_code == 400
        assert response.json()["url"]
        webhook.refresh_from_db()
        assert webhook.url == "https://93.184.215.14/h"

    @pytest.mark.parametrize("url", PARSER_TRICKS + LOOPBACK_NAMES)
    def test_a_stored_tricky_url_reaches_nothing_at_send_time(
        self, url, receiver, project, users, private_refused, django_capture_on_commit_callbacks
    ):
        # As if saved before these rules, or written straight into the database.
        Webhook.objects.create(project=project, url=url.format(port=receiver.server_address[1]))

        [delivery_id] = fire(django_capture_on_commit_callbacks, project)

        assert receiver.received == []
        delivery = WebhookDelivery.objects.get(id=delivery_id)
        assert delivery.status == WebhookDelivery.Status.FAILED
        assert delivery.attempts == 1
        assert delivery.response_body == ""
        assert "Refused" in delivery.error

    def test_localhost_from_etc_hosts_is_refused(self, project, users, private_refused):
        with pytest.raises(ValidationError, match=r"localhost resolves to (127\.0\.0\.1|::1)"):
            services.webhook_create(project=project, user=users["alice"], url="http://localhost/x")


@pytest.fixture
def rebinding_dns(monkeypatch):
    """hooks.example.com answers 127.0.0.1 once, then a name that does not exist: what a DNS
    rebinding attacker does between the check and the connection."""
    real = socket.getaddrinfo
    asked = []

    def fake(host, *args, **kwargs):
        if host == "hooks.example.com":
            asked.append(host)
            if len(asked) > 1:
                raise socket.gaierror(socket.EAI_NONAME, "rebound")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


def test_a_delivery_connects_to_the_checked_address_and_speaks_to_the_name(
    receiver, project, users, loopback_allowed, rebinding_dns, django_capture_on_commit_callbacks
):
    port = receiver.server_address[1]
    Webhook.objects.create(project=project, url=f"http://hooks.example.com:{port}/hook?x=1")

    [delivery_id] = fire(django_capture_on_commit_callbacks, project)

    delivery = WebhookDelivery.objects.get(id=delivery_id)
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED, delivery.error
    assert rebinding_dns == ["hooks.example.com"]  # resolved once, by the check
    [request] = receiver.received
    assert request["headers"]["Host"] == f"hooks.example.com:{port}"
    assert request["path"] == "/hook?x=1"


def test_https_sends_and_verifies_the_name_not_the_pinned_address():
    target = targets.Target("https", "hooks.example.com", 443, "/h", "93.184.215.14")
    adapter = targets._PinnedAdapter(target.host)

    pool = adapter.poolmanager.connection_from_url(target.pinned_url)

    assert target.pinned_url == "https://93.184.215.14:443/h"
    assert target.host_header == "hooks.example.com"
    assert pool.host == "93.184.215.14"
    assert pool.conn_kw["server_hostname"] == pool.assert_hostname == "hooks.example.com"


def api_url(project, webhook=None, deliveries=False) -> str:
    if webhook is None:
        return reverse("api-webhooks", args=[project.id])
    name = "api-webhook-deliveries" if deliveries else "api-webhook"
    return reverse(name, args=[project.id, webhook.id])


class TestApi:
    def test_the_owner_creates_lists_updates_and_deletes(self, client, project, users, loopback_allowed):
        client_for(client, users["alice"])

        created = client.post(
            api_url(project),
            {"url": "http://127.0.0.1:9/hook", "events": ["export.ready"]},
            "application/json",
        )
        assert created.status_code == 201, created.json()
        webhook = Webhook.objects.get(id=created.json()["id"])
        assert webhook.events == ["export.ready"]
        assert created.json()["secret"] == webhook.secret
        assert len(webhook.secret) >= 43

        listed = client.get(api_url(project))
        assert listed.status_code == 200
        assert [item["id"] for item in listed.json()] == [webhook.id]

        old_secret = webhook.secret
        patched = client.patch(
            api_url(project, webhook), {"is_active": False, "rotate_secret": True}, "application/json"
        )
        assert patched.status_code == 200
        webhook.refresh_from_db()
        assert webhook.is_active is False
        assert webhook.secret != old_secret
        assert patched.json()["secret"] == webhook.secret

        deleted = client.delete(api_url(project, webhook))
        assert deleted.status_code == 204
        assert not Webhook.objects.exists()

    def test_bad_urls_and_events_are_400(self, client, project, users, private_refused):
        client_for(client, users["alice"])

        refused = client.post(api_url(project), {"url": "http://169.254.169.254/"}, "application/json")
        unknown = client.post(
            api_url(project), {"url": "https://93.184.215.14/", "events": ["nope"]}, "application/json"
        )

        assert refused.status_code == 400
        assert "private" in refused.json()["url"][0]
        assert unknown.status_code == 400
        assert "events" in unknown.json()
        assert not Webhook.objects.exists()

    @pytest.mark.parametrize("name", ["bob", "charlie"])
    def test_reviewers_and_viewers_cannot_write(self, client, project, users, webhook, name):
        client_for(client, users[name])

        created = client.post(api_url(project), {"url": "http://127.0.0.1:9/"}, "application/json")
        patched = client.patch(api_url(project, webhook), {"is_active": False}, "application/json")
        deleted = client.delete(api_url(project, webhook))

        assert [created.status_code, patched.status_code, deleted.status_code] == [403, 403, 403]
        webhook.refresh_from_db()
        assert webhook.is_active is True
        assert Webhook.objects.count() == 1

    def test_members_read_without_the_secret(
        self, client, project, users, webhook, django_capture_on_commit_callbacks
    ):
        fire(django_capture_on_commit_callbacks, project)
        client_for(client, users["charlie"])

        listed = client.get(api_url(project))
        detail = client.get(api_url(project, webhook))
        deliveries = client.get(api_url(project, webhook, deliveries=True))

        assert listed.status_code == detail.status_code == deliveries.status_code == 200
        assert listed.json()[0]["secret"] is None
        assert detail.json()["secret"] is None
        assert deliveries.json()["count"] == 1
        assert deliveries.json()["results"][0]["status"] == "succeeded"

    def test_other_teams_get_404(self, client, project, outsider, webhook):
        client_for(client, outsider)

        responses = [
            client.get(api_url(project)),
            client.post(api_url(project), {"url": "http://127.0.0.1:9/"}, "application/json"),
            client.get(api_url(project, webhook)),
            client.patch(api_url(project, webhook), {"is_active": False}, "application/json"),
            client.delete(api_url(project, webhook)),
            client.get(api_url(project, webhook, deliveries=True)),
        ]

        assert [response.status_code for response in responses] == [404] * 6
        webhook.refresh_from_db()
        assert webhook.is_active is True

    def test_a_webhook_of_another_project_is_404(self, client, project, outsider, webhook):
        other = outsider.projects.get()
        client_for(client, outsider)

        assert client.get(reverse("api-webhook", args=[other.id, webhook.id])).status_code == 404

    def test_anonymous_requests_are_401(self, client, project, webhook):
        assert client.get(api_url(project)).status_code == 401
        assert client.delete(api_url(project, webhook)).status_code == 401
        assert Webhook.objects.count() == 1


class TestAdmin:
    def test_the_webhook_page_shows_its_deliveries(
        self, client, project, webhook, users, django_capture_on_commit_callbacks
    ):
        fire(django_capture_on_commit_callbacks, project)
        admin = users["alice"]
        admin.is_staff = admin.is_superuser = True
        admin.save(update_fields=["is_staff", "is_superuser"])
        client_for(client, admin)

        change = client.get(reverse("admin:webhooks_webhook_change", args=[webhook.id]))
        deliveries = client.get(reverse("admin:webhooks_webhookdelivery_changelist") + "?status=succeeded")

        assert change.status_code == 200
        assert b"batch.finished" in change.content
        assert deliveries.status_code == 200
        assert b"batch.finished" in deliveries.content


def test_events_are_the_two_documented_ones():
    assert Event.values == ["batch.finished", "export.ready"]


class TestProductEvents:
    """The events the product fires: a batch finishing labeling and an export becoming ready."""

    def test_a_finished_batch_and_a_ready_export_call_the_webhook(
        self, webhook, receiver, project, users, django_capture_on_commit_callbacks, tmp_path
    ):
        import json

        from django.core.files.uploadedfile import SimpleUploadedFile

        from projects import services as project_services
        from tests.conftest import register_tiny_model
        from tests.factories import face_jpeg

        register_tiny_model(tmp_path)
        files = [SimpleUploadedFile(f"f{i}.jpg", face_jpeg(i)) for i in range(3)]
        with django_capture_on_commit_callbacks(execute=True):
            batch = project_services.batch_create(project=project, user=users["bob"], files=files)
        with django_capture_on_commit_callbacks(execute=True):
            export = project_services.export_start(project=project, user=users["bob"])

        bodies = [json.loads(request["body"]) for request in receiver.received]
        assert [body["event"] for body in bodies] == ["batch.finished", "export.ready"]
        assert bodies[0]["data"]["batch"] == batch.id and bodies[0]["data"]["labeled"] == 3
        assert bodies[1]["data"]["export"] == export.id
        assert bodies[1]["data"]["download"].endswith(f"/projects/{project.id}/exports/{export.id}/download/")


def test_the_sweep_resends_a_delivery_whose_message_was_lost(webhook, receiver):
    from datetime import timedelta

    from django.utils import timezone

    from webhooks.models import WebhookDelivery
    from webhooks.tasks import recover_stalled_deliveries

    delivery = WebhookDelivery.objects.create(webhook=webhook, event="batch.finished", payload={"batch": 1})
    recover_stalled_deliveries()
    assert receiver.received == []  # not quiet long enough: its own task may still come
    WebhookDelivery.objects.filter(id=delivery.id).update(created_at=timezone.now() - timedelta(hours=1))
    recover_stalled_deliveries()
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED and len(receiver.received) == 1
