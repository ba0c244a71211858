"""The npm peers pinned in tests/package.json + package-lock.json, installed on demand.

`ensure_node_modules()` runs `npm ci` in tests/ only when node_modules does not match the
lock file; when it does, the check costs a few milliseconds. Concurrent callers (pytest-xdist
workers) serialise on a file lock, so only one of them installs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
NODE_MODULES = TESTS_DIR / "node_modules"
LOCK_FILE = TESTS_DIR / "package-lock.json"
_STAMP = NODE_MODULES / ".peers-lock-sha256"
# Outside node_modules (npm ci deletes that folder first) and outside the checkout.
_INSTALL_LOCK = Path(tempfile.gettempdir()) / (
    f"mcp-peers-npm-{hashlib.sha256(str(TESTS_DIR).encode()).hexdigest()[:12]}.lock"
)
_NPM_CI_TIMEOUT = 600


class NodeUnavailableError(RuntimeError):
    """Node.js / npm is missing or the install failed; the message says what to do."""


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise NodeUnavailableError(
            "`node` is not on PATH. The e2e tests need Node.js 20+ and npm "
            "(Debian: apt-get install -y nodejs npm)."
        )
    return node


def _lock_digest() -> str:
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()


def _installed_matches_lock() -> bool:
    """Every non-optional package in the lock file is installed at the locked version."""
    packages = json.loads(LOCK_FILE.read_text())["packages"]
    for path, meta in packages.items():
        if not path or meta.get("optional") or meta.get("link"):
            continue
        manifest = TESTS_DIR / path / "package.json"
        try:
            installed = json.loads(manifest.read_text()).get("version")
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        if installed != meta.get("version"):
            return False
    return True


def _is_current() -> bool:
    return _STAMP.is_file() and _STAMP.read_text().strip() == _lock_digest()


def ensure_node_modules() -> Path:
    """Install tests/node_modules from the lock file if it is missing or stale; return its path."""
    if _is_current():
        return NODE_MODULES
    npm = shutil.which("npm")
    if npm is None:
        raise NodeUnavailableError(
            "`npm` is not on PATH, so the pinned test peers in tests/package.json cannot be "
            "installed. Install Node.js 20+ with npm (Debian: apt-get install -y nodejs npm), "
            "or run `npm ci` in tests/ yourself."
        )
    node_executable()
    with _INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_current():  # another worker installed while we waited for the lock
            return NODE_MODULES
        if not (NODE_MODULES.is_dir() and _installed_matches_lock()):
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=TESTS_DIR,
                capture_output=True,
                text=True,
                timeout=_NPM_CI_TIMEOUT,
                check=False,
            )
            if result.returncode != 0:
                raise NodeUnavailableError(
                    f"`npm ci` in {TESTS_DIR} failed with status {result.returncode}:\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
                )
        _STAMP.write_text(_lock_digest())
    return NODE_MODULES


def node_bin(name: str) -> Path:
    """Path of an npm package binary in tests/node_modules/.bin (installing first if needed)."""
    path = ensure_node_modules() / ".bin" / name
    if not path.exists():
        raise NodeUnavailableError(
            f"{path} does not exist: is the package providing `{name}` in tests/package.json?"
        )
    return path.resolve()


def node_command(name: str, *args: str) -> list[str]:
    """argv that runs an npm binary with the `node` on PATH (no npx: a killed npx orphans node)."""
    return [node_executable(), str(node_bin(name)), *args]
