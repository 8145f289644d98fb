"""Identities on the local stack, in Google's formats.

- `LocalIssuer`: signs Google-format ID tokens (RS256, google.auth.crypt / google.auth.jwt) for service
  accounts and serves its certificates on a local URL in the format of Google's
  https://www.googleapis.com/oauth2/v1/certs, so the gateway verifies local tokens exactly as it verifies
  Google's: `google.oauth2.id_token.verify_token(token, request, audience, certs_url=ID_TOKEN_CERTS_URL)`.
- `authorized_channel`: a gRPC channel to a local stand-in that presents the caller's credential (an ID token of
  its service account, audience `LOCAL_API_AUDIENCE`) as `authorization` metadata, as Google's APIs receive
  an access token.
- `CallerCheck`: what a stand-in uses to turn that metadata into a service account (or refuse).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
LOCAL_API_AUDIENCE = "https://local.googleapis.invalid"  # audience of credentials for the local stand-ins
CERTS_PATH = "/oauth2/v1/certs"


class LocalIssuer:
    """An RS256 signing key with a self-signed certificate, served at `certs_url` once started."""

    def __init__(self, issuer: str = "https://accounts.google.com") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
        from google.auth import crypt

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kisgw local issuer")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
        self.kid = uuid.uuid4().hex
        self.issuer = issuer
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        self._signer = crypt.RSASigner.from_string(pem, key_id=self.kid)
        self._server: ThreadingHTTPServer | None = None
        self.certs_url = ""

    def id_token(self, email: str, audience: str, lifetime_s: int = 3600) -> str:
        """A Google-format ID token of service account `email` for `audience`."""
        from google.auth import jwt

        now = int(time.time())
        claims = {"iss": self.issuer, "aud": audience, "azp": email, "sub": email, "email": email,
                  "email_verified": True, "iat": now, "exp": now + lifetime_s}
        token: bytes = jwt.encode(self._signer, claims)
        return token.decode()

    def certs(self) -> dict[str, str]:
        return {self.kid: self.cert_pem}

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """Claims of a token this issuer signed for `audience`; ValueError otherwise (no network)."""
        from google.auth import jwt

        claims: dict[str, Any] = jwt.decode(token, certs=self.certs(), audience=audience)
        return claims

    def start(self, host: str = "127.0.0.1") -> str:
        body = json.dumps(self.certs()).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] != CERTS_PATH:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="local-issuer", daemon=True).start()
        self.certs_url = f"http://{host}:{self._server.server_address[1]}{CERTS_PATH}"
        return self.certs_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


class _AddAuthorization(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, credential: str) -> None:
        self._metadata = ("authorization", f"Bearer {credential}")

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self._metadata]
        details = details._replace(metadata=metadata) if hasattr(details, "_replace") else _Details(details, metadata)
        return continuation(details, request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, base: Any, metadata: list[tuple[str, str]]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = tuple(metadata)
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


def authorized_channel(address: str, credential: str | None) -> grpc.Channel:
    """A plaintext loopback channel to a local stand-in presenting `credential` (none: anonymous)."""
    channel = grpc.insecure_channel(address)
    return grpc.intercept_channel(channel, _AddAuthorization(credential)) if credential else channel


class CallerCheck:
    """Who is calling a stand-in: the service account of a valid credential in the `authorization` metadata."""

    def __init__(self, verify: Callable[[str, str], dict[str, Any]], audience: str = LOCAL_API_AUDIENCE) -> None:
        self._verify = verify
        self._audience = audience

    def caller(self, context: grpc.ServicerContext) -> str | None:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str) and value.lower().startswith("bearer "):
                try:
                    claims = self._verify(value[7:].strip(), self._audience)
                except (ValueError, Exception):
                    return None
                return str(claims.get("email") or "") or None
        return None


def require(context: grpc.ServicerContext, allowed: bool, caller: str | None, what: str) -> None:
    """Abort with UNAUTHENTICATED (no caller) or PERMISSION_DENIED (caller lacks the grant)."""
    if caller is None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, f"no valid credential for {what}")
    if not allowed:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, f"Permission denied: {caller} may not {what}")


def emails(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v for v in values if v)


class RoleCheck:
    """The grants of `shared.deployment.role_table()` (what Terraform deploys), checked per RPC.

    Permissions: "secrets.access" (read a secret's value), "versions.write" (add/list/disable versions),
    "tasks.create" (enqueue into a queue, acting as the tasks invoker), "admin" (create secrets and queues:
    what Terraform itself does; only the stack's own deploy identity)."""

    def __init__(self, verify: Callable[[str, str], dict[str, Any]], table: dict[str, dict[str, Any]],
                 admins: Iterable[str] = (), audience: str = LOCAL_API_AUDIENCE) -> None:
        self._callers = CallerCheck(verify, audience)
        self._table = table
        self._admins = frozenset(admins)

    def allowed(self, email: str, permission: str, resource: str) -> bool:
        if email in self._admins:
            return True
        grants = self._table.get(email)
        if grants is None:
            return False
        if permission == "secrets.access":
            return resource in grants["secrets"]
        if permission == "versions.write":
            return resource in grants["add_versions"]
        if permission == "tasks.create":
            return resource in grants["queues"]
        if permission == "act_as":
            return resource in grants["act_as"]
        return False

    def check(self, context: grpc.ServicerContext, permission: str, resource: str) -> str:
        caller = self._callers.caller(context)
        require(context, caller is not None and self.allowed(caller, permission, resource), caller,
                f"{permission} on {resource}")
        assert caller is not None
        return caller
