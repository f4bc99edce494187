"""Issue 14 item 21: `medloop serve` over TLS (--ssl-certfile/--ssl-keyfile) and behind a
trusted proxy (--proxy-headers --forwarded-allow-ips): session cookies get the Secure
flag, and the throttle sees the client address the proxy forwarded. Real servers on
127.0.0.1 with a self-signed certificate made here."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.web.conftest import Web


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(web: Web) -> dict[str, str]:
    return {
        "MEDLOOP_WORKSPACE": str(web.settings.workspace_dir),
        "MEDLOOP_EMBEDDER": "hash",
        "MEDLOOP_VECTOR_INDEX": "memory",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "HOME": os.environ.get("HOME", "/tmp"),
    }


@contextmanager
def _serve(web: Web, *args: str, scheme: str, verify: ssl.SSLContext | bool = True) -> Iterator[httpx.Client]:
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "medloop", "serve", "--port", str(port), "--log-level", "warning", *args],
        env=_env(web),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = httpx.Client(base_url=f"{scheme}://127.0.0.1:{port}", verify=verify, timeout=30)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "server exited"
            try:
                if client.get("/api/v1/health").status_code < 500:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def _login(client: httpx.Client, token: str, **headers: str) -> httpx.Response:
    form = client.get("/login", headers=headers)
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce is not None
    return client.post(
        "/login",
        data={"nonce": nonce.group(1), "token": token},
        headers=headers,
        cookies={"medloop_prelogin": form.cookies["medloop_prelogin"]},
    )


def test_serve_over_tls_sets_secure_cookies(web: Web, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))  # the real chain check, no verify=False
    with _serve(
        web, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), scheme="https", verify=trust
    ) as client:
        form = client.get("/login")
        assert form.status_code == 200 and "Secure" in _set_cookies(form)["medloop_prelogin"]
        done = _login(client, web.tokens["bob"])
        assert done.status_code == 303, done.text
        session = _set_cookies(done)["medloop_session"]
        assert "Secure" in session and "HttpOnly" in session
        assert (
            client.get("/api/v1/me", headers={"Authorization": f"Bearer {web.tokens['bob']}"}).status_code
            == 200
        )


def test_forwarded_proto_and_address_are_trusted_only_from_the_proxy(web: Web) -> None:
    with _serve(web, "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1", scheme="http") as client:
        hops = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.50"}
        done = _login(client, web.tokens["bob"], **hops)
        assert done.status_code == 303 and "Secure" in _set_cookies(done)["medloop_session"]
        bad = client.get("/api/v1/me", headers={"Authorization": "Bearer tok_nope.x", **hops})
        assert bad.status_code == 401
    fails = [e for e in web.store.audit.list(limit=1_000_000) if e.action == "auth.fail"]
    assert fails[-1].detail["address"] == "203.0.113.50"
    # Without --proxy-headers the same headers are ignored: no Secure flag over plain HTTP.
    with _serve(web, scheme="http") as client:
        plain = _login(client, web.tokens["bob"], **hops)
        assert plain.status_code == 303 and "Secure" not in _set_cookies(plain)["medloop_session"]


def test_serve_needs_both_tls_files(web: Web, tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "medloop", "serve", "--ssl-certfile", str(cert)],
        env=_env(web),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--ssl-keyfile" in out.stderr and "Traceback" not in out.stderr
