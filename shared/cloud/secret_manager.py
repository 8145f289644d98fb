"""The KIS access token kept in Secret Manager: one secret, one version per issued token.

Write adds a version (JSON record, with a CRC32C the service verifies) and then disables the older
enabled versions, so exactly the newest token stays readable and old ones can be destroyed by policy.
Read accesses `latest`. The client is injected, so the local stack and tests can hand it a channel to
`LocalSecretManager`; in production `default_client()` uses the ambient service-account credentials.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from shared.lazy import lazy_module
from shared.market.ports import StoredToken

if TYPE_CHECKING:
    from google.api_core import exceptions as api_errors
else:
    api_errors = lazy_module("google.api_core.exceptions")  # loaded with the client, on its first call

log = logging.getLogger(__name__)


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), the checksum Secret Manager uses for payloads."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def version_number(version_name: str) -> int:
    """`projects/p/secrets/s/versions/7` -> 7."""
    return int(version_name.rsplit("/", 1)[1])


def default_client() -> Any:
    from google.cloud import secretmanager_v1

    return secretmanager_v1.SecretManagerServiceClient()


def insecure_client(address: str) -> Any:
    """A real client over a plaintext loopback channel (LocalSecretManager); no credentials are looked up."""
    import grpc
    from google.cloud import secretmanager_v1
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    transport = SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(address))
    return secretmanager_v1.SecretManagerServiceClient(transport=transport)


def local_secret_client(endpoint: str, credential: str | None = None) -> Any:
    """A real Secret Manager client talking plain gRPC to a local stand-in, presenting `credential`."""
    from google.cloud import secretmanager
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    from shared.cloud.identity import authorized_channel  # gRPC: imported with the client

    return secretmanager.SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=authorized_channel(endpoint, credential)))


class SecretManagerTokenStore:
    def __init__(self, client: Any, project: str, secret_id: str, *, create_missing: bool = True) -> None:
        self._client = client
        self.secret = f"projects/{project}/secrets/{secret_id}"
        self._create_missing = create_missing

    def prepare(self) -> None:
        """Build the client now if it is built on first use (its library loads here, not in a request)."""
        self._client.access_secret_version  # noqa: B018

    def read(self) -> StoredToken | None:
        try:
            response = self._client.access_secret_version(request={"name": f"{self.secret}/versions/latest"})
        except (api_errors.NotFound, api_errors.FailedPrecondition):  # no secret, no version, or no enabled version
            return None
        payload = response.payload
        if "data_crc32c" in payload and payload.data_crc32c != crc32c(payload.data):
            log.warning("secret %s: payload checksum mismatch; treating as no token", self.secret)
            return None
        try:
            return StoredToken.from_json(payload.data)
        except ValueError:
            log.warning("secret %s: latest version is not a token record; treating as no token", self.secret)
            return None

    def write(self, token: StoredToken) -> None:
        data = token.to_json().encode()
        request = {"parent": self.secret, "payload": {"data": data, "data_crc32c": crc32c(data)}}
        try:
            version = self._client.add_secret_version(request=request)
        except api_errors.NotFound:
            if not self._create_missing:
                raise
            self._create_secret()
            version = self._client.add_secret_version(request=request)
        self._disable_older(version_number(version.name))

    def _create_secret(self) -> None:
        parent, _, secret_id = self.secret.rpartition("/secrets/")
        try:
            self._client.create_secret(request={"parent": parent, "secret_id": secret_id,
                                                "secret": {"replication": {"automatic": {}}}})
            log.info("created secret %s", self.secret)
        except api_errors.AlreadyExists:
            pass  # another instance created it first

    def _disable_older(self, newest: int) -> None:
        # Only versions older than ours: a concurrent writer's newer version must stay enabled.
        enabled = self._client.list_secret_versions(request={"parent": self.secret, "filter": "state:ENABLED"})
        for version in enabled:
            if version_number(version.name) < newest:
                # destroyed or deleted meanwhile
                with contextlib.suppress(api_errors.NotFound, api_errors.FailedPrecondition):
                    self._client.disable_secret_version(request={"name": version.name})

    def __repr__(self) -> str:
        return f"SecretManagerTokenStore(secret={self.secret!r})"
