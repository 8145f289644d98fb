"""A local Secret Manager: an in-process gRPC server speaking the real v1 API to the real client.

No emulator exists for Secret Manager, so this one is built from the client library's own request and
response types (proto-plus `serialize`/`deserialize`), and answers as the service does: version names
numbered from 1, `latest` = the newest ENABLED version, NOT_FOUND for a missing secret or version,
ALREADY_EXISTS for a second CreateSecret, FAILED_PRECONDITION when accessing, enabling or disabling a
disabled/destroyed version, INVALID_ARGUMENT for a bad name, filter or payload checksum.
State lives in memory; the local stack runs one (`python -m shared.cloud.secret_manager_server`).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from google.cloud.secretmanager_v1 import types as sm
from google.protobuf import empty_pb2

from shared.cloud.secret_manager import crc32c

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
State = sm.SecretVersion.State
_SECRET_NAME = re.compile(r"^projects/([^/]+)/secrets/([a-zA-Z0-9_-]{1,255})$")
_VERSION_NAME = re.compile(r"^(projects/[^/]+/secrets/[a-zA-Z0-9_-]{1,255})/versions/(latest|[1-9][0-9]*)$")
_STATE_FILTER = re.compile(r"^state\s*[:=]\s*(ENABLED|DISABLED|DESTROYED)$", re.IGNORECASE)
_MAX_PAYLOAD = 64 * 1024


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Version:
    meta: sm.SecretVersion
    data: bytes | None


@dataclass
class _Secret:
    meta: sm.Secret
    versions: list[_Version] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


class _SecretManagerState:
    """The service's data and rules, under one lock (calls are tiny)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, _Secret] = {}

    def _secret(self, name: str) -> _Secret:
        if not _SECRET_NAME.match(name):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value in the request: {name}")
        if name not in self._secrets:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Secret [{name}] not found or has no versions.")
        return self._secrets[name]

    def _version(self, name: str) -> _Version:
        match = _VERSION_NAME.match(name)
        if not match:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value in the request: {name}")
        secret = self._secret(match[1])
        if match[2] == "latest":
            enabled = [v for v in secret.versions if v.meta.state == State.ENABLED]
            if not enabled:
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"Secret [{match[1]}] not found or has no versions.")
            return enabled[-1]
        number = int(match[2])
        if number > len(secret.versions):
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Secret Version [{name}] not found.")
        return secret.versions[number - 1]

    def create_secret(self, req: sm.CreateSecretRequest, _: Any) -> sm.Secret:
        name = f"{req.parent}/secrets/{req.secret_id}"
        with self._lock:
            if not _SECRET_NAME.match(name):
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid secret id or parent: {name}")
            if name in self._secrets:
                raise _Abort(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{name}] already exists.")
            meta = sm.Secret(req.secret)
            meta.name, meta.create_time, meta.etag = name, _now(), '"1"'
            self._secrets[name] = _Secret(meta)
            return meta

    def get_secret(self, req: sm.GetSecretRequest, _: Any) -> sm.Secret:
        with self._lock:
            return self._secret(req.name).meta

    def list_secrets(self, req: sm.ListSecretsRequest, _: Any) -> sm.ListSecretsResponse:
        with self._lock:
            found = [s.meta for n, s in sorted(self._secrets.items()) if n.startswith(req.parent + "/secrets/")]
        page, token = _page(found, req.page_size, req.page_token)
        return sm.ListSecretsResponse(secrets=page, next_page_token=token, total_size=len(found))

    def delete_secret(self, req: sm.DeleteSecretRequest, _: Any) -> empty_pb2.Empty:
        with self._lock:
            self._secret(req.name)
            del self._secrets[req.name]
        return empty_pb2.Empty()

    def add_secret_version(self, req: sm.AddSecretVersionRequest, _: Any) -> sm.SecretVersion:
        data = req.payload.data
        if len(data) > _MAX_PAYLOAD:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Secret payload must be 65536 bytes or fewer.")
        checksummed = "data_crc32c" in req.payload
        if checksummed and req.payload.data_crc32c != crc32c(data):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Checksum mismatch: data_crc32c does not match the payload.")
        with self._lock:
            secret = self._secret(req.parent)
            meta = sm.SecretVersion(name=f"{req.parent}/versions/{len(secret.versions) + 1}", create_time=_now(),
                                    state=State.ENABLED, etag='"1"', client_specified_payload_checksum=checksummed)
            secret.versions.append(_Version(meta, data))
            return meta

    def get_secret_version(self, req: sm.GetSecretVersionRequest, _: Any) -> sm.SecretVersion:
        with self._lock:
            return self._version(req.name).meta

    def list_secret_versions(self, req: sm.ListSecretVersionsRequest, _: Any) -> sm.ListSecretVersionsResponse:
        wanted: int | None = None
        if req.filter:
            match = _STATE_FILTER.match(req.filter.strip())
            if not match:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid filter: {req.filter}")
            wanted = State.__members__[match[1].upper()]
        with self._lock:
            secret = self._secret(req.parent)
            found = [v.meta for v in reversed(secret.versions) if wanted is None or v.meta.state == wanted]
        page, token = _page(found, req.page_size, req.page_token)
        return sm.ListSecretVersionsResponse(versions=page, next_page_token=token, total_size=len(found))

    def access_secret_version(self, req: sm.AccessSecretVersionRequest, _: Any) -> sm.AccessSecretVersionResponse:
        with self._lock:
            version = self._version(req.name)
            if version.meta.state != State.ENABLED:
                raise _Abort(grpc.StatusCode.FAILED_PRECONDITION,
                             f"Secret Version [{version.meta.name}] is in {version.meta.state.name} state.")
            data = version.data or b""
        return sm.AccessSecretVersionResponse(name=version.meta.name,
                                              payload=sm.SecretPayload(data=data, data_crc32c=crc32c(data)))

    def _change_state(self, name: str, etag: str, new_state: State) -> sm.SecretVersion:
        with self._lock:
            version = self._version(name)
            if etag and etag != version.meta.etag:
                raise _Abort(grpc.StatusCode.ABORTED, f"The etag provided [{etag}] does not match the current etag.")
            if version.meta.state == State.DESTROYED:
                raise _Abort(grpc.StatusCode.FAILED_PRECONDITION,
                             f"Secret Version [{version.meta.name}] is in DESTROYED state.")
            version.meta.state = new_state
            version.meta.etag = f'"{int(version.meta.etag.strip(chr(34))) + 1}"'
            if new_state == State.DESTROYED:
                version.meta.destroy_time, version.data = _now(), None
            return version.meta

    def disable_secret_version(self, req: sm.DisableSecretVersionRequest, _: Any) -> sm.SecretVersion:
        return self._change_state(req.name, req.etag, State.DISABLED)

    def enable_secret_version(self, req: sm.EnableSecretVersionRequest, _: Any) -> sm.SecretVersion:
        return self._change_state(req.name, req.etag, State.ENABLED)

    def destroy_secret_version(self, req: sm.DestroySecretVersionRequest, _: Any) -> sm.SecretVersion:
        return self._change_state(req.name, req.etag, State.DESTROYED)


def _page(items: list[Any], page_size: int, page_token: str) -> tuple[list[Any], str]:
    start = int(page_token) if page_token.isdigit() else 0
    size = page_size if 0 < page_size <= 25000 else 25000
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


# RPC -> (permission, the secret it acts on) for callers checked against the role table.
_PERMISSIONS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "AccessSecretVersion": ("secrets.access", lambda r: r.name),
    "GetSecretVersion": ("secrets.access", lambda r: r.name),
    "AddSecretVersion": ("versions.write", lambda r: r.parent),
    "ListSecretVersions": ("versions.write", lambda r: r.parent),
    "DisableSecretVersion": ("versions.write", lambda r: r.name),
}


def _secret_id(name: str) -> str:
    parts = name.split("/")
    return parts[3] if len(parts) > 3 and parts[2] == "secrets" else name


def _unary(fn: Callable[[Any, Any], Any], request_type: Any, response_serializer: Callable[[Any], bytes],
           check: Callable[[Any, grpc.ServicerContext], None] | None = None) -> Any:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if check is not None:
            check(request, context)
        try:
            return fn(request, context)
        except _Abort as exc:
            context.abort(exc.code, str(exc))

    return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=request_type.deserialize,
                                               response_serializer=response_serializer)


class LocalSecretManager:
    """`start()` -> "127.0.0.1:PORT" for `insecure_client(address)`; `stop()` ends it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, max_workers: int = 8,
                 roles: Any = None) -> None:
        """`roles`: a `shared.cloud.identity.RoleCheck`; with it every RPC needs a caller holding the grant
        (as IAM does), without it the server is open (unit tests of the API surface)."""
        self._roles = roles
        self._bind = f"{host}:{port}"
        self._host = host
        self._max_workers = max_workers
        self._server: grpc.Server | None = None
        self.address = ""

    def start(self) -> str:
        state = _SecretManagerState()
        roles = self._roles

        def checker(rpc: str) -> Callable[[Any, grpc.ServicerContext], None] | None:
            if roles is None:
                return None
            permission, resource = _PERMISSIONS.get(rpc, ("admin", lambda r: ""))

            def check(request: Any, context: grpc.ServicerContext) -> None:
                roles.check(context, permission, _secret_id(resource(request)))
            return check

        handlers = {
            "CreateSecret": _unary(state.create_secret, sm.CreateSecretRequest, sm.Secret.serialize,
                                   checker("CreateSecret")),
            "GetSecret": _unary(state.get_secret, sm.GetSecretRequest, sm.Secret.serialize, checker("GetSecret")),
            "ListSecrets": _unary(state.list_secrets, sm.ListSecretsRequest, sm.ListSecretsResponse.serialize,
                                  checker("ListSecrets")),
            "DeleteSecret": _unary(state.delete_secret, sm.DeleteSecretRequest, empty_pb2.Empty.SerializeToString,
                                   checker("DeleteSecret")),
            "AddSecretVersion": _unary(state.add_secret_version, sm.AddSecretVersionRequest,
                                       sm.SecretVersion.serialize, checker("AddSecretVersion")),
            "GetSecretVersion": _unary(state.get_secret_version, sm.GetSecretVersionRequest,
                                       sm.SecretVersion.serialize, checker("GetSecretVersion")),
            "ListSecretVersions": _unary(state.list_secret_versions, sm.ListSecretVersionsRequest,
                                         sm.ListSecretVersionsResponse.serialize, checker("ListSecretVersions")),
            "AccessSecretVersion": _unary(state.access_secret_version, sm.AccessSecretVersionRequest,
                                          sm.AccessSecretVersionResponse.serialize, checker("AccessSecretVersion")),
            "DisableSecretVersion": _unary(state.disable_secret_version, sm.DisableSecretVersionRequest,
                                           sm.SecretVersion.serialize, checker("DisableSecretVersion")),
            "EnableSecretVersion": _unary(state.enable_secret_version, sm.EnableSecretVersionRequest,
                                          sm.SecretVersion.serialize, checker("EnableSecretVersion")),
            "DestroySecretVersion": _unary(state.destroy_secret_version, sm.DestroySecretVersionRequest,
                                           sm.SecretVersion.serialize, checker("DestroySecretVersion")),
        }
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._max_workers))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        port = server.add_insecure_port(self._bind)
        server.start()
        self._server = server
        self.address = f"{self._host}:{port}"
        return self.address

    def stop(self, grace_s: float | None = 1.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace_s).wait(5)

    def __enter__(self) -> LocalSecretManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local Secret Manager (gRPC, plaintext, in memory).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    server = LocalSecretManager(args.host, args.port)
    print(f"secret manager listening on {server.start()}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
