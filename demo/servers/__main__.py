"""`python -m demo.servers --host 127.0.0.1 --port 8765`: every demo server over HTTP."""

import sys

from demo.servers.cli import run_http

sys.exit(run_http())
