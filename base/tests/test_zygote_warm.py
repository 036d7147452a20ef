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


#: Fork after the zygote's warm-up, then run a full collection in the child and count the pages
#: it faulted in (each a copy of a page shared with the parent).
FULL_COLLECTION_IN_A_FORK = """
import gc, os, resource, sys
import base.runtime, base.storage, base.zygote  # a replica's heap: pydantic, boto3, uvicorn
base.storage.warm()
base.zygote.warm_server()
if sys.argv[1] == "frozen":
    base.zygote.freeze_heap()
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    gc.collect()
    os.write(write, str(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before).encode())
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(read, 64).decode())
"""


def _pages_copied_by_a_full_collection(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FULL_COLLECTION_IN_A_FORK, mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def test_a_frozen_heap_stays_shared_through_a_full_collection() -> None:
    # Not frozen: the collector writes to every tracked object's header, copying its page.
    assert _pages_copied_by_a_full_collection("plain") > 1000
    assert _pages_copied_by_a_full_collection("frozen") < 200
