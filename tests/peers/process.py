"""Start a peer as a child process on loopback, wait until it is ready, stop it with no orphans.

Every child runs in its own session (so its own process group): stopping kills the whole
group, which also reaps grandchildren such as the node process an npm shim would spawn.
Output goes to a temporary file rather than a pipe, so a chatty child can never block on a
full pipe, and a start-up failure can show everything the child printed.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_LIVE: weakref.WeakSet[ChildProcess] = weakref.WeakSet()
_PR_SET_PDEATHSIG = 1


class PeerStartError(RuntimeError):
    """A peer did not become ready; the message carries its command line and output."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the child binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, ask the kernel to SIGTERM the child if the test process dies without cleanup."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


class ChildProcess:
    """A running peer. Use `stop()` (or a `with` block); `output()` shows what it printed."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        name: str | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.name = name or Path(self.argv[0]).name
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115  # closed in stop()
            prefix=f"peer-{self.name}-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent(),  # only calls prctl, no Python state
        )
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the child wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(
        self,
        *,
        url: str | None = None,
        line: str | re.Pattern[str] | None = None,
        timeout: float = 20.0,
    ) -> re.Match[str] | None:
        """Wait until `url` answers any HTTP status, and/or `line` (regex) appears in the output.

        Returns the regex match for `line` (so a child can announce e.g. its URL), else None.
        Raises PeerStartError, after stopping the child, if it exits or the timeout passes.
        """
        pattern = re.compile(line) if isinstance(line, str) else line
        deadline = time.monotonic() + timeout
        match: re.Match[str] | None = None
        while True:
            if pattern is not None and match is None:
                match = pattern.search(self.output())
            line_ok = pattern is None or match is not None
            url_ok = url is None or (line_ok and _answers(url))
            if line_ok and url_ok:
                return match
            if not self.running():
                self._fail(f"exited with status {self.popen.returncode} before it was ready")
            if time.monotonic() > deadline:
                waited = " and ".join(
                    w for w in (url and f"{url} to answer", pattern and f"/{pattern.pattern}/") if w
                )
                self._fail(f"was not ready after {timeout:.0f}s (waiting for {waited})")
            time.sleep(0.05)

    def _fail(self, why: str) -> None:
        self.stop()
        raise PeerStartError(
            f"peer {self.name!r} {why}.\ncommand: {' '.join(self.argv)}\n"
            f"--- output ---\n{self.output()[-6000:]}--- end of output ---"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the whole process group, SIGKILL it after `timeout`; idempotent."""
        if self.popen.returncode is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        # The leader may be gone while children it spawned linger in the group.
        _signal_group(self.popen.pid, signal.SIGKILL)
        self._log.close()
        _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash, as far as clients can tell)."""
        _signal_group(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self.stop()

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self.popen.returncode}"
        return f"<ChildProcess {self.name} pid={self.pid} {state}>"


def _signal_group(pid: int, sig: int) -> None:
    # The child called setsid(), so its process group id is its own pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _answers(url: str) -> bool:
    """True if something answers HTTP at `url` (any status: we only ask whether it listens)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0):  # loopback test URL
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP listener on `port` (Linux /proc), e.g. {"127.0.0.1"}.

    Lets a test prove that a peer bound loopback only, not every interface.
    """
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address)
            if width == 8:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def start_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    name: str | None = None,
    ready_url: str | None = None,
    ready_line: str | re.Pattern[str] | None = None,
    timeout: float = 20.0,
) -> ChildProcess:
    """Start `argv` and return once it is ready (see `ChildProcess.wait_ready`)."""
    child = ChildProcess(argv, env=env, cwd=cwd, name=name)
    child.wait_ready(url=ready_url, line=ready_line, timeout=timeout)
    return child


def start_on_free_port(
    launch: Callable[[int], ChildProcess], *, attempts: int = 3
) -> tuple[ChildProcess, int]:
    """Run `launch(port)` on a fresh free port, retrying if another process grabbed the port
    between our probe and the child's bind (possible when tests run in parallel)."""
    for attempt in range(attempts):
        port = free_port()
        try:
            return launch(port), port
        except PeerStartError as exc:
            if attempt == attempts - 1 or not _looks_like_port_clash(str(exc)):
                raise
    raise AssertionError("unreachable")


def _looks_like_port_clash(text: str) -> bool:
    return bool(re.search(r"EADDRINUSE|address already in use|already in use", text, re.I))


@atexit.register
def _stop_leftovers() -> None:
    """Last line of defence: stop any child a crashed fixture did not stop."""
    for child in list(_LIVE):
        child.stop(timeout=1.0)
