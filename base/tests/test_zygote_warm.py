"""The zygote's warm-up leaves a forked replica's HTTP server nothing to import."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_CONFIG = """
import json, sys
{warm}
before = set(sys.modules)
import uvicorn

async def app(scope, receive, send):
    return None

uvicorn.Config(app, log_config=None, access_log=False, limit_concurrency=17).load()
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _imported_by_server_config(warm: str) -> list[str]:
    code = SERVER_CONFIG.format(warm=warm)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_warm_server_imports_what_the_runtime_server_would() -> None:
    # Without the warm-up a server's configuration imports modules (so the check can fail).
    assert _imported_by_server_config("import uvicorn")
    after = _imported_by_server_config("from base.zygote import warm_server; warm_server()")
    assert after == []
