""" "Fetch tools" as a background job: queued, progress, outcome, and clear errors (real peers:
the fault server, a dead port, a TCP server that never answers)."""

import socket
import threading
from collections.abc import Iterator

import pytest

from audit.models import AuditEvent
from catalog import services
from catalog.models import FetchJob, ServerVersion, Tool
from catalog.tasks import fetch_tools_task
from catalog.upstream import list_tools_sync, server_connection_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung upstream)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _poll(client, job: FetchJob) -> str:
    response = client.get(
        f"/o/acme/servers/{job.server_id}/fetch-jobs/{job.pk}/", HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize(
    "case, title",
    [
        ("down", "The server is down or unreachable"),
        ("slow", "The server is too slow"),
        ("not_mcp", "This is not an MCP server"),
        ("too_large", "The server&#x27;s answer is too large"),
    ],
)
def test_a_failed_fetch_ends_with_a_clear_error_and_writes_nothing(
    case, title, settings, org_a, bob, client_as, http_server, fault_server, silent_port,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    url = {
        "down": "http://127.0.0.1:9/mcp",
        "slow": f"http://127.0.0.1:{silent_port}/mcp",
        "not_mcp": fault_server.url.replace("/mcp", "/healthz"),
        "too_large": fault_server.url,
    }[case]
    settings.CATALOG_CONNECT_TIMEOUT = 1.0
    settings.CATALOG_FETCH_TIMEOUT = 1.5
    if case == "too_large":
        settings.CATALOG_MAX_RESPONSE_BYTES = 400
    server = http_server(url)
    with django_capture_on_commit_callbacks(execute=True):
        job = services.fetch_job_start(org=org_a, actor=bob, server=server)

    body = _poll(client_as(bob), job)
    job.refresh_from_db()
    assert job.state == "failed" and job.finished_at is not None
    assert 'id="fetch-error"' in body and title in body and "hx-trigger" not in body
    assert 'id="fetch-tools"' in body  # the user can try again
    assert not ServerVersion.objects.filter(server=server).exists()


def test_the_job_is_idempotent_and_not_started_twice(
    org_a, bob, http_server, fault_server, django_capture_on_commit_callbacks
) -> None:
    server = http_server(fault_server.url)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        job = services.fetch_job_start(org=org_a, actor=bob, server=server)
        again = services.fetch_job_start(org=org_a, actor=bob, server=server)
    assert again.pk == job.pk and len(queued) == 1  # a second click joins the queued job

    assert fetch_tools_task(job.pk) == "done"
    assert fetch_tools_task(job.pk) == "done"  # redelivered: already done, nothing re-run
    job.refresh_from_db()
    assert job.tools_so_far == 5 and job.version.number == 1
    assert AuditEvent.objects.filter(action="server.tools_fetched").count() == 1
    assert Tool.objects.filter(server=server).count() == 5


def test_progress_is_reported_on_the_calling_thread(org_a, http_server, fault_server) -> None:
    # The job's progress is written with the Django ORM, which refuses to run inside the
    # listing's event loop: the callback must come back to this thread.
    server = http_server(fault_server.url)
    seen: list[tuple[str, int, int]] = []
    listing = list_tools_sync(
        server_connection_config(server),
        progress=lambda stage, n: seen.append((stage, n, threading.get_ident())),
    )
    assert [(stage, n) for stage, n, _ in seen] == [
        ("connecting", 0),
        ("listing", 0),
        ("listing", 5),
    ]
    assert {ident for *_, ident in seen} == {threading.get_ident()}
    assert len(listing.tools) == 5


def test_running_job_states_render_with_polling(client_as, bob, org_a, http_server) -> None:
    server = http_server("https://tools.example.com/mcp")
    client = client_as(bob)
    job = FetchJob.objects.create(organization=org_a, server=server, requested_by=bob)
    for state, text in (
        ("queued", "waiting for a worker"),
        ("connecting", "Connecting to the server"),
        ("listing", "Listing tools: 3 so far"),
    ):
        FetchJob.objects.filter(pk=job.pk).update(state=state, tools_so_far=3)
        body = _poll(client, job)
        assert text in body and 'hx-trigger="every 1s"' in body
        assert 'id="fetch-tools"' not in body  # no second fetch while one runs


def test_api_background_fetch_answers_202_with_a_status_url(
    api_as, bob, http_server, fault_server, django_capture_on_commit_callbacks
) -> None:
    server = http_server(fault_server.url)
    api = api_as(bob)
    with django_capture_on_commit_callbacks(execute=True):
        queued = api.post(f"/api/v1/orgs/acme/servers/{server.pk}/fetch-tools/?background=true")
    assert queued.status_code == 202, queued.content
    assert queued.json()["job"]["state"] == "queued"
    status = api.get(queued.json()["status_url"])
    assert status.status_code == 200
    assert status.json()["state"] == "done" and status.json()["tools_so_far"] == 5
    assert status.json()["version"] == 1
