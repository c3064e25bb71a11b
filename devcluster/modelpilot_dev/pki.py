"""Keys, certificates and tokens for one simulated cluster (made with the openssl CLI,
so the operator's dependencies stay free of a crypto library)."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Identities the default RBAC policy already binds to the right ClusterRoles, so no
# extra bindings are needed; the admin is in system:masters (bypasses RBAC).
ADMIN: tuple[str, list[str]] = ("modelpilot-admin", ["system:masters"])
CONTROLLER_MANAGER: tuple[str, list[str]] = ("system:kube-controller-manager", [])
SCHEDULER: tuple[str, list[str]] = ("system:kube-scheduler", [])


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path  # also signs CertificateSigningRequests (controller-manager)
    serving_cert: Path
    serving_key: Path
    sa_key: Path  # signs service-account tokens (controller-manager, apiserver)
    sa_pub: Path
    token_file: Path  # kube-apiserver --token-auth-file
    tokens: dict[str, str]  # user -> bearer token


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def create(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, cert = directory / "apiserver.key", directory / "apiserver.crt"
    csr, ext = directory / "apiserver.csr", directory / "apiserver.ext"
    # EC P-256: generating an RSA key costs noticeable time on a 2-core machine.
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_cert),
        "-days",
        "2",
        "-subj",
        "/CN=modelpilot-sim-ca",
    )
    _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=kube-apiserver")
    # The API server is reached as 127.0.0.1/localhost from outside and as the
    # `kubernetes` service name from inside (clients built from in-cluster config).
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    sa_key, sa_pub = directory / "sa.key", directory / "sa.pub"
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-out",
        str(sa_key),
    )
    _openssl("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))

    tokens: dict[str, str] = {}
    lines: list[str] = []
    for user, groups in (ADMIN, CONTROLLER_MANAGER, SCHEDULER):
        token = secrets.token_hex(24)
        tokens[user] = token
        lines.append(f'{token},{user},{user},"{",".join(groups)}"')
    token_file = directory / "tokens.csv"
    token_file.write_text("\n".join(lines) + "\n")
    for path in directory.iterdir():
        path.chmod(0o600)
    return Pki(ca_cert, ca_key, cert, key, sa_key, sa_pub, token_file, tokens)
