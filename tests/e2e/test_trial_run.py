"""The README's run command, for real: `scripts/trial` in a subprocess on free ports.

It must print a working summary (URL, admin login, agent key), serve the probes and the demo
organization to the printed admin, let the printed agent key list tools over MCP, and leave no
process behind (uvicorn, the Celery worker with beat, the demo upstreams) when it is stopped.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from demo.servers.common import authorization_fingerprint
from tests.peers.process import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# A first run may install the project into .venv (pip); later runs start in ~15 s.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
SUMMARY = re.compile(
    r"Open\s+(?P<url>http://\S+)\s*\n"
    r"\s*Sign in\s+(?P<email>\S+)\s+/\s+(?P<password>\S+)\s*\n"
    r"(?:.*\n)*?"
    r"\s*Agent key\s+(?P<key>mgw_\S+)"
)
# Settings that would point the trial at the test run's own services instead of its defaults.
NOT_INHERITED = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "SITE_URL",
    "DEMO_UPSTREAM_URL",
    "DEBUG",
    "TESTING",
    "DJANGO_SETTINGS_MODULE",
)


@dataclass
class Trial:
    process: subprocess.Popen[bytes]
    output_path: Path
    var_dir: Path
    run_id: str
    env: dict[str, str]
    demo_port: int
    base_url: str = ""

    def manage(self, *args: str) -> str:
        """A manage.py command against this trial's database (its env, its VAR_DIR)."""
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def logs(self) -> str:
        parts = [f"--- scripts/trial output ---\n{self.output()}"]
        for log in sorted((self.var_dir / "log").glob("*.log")):
            parts.append(f"--- {log.name} (tail) ---\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def leftover_processes(self) -> dict[int, str]:
        """Processes still carrying this run's marker in their environment (any descendant)."""
        needle = f"TRIAL_RUN_ID={self.run_id}".encode()
        found: dict[int, str] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if needle in (proc / "environ").read_bytes().split(b"\0"):
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                    found[int(proc.name)] = cmdline.decode(errors="replace").strip()
        return found


@pytest.fixture
def trial(tmp_path: Path) -> Iterator[Trial]:
    run_id = uuid.uuid4().hex
    var_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    demo_port = free_port()
    env.update(
        VAR_DIR=str(var_dir),
        PORT=str(free_port()),
        DEMO_PORT=str(demo_port),
        TRIAL_RUN_ID=run_id,  # inherited by every descendant: how we find leftovers
    )
    output_path = tmp_path / "trial-output.txt"
    with output_path.open("wb") as out:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "trial")],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal would give it
        )
    trial = Trial(
        process=process,
        output_path=output_path,
        var_dir=var_dir,
        run_id=run_id,
        env={**env, "DEMO_UPSTREAM_URL": f"http://127.0.0.1:{demo_port}"},
        demo_port=demo_port,
    )
    try:
        yield trial
    finally:
        # Whatever the test did, leave nothing running.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for pid in trial.leftover_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_for_summary(trial: Trial) -> re.Match[str]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if match := SUMMARY.search(trial.output()):
            return match
        if trial.process.poll() is not None:
            pytest.fail(f"scripts/trial exited with {trial.process.returncode}:\n{trial.logs()}")
        time.sleep(0.25)
    pytest.fail(f"scripts/trial printed no summary within {START_TIMEOUT:.0f}s:\n{trial.logs()}")


def sign_in(http: httpx2.Client, email: str, password: str) -> httpx2.Response:
    """POST allauth's login form with its CSRF token, as the browser would."""
    form = http.get("/accounts/login/")
    assert form.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, "the login page has no CSRF token"
    return http.post(
        "/accounts/login/",
        data={"csrfmiddlewaretoken": token.group(1), "login": email, "password": password},
    )


# Run in the trial's own environment: the fingerprint of Maria's stored access token.
MARIA_TOKEN_FINGERPRINT = """
from credentials import services, vault
from credentials.models import Connection
from demo.servers.common import authorization_fingerprint
c = Connection.objects.get(user__email="maria@demo.test", provider__slug="demo-oauth")
token = vault.decrypt(org=c.organization_id, purpose=services.ACCESS_PURPOSE, row_uid=c.uid,
                      blob=c.access_token_blob)
print(authorization_fingerprint("Bearer " + token))
"""

DEMO_AGENT_TOOLS = [
    "chat.post_to_triage",
    "tickets.get_ticket",
    "tickets.list_tickets",
    "tickets.update_ticket",
]


async def daily_triage_story(mcp_url: str, key: str, mode: str) -> dict[str, object]:
    """What a newcomer does with the printed key: list tools, read tickets, try a delete."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=10.0)
    async with Client(streamable_http_client(mcp_url, http_client=http), mode=mode) as client:
        tools = sorted(tool.name for tool in (await client.list_tools()).tools)
        listed = await client.call_tool("tickets.list_tickets", {})
        posted = await client.call_tool("chat.post_to_triage", {"text": f"Triage ({mode})"})
        try:
            await client.call_tool("tickets.delete_ticket", {"ticket_id": "TCK-101"})
        except MCPError as exc:
            denied_code, denied_message = exc.code, exc.message
        else:
            denied_code, denied_message = None, "the delete was not refused"
    return {
        "tools": tools,
        "posted": posted,
        "list_error": listed.is_error,
        "list_text": " ".join(getattr(block, "text", "") for block in listed.content),
        "denied_code": denied_code,
        "denied_message": denied_message,
    }


def test_trial_command_serves_the_demo_and_stops_cleanly(trial: Trial) -> None:
    started = time.monotonic()
    summary = wait_for_summary(trial)
    dashboard_url = summary["url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/o/demo/", dashboard_url), dashboard_url
    base_url = dashboard_url.removesuffix("/o/demo/")
    startup_seconds = time.monotonic() - started

    with httpx2.Client(base_url=base_url, timeout=10.0, follow_redirects=True) as http:
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["checks"].values()) == {"ok"}, ready.text

        # The printed admin signs in and lands on the demo organization's dashboard.
        wrong = sign_in(http, summary["email"], summary["password"] + "x")
        assert wrong.url.path == "/accounts/login/"
        assert "not correct" in wrong.text
        page = sign_in(http, summary["email"], summary["password"])
        assert page.status_code == 200, page.text[:2000]
        assert page.url.path == "/o/demo/", (page.url, page.text[:2000])
        assert summary["email"] in page.text
        assert re.search(r"<h1>[^<]*Demo[^<]*</h1>", page.text, re.IGNORECASE), page.text[:3000]

        mcp_url = f"{base_url}/mcp/demo/"
        refused = http.post(
            mcp_url,
            headers={
                "Authorization": "Bearer mgw_not_a_real_key",
                "Accept": "application/json, text/event-stream",
            },
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        )
        assert refused.status_code == 401, refused.text
        for mode in ("legacy", "2026-07-28"):
            story = anyio.run(daily_triage_story, mcp_url, summary["key"], mode)
            # Exactly what the daily-triage policy allows: no delete tool, the safe channel variant.
            assert story["tools"] == DEMO_AGENT_TOOLS, story["tools"]
            assert not story["list_error"] and "TCK-101" in story["list_text"], story
            assert story["denied_code"] == -32010 and "daily-triage" in story["denied_message"], (
                story
            )
            # The chat needs Maria's own grant at the demo OAuth server: the post goes out as
            # her (bootstrap connected her through the consent flow), not as the agent key.
            posted = story["posted"]
            assert not posted.is_error, posted.content
            assert posted.structured_content["author"] == "maria@demo.test", posted
            assert posted.structured_content["channel"] == "daily-triage"

        # The chat server saw Maria's access token (its fingerprint), never the agent key.
        assert "Chat grant  maria@demo.test at Demo OAuth: connected" in trial.output()
        demo_url = f"http://127.0.0.1:{trial.demo_port}"
        seen = httpx2.get(f"{demo_url}/healthz", timeout=10).json()["chat_last_post_credential"]
        maria = trial.manage("shell", "-c", MARIA_TOKEN_FINGERPRINT).strip().splitlines()[-1]
        assert maria.startswith("sha256:") and seen == maria
        assert seen != authorization_fingerprint(f"Bearer {summary['key']}")
        # Presented directly, the agent key is no chat credential at all.
        direct = httpx2.post(
            f"{demo_url}/chat/mcp",
            headers={"Authorization": f"Bearer {summary['key']}"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            timeout=10,
        )
        assert direct.status_code == 401

        # Every one of those calls is in the audit trail the admin sees.
        audit = http.get("/o/demo/audit/", params={"action": "tool.call"})
        assert audit.status_code == 200
        assert audit.text.count("tickets.delete_ticket") >= 2, "denied calls are audited"
        assert "tickets.list_tickets" in audit.text

    # Stop it as a terminal would (SIGTERM to the process group): everything must go.
    stopping = time.monotonic()
    os.killpg(trial.process.pid, signal.SIGTERM)
    trial.process.wait(timeout=STOP_TIMEOUT)
    deadline = time.monotonic() + STOP_TIMEOUT
    while (left := trial.leftover_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"still running after the trial stopped: {left}"
    stop_seconds = time.monotonic() - stopping
    print(f"trial: ready in {startup_seconds:.1f}s, stopped in {stop_seconds:.1f}s")
