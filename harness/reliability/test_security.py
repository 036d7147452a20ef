"""Security: no credential leaks, loopback-only listeners, auth everywhere, expiring URLs.

Runs last in the package (file order), so the scan of the run's outputs covers the logs, state
and result files every other reliability test produced, with the shared platform still up.
"""

from __future__ import annotations

import ipaddress
import json
import stat
import time
import uuid

import boto3
import httpx
import psutil
from botocore.config import Config

from harness.reliability.secrets_scan import files_under, git_files, scan_files, scan_text
from harness.reliability.support import RESULTS_DIR, ROOT, RUNS, Rig, figure

#: Holds the credentials by design (mode 0600, deleted when the platform stops).
CREDENTIALS = "credentials.json"


def all_secrets() -> dict[str, str]:
    return {f"{name} of {run.state_dir.name}": v for run in RUNS for name, v in run.secrets.items()}


def test_no_credentials_in_the_tree_or_the_outputs(shared: Rig) -> None:
    secrets = all_secrets()
    with figure("security_secrets") as fig:
        tree = git_files(ROOT)
        tree_findings = scan_files(tree, ROOT, secrets)
        outputs = [
            p
            for p in files_under(
                RESULTS_DIR, *(run.state_dir for run in RUNS), *(run.s3_data_dir for run in RUNS)
            )
            if p.name != CREDENTIALS
        ]
        output_findings = scan_files(outputs, None, secrets)
        # What the platform stores and serves: every JSON object of every request, and the
        # gateway's view of the functions (envVars must not list the injected S3 keys).
        stored = [k for k in shared.keys("requests/") if k.endswith(".json")]
        served = {
            "/system/functions": json.dumps(shared.platform.client.functions()),
            "/system/events": json.dumps(
                [e.model_dump(mode="json") for e in shared.platform.events()]
            ),
            "/system/info": json.dumps(shared.platform.client.info()),
        }
        object_findings = [
            f
            for key in stored
            for f in scan_text(
                shared.s3.get_object(Bucket=shared.bucket, Key=key)["Body"].read().decode(),
                f"s3://{shared.bucket}/{key}",
                secrets,
            )
        ] + [f for where, text in served.items() for f in scan_text(text, where, secrets)]
        creds = [run.state_dir / CREDENTIALS for run in RUNS]
        modes = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in creds if p.exists()}
        fig.measured.update(
            secrets_of_this_run=sorted(secrets),
            git_files_scanned=len(tree),
            output_files_scanned=len(outputs),
            stored_objects_scanned=len(stored),
            findings_in_tree=[str(f) for f in tree_findings],
            findings_in_outputs=[str(f) for f in output_findings + object_findings],
            credentials_file_modes=modes,
        )

    # Counts only: an assertion on the dict itself would print the secrets it holds.
    assert len(secrets) >= 3 and len(tree) > 0 and len(outputs) > 0
    assert not tree_findings, "\n".join(map(str, tree_findings))
    assert not output_findings and not object_findings, "\n".join(
        map(str, output_findings + object_findings)
    )
    assert all(mode == "0o600" for mode in modes.values()), modes


def _listening(pid: int, *, children: bool = True) -> list[tuple[str, int, str]]:
    """(address, port, kind) of the inet sockets a process (and its children) listen on."""
    out: list[tuple[str, int, str]] = []
    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if children else [])]
    except psutil.NoSuchProcess:
        return out
    for proc in procs:
        try:
            sockets = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        for sock in sockets:
            tcp_listen = sock.status == psutil.CONN_LISTEN
            udp_bound = sock.type == 2 and not sock.raddr  # SOCK_DGRAM, not connected
            if tcp_listen or udp_bound:
                out.append((sock.laddr.ip, sock.laddr.port, "tcp" if tcp_listen else "udp"))
    return out


def test_the_platform_listens_on_loopback_only_and_requires_auth(shared: Rig) -> None:
    rig = shared
    with figure("security_network") as fig:
        # The gateway runs in this process, whose children are every other platform process.
        listeners = {
            name: _listening(pid, children=name != "gateway") for name, pid in rig.pids().items()
        }
        exposed = {
            name: [s for s in socks if not ipaddress.ip_address(s[0]).is_loopback]
            for name, socks in listeners.items()
        }
        exposed = {k: v for k, v in exposed.items() if v}
        endpoint = rig.server.endpoint_url
        key = f"uploads/{uuid.uuid4().hex[:8]}/private.txt"
        rig.s3.put_object(Bucket=rig.bucket, Key=key, Body=b"private")
        anonymous = {
            "GET object": httpx.get(f"{endpoint}/{rig.bucket}/{key}").status_code,
            "list bucket": httpx.get(f"{endpoint}/{rig.bucket}?list-type=2").status_code,
            "list buckets": httpx.get(f"{endpoint}/").status_code,
            "PUT object": httpx.put(f"{endpoint}/{rig.bucket}/anon.txt", content=b"x").status_code,
        }
        forged = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=rig.server.access_key,
            aws_secret_access_key="wrong-secret-for-this-check",
            region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        try:
            forged.get_object(Bucket=rig.bucket, Key=key)
            wrong_secret = 200
        except forged.exceptions.ClientError as exc:
            wrong_secret = int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
        gateway = {
            "no auth": httpx.get(f"{rig.gateway_url}/system/functions").status_code,
            "with auth": httpx.get(
                f"{rig.gateway_url}/system/functions", auth=rig.platform.auth.as_tuple()
            ).status_code,
        }
        fig.measured.update(
            processes=len(listeners),
            listeners={k: sorted({f"{a}:{p}/{t}" for a, p, t in v}) for k, v in listeners.items()},
            exposed=exposed,
            anonymous_s3=anonymous,
            s3_wrong_secret=wrong_secret,
            gateway_system=gateway,
        )

    assert any(listeners.values()), "no listening sockets found: the check saw nothing"
    assert not exposed, exposed
    assert all(code == 403 for code in anonymous.values()), anonymous
    assert wrong_secret == 403
    assert gateway == {"no auth": 401, "with auth": 200}, gateway


def test_presigned_urls_expire(shared: Rig) -> None:
    rig = shared
    key = f"uploads/{uuid.uuid4().hex[:8]}/shared-clip.txt"
    rig.s3.put_object(Bucket=rig.bucket, Key=key, Body=b"clip")
    expires_s = 2
    with figure("security_presigned") as fig:
        url = rig.s3.generate_presigned_url(
            "get_object", Params={"Bucket": rig.bucket, "Key": key}, ExpiresIn=expires_s
        )
        signed_at = time.time()
        fresh = httpx.get(url).status_code
        time.sleep(max(0.0, signed_at + expires_s + 1.5 - time.time()))
        stale = httpx.get(url).status_code
        tampered = httpx.get(url.replace(key, key.replace("shared", "other"))).status_code
        fig.measured.update(
            expires_s=expires_s, within=fresh, after=stale, other_key_same_signature=tampered
        )

    assert fresh == 200
    assert stale == 403
    assert tampered == 403
