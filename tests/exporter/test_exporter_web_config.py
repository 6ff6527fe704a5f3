"""--web.config.file: TLS, client certificates and basic auth in the exporter-toolkit format."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

bcrypt = pytest.importorskip("bcrypt")
requests = pytest.importorskip("requests")

from proxytier_exporter.webconfig import WebConfigError, load_web_config  # noqa: E402

from .test_exporter_web_limits import exporter, exporter_env, free_port  # noqa: E402


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (SAN prometheus.example), all
    signed by the CA, made with openssl."""
    if subprocess.run(["which", "openssl"], capture_output=True).returncode:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test CA",
            cwd=d)
    for name, san in (("server", "IP:127.0.0.1"), ("client", "DNS:prometheus.example")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


def bcrypt_hash(password: str) -> str:
    # Cost 4 keeps the tests fast; $2y$ is what htpasswd -B writes.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)


def write_config(pki: Path, path: Path, extra_tls: str = "", users: dict[str, str] | None = None,
                 more: str = "") -> Path:
    text = f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n{extra_tls}"
    if users:
        text += "basic_auth_users:\n" + "".join(f"  {user}: '{hashed}'\n" for user, hashed in users.items())
    path.write_text(text + more)
    return path


def test_tls_and_basic_auth(pki: Path, tmp_path: Path) -> None:
    config = write_config(pki, tmp_path / "web.yml", users={"prometheus": bcrypt_hash("s3cret")},
                          more="http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    with exporter(f"--web.config.file={config}") as node:
        url = f"https://127.0.0.1:{node.port}/metrics"
        ok = requests.get(url, auth=("prometheus", "s3cret"), verify=pki / "ca.crt", timeout=5)
        assert ok.status_code == 200
        assert "proxytier_build_info" in ok.text
        assert ok.headers["X-Content-Type-Options"] == "nosniff"
        for auth in (None, ("prometheus", "wrong"), ("nobody", "s3cret"), ("prometheus", "")):
            refused = requests.get(url, auth=auth, verify=pki / "ca.crt", timeout=5)
            assert refused.status_code == 401, auth
            assert refused.headers["WWW-Authenticate"] == "Basic"
            assert "proxytier" not in refused.text
        with pytest.raises(requests.exceptions.SSLError):  # the CA check is real: another CA is refused
            requests.get(url, auth=("prometheus", "s3cret"), verify=True, timeout=5)
        with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP on the TLS port
            requests.get(f"http://127.0.0.1:{node.port}/metrics", timeout=5)


def tls_connect(port: int, context: ssl.SSLContext) -> str:
    """The TLS version negotiated with the exporter (raises ssl.SSLError if it refuses)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tls.recv(12) == b"HTTP/1.1 200"
        return str(tls.version())


def client_context(pki: Path, maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
                   cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.maximum_version = maximum
    if cert:
        context.load_cert_chain(pki / "client.crt", pki / "client.key")
    return context


def test_min_version_is_enforced(pki: Path, tmp_path: Path) -> None:
    assert load_web_config(str(write_config(pki, tmp_path / "default.yml"))).tls.minimum_version \
        == ssl.TLSVersion.TLSv1_2
    config = write_config(pki, tmp_path / "web.yml", extra_tls="  min_version: TLS13\n")
    with exporter(f"--web.config.file={config}") as node:
        assert tls_connect(node.port, client_context(pki)) == "TLSv1.3"
        with pytest.raises(ssl.SSLError):
            tls_connect(node.port, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))


def test_client_certificates(pki: Path, tmp_path: Path) -> None:
    config = write_config(pki, tmp_path / "web.yml", extra_tls=(
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki}/ca.crt\n"
        "  client_allowed_sans: [prometheus.example]\n"))
    with exporter(f"--web.config.file={config}") as node:
        assert tls_connect(node.port, client_context(pki, cert=True)).startswith("TLSv1.")
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
            tls_connect(node.port, client_context(pki))  # no certificate: refused
        config.write_text(config.read_text().replace("prometheus.example", "other.example"))
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
            tls_connect(node.port, client_context(pki, cert=True))  # SAN no longer allowed: closed


def test_the_file_is_reread_when_it_changes_and_an_invalid_edit_fails_closed(pki: Path, tmp_path: Path) -> None:
    config = write_config(pki, tmp_path / "web.yml", users={"prometheus": bcrypt_hash("old")})
    with exporter(f"--web.config.file={config}") as node:
        url = f"https://127.0.0.1:{node.port}/metrics"

        def status(password: str) -> int:
            return requests.get(url, auth=("prometheus", password), verify=pki / "ca.crt", timeout=5).status_code

        assert (status("old"), status("new")) == (200, 401)
        write_config(pki, config, users={"prometheus": bcrypt_hash("new")})
        assert (status("old"), status("new")) == (401, 200)
        config.write_text(config.read_text() + "basic_auth_user: {}\n")  # a typo
        assert status("new") == 500
        write_config(pki, config, users={"prometheus": bcrypt_hash("new")})
        assert status("new") == 200


def test_plain_http_with_basic_auth(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  prometheus: '{bcrypt_hash('pw')}'\n")
    with exporter(f"--web.config.file={config}") as node:
        url = f"http://127.0.0.1:{node.port}/metrics"
        assert requests.get(url, auth=("prometheus", "pw"), timeout=5).status_code == 200
        assert requests.get(url, timeout=5).status_code == 401


@pytest.mark.parametrize(("text", "message"), [
    ("tls_server_config:\n  certfile: a.crt\n", "unknown key 'tls_server_config.certfile'"),
    ("tls_config: {}\n", "unknown key 'tls_config'"),
    ("http_server_config:\n  headers:\n    X-Powered-By: me\n", "http_server_config.headers.X-Powered-By"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "expected one of deny, sameorigin"),
    ("basic_auth_users:\n  alice: plain-text\n", "basic_auth_users.alice: not a bcrypt hash"),
    ("rate_limit:\n  interval: 1s\n  burst: 5\n", "rate_limit: not implemented"),
    ("tls_server_config:\n  key_file: {d}/server.key\n", "tls_server_config needs cert_file"),
    ("tls_server_config:\n  cert_file: {d}/missing.crt\n  key_file: {d}/server.key\n",
     "cert_file .*missing.crt: no such file"),
    ("tls_server_config:\n  cert_file: {d}/ca.srl\n  key_file: {d}/server.key\n", "cannot load the certificate"),
    ("tls_server_config:\n  cert_file: {d}/server.crt\n  key_file: {d}/client.key\n", "cannot load the certificate"),
    ("tls_server_config:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\n  min_version: TLS14\n",
     "min_version 'TLS14'"),
    ("tls_server_config:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\n"
     "  client_auth_type: RequireAnyClientCert\n", "always verifies"),
    ("tls_server_config:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\n  client_ca_file: {d}/ca.crt\n",
     "client_auth_type is NoClientCert"),
    ("- a list\n", "must be a mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_invalid_files_are_refused_naming_the_key(pki: Path, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text.replace("{d}", str(pki)))
    with pytest.raises(WebConfigError, match="web.yml: .*" + message.replace("(", r"\(").replace("'", "'")):
        load_web_config(str(path))


def test_startup_fails_clearly_on_a_missing_file_or_a_bad_certificate(pki: Path, tmp_path: Path) -> None:
    bad = write_config(pki, tmp_path / "bad.yml")
    bad.write_text(bad.read_text().replace("server.crt", "ca.srl"))
    for path, message in ((tmp_path / "missing.yml", "missing.yml: no such file"),
                          (bad, "cannot load the certificate")):
        answer = subprocess.run([sys.executable, "-m", "proxytier_exporter", f"--web.config.file={path}",
                                 f"--web.listen-address=127.0.0.1:{free_port()}"], capture_output=True, text=True,
                                timeout=20, env=exporter_env())
        assert answer.returncode == 1
        assert message in answer.stderr
        assert "Traceback" not in answer.stderr


def test_the_readme_example_loads(pki: Path, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "exporter" / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    example = example.replace("/etc/proxytier-exporter/tls", f"{pki}/server")
    (tmp_path / "web.yml").write_text(example)
    config = load_web_config(str(tmp_path / "web.yml"))
    assert config.tls is not None and config.tls.minimum_version == ssl.TLSVersion.TLSv1_2
    assert list(config.users) == ["prometheus"]
    assert config.headers == [("X-Content-Type-Options", "nosniff")]
