"""The real Secret Manager client against LocalSecretManager (real v1 gRPC API), and the token store on it."""

from __future__ import annotations

import logging

import pytest
from google.api_core import exceptions as gexc

from shared.backends import token_store_from_settings
from shared.cloud.secret_manager import SecretManagerTokenStore, crc32c, insecure_client, version_number
from shared.cloud.secret_manager_server import LocalSecretManager
from shared.cloud.token_store import StoredToken
from shared.config import load_settings

PROJECT = "kisgw-test"
PARENT = f"projects/{PROJECT}"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.secret-token-value"


@pytest.fixture
def server():
    manager = LocalSecretManager()
    manager.start()
    yield manager
    manager.stop()


@pytest.fixture
def client(server):
    return insecure_client(server.address)


def add(client, secret: str, data: bytes):
    return client.add_secret_version(request={"parent": secret, "payload": {"data": data}})


def access(client, name: str) -> bytes:
    return client.access_secret_version(request={"name": name}).payload.data


def enabled_numbers(client, secret: str) -> list[int]:
    versions = client.list_secret_versions(request={"parent": secret, "filter": "state:ENABLED"})
    return [version_number(v.name) for v in versions]


def test_crc32c_matches_the_castagnoli_check_value():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_secrets_create_get_delete(client):
    secret = client.create_secret(request={"parent": PARENT, "secret_id": "kis-token",
                                           "secret": {"replication": {"automatic": {}}}})
    assert secret.name == f"{PARENT}/secrets/kis-token"
    assert client.get_secret(request={"name": secret.name}).name == secret.name
    with pytest.raises(gexc.AlreadyExists):
        client.create_secret(request={"parent": PARENT, "secret_id": "kis-token", "secret": {}})
    with pytest.raises(gexc.InvalidArgument):
        client.create_secret(request={"parent": PARENT, "secret_id": "bad id!", "secret": {}})
    client.delete_secret(request={"name": secret.name})
    with pytest.raises(gexc.NotFound):
        client.get_secret(request={"name": secret.name})
    with pytest.raises(gexc.NotFound):
        client.delete_secret(request={"name": secret.name})


def test_versions_latest_disable_enable_destroy(client):
    secret = f"{PARENT}/secrets/s1"
    with pytest.raises(gexc.NotFound):
        add(client, secret, b"x")
    with pytest.raises(gexc.NotFound):
        access(client, f"{secret}/versions/latest")
    client.create_secret(request={"parent": PARENT, "secret_id": "s1", "secret": {}})
    with pytest.raises(gexc.NotFound):  # a secret with no versions
        access(client, f"{secret}/versions/latest")

    names = [add(client, secret, f"v{i}".encode()).name for i in (1, 2, 3)]
    assert names == [f"{secret}/versions/{i}" for i in (1, 2, 3)]
    response = client.access_secret_version(request={"name": f"{secret}/versions/latest"})
    assert (response.name, response.payload.data) == (names[2], b"v3")
    assert response.payload.data_crc32c == crc32c(b"v3")
    assert access(client, names[0]) == b"v1"
    with pytest.raises(gexc.NotFound):
        access(client, f"{secret}/versions/4")

    disabled = client.disable_secret_version(request={"name": names[2]})
    assert disabled.state == disabled.State.DISABLED
    with pytest.raises(gexc.FailedPrecondition, match="DISABLED"):
        access(client, names[2])
    assert access(client, f"{secret}/versions/latest") == b"v2"  # latest = newest ENABLED version
    client.enable_secret_version(request={"name": names[2]})
    assert access(client, f"{secret}/versions/latest") == b"v3"

    destroyed = client.destroy_secret_version(request={"name": names[1]})
    assert destroyed.state == destroyed.State.DESTROYED and destroyed.destroy_time
    with pytest.raises(gexc.FailedPrecondition, match="DESTROYED"):
        access(client, names[1])
    with pytest.raises(gexc.FailedPrecondition):
        client.enable_secret_version(request={"name": names[1]})

    assert enabled_numbers(client, secret) == [3, 1]  # newest first
    everything = client.list_secret_versions(request={"parent": secret, "page_size": 1})
    assert [version_number(v.name) for v in everything] == [3, 2, 1]  # the pager followed page tokens
    with pytest.raises(gexc.InvalidArgument):
        list(client.list_secret_versions(request={"parent": secret, "filter": "labels.x=y"}))

    for name in (names[0], names[2]):
        client.disable_secret_version(request={"name": name})
    with pytest.raises(gexc.NotFound):  # no enabled version left
        access(client, f"{secret}/versions/latest")


def test_payload_checksum_is_verified(client):
    secret = f"{PARENT}/secrets/s2"
    client.create_secret(request={"parent": PARENT, "secret_id": "s2", "secret": {}})
    with pytest.raises(gexc.InvalidArgument):
        client.add_secret_version(request={"parent": secret, "payload": {"data": b"abc", "data_crc32c": 1}})
    version = client.add_secret_version(
        request={"parent": secret, "payload": {"data": b"abc", "data_crc32c": crc32c(b"abc")}})
    assert version.client_specified_payload_checksum
    with pytest.raises(gexc.InvalidArgument):
        add(client, secret, b"x" * (64 * 1024 + 1))


def token(n: int) -> StoredToken:
    return StoredToken(f"{TOKEN}-{n}", expires_at=1_800_086_400.0 + n, issued_at=1_800_000_000.0 + n)


def test_token_store_creates_the_secret_and_keeps_only_the_newest_enabled(server, client):
    store = SecretManagerTokenStore(client, PROJECT, "kis-access-token")
    assert store.read() is None
    store.write(token(1))
    assert store.read() == token(1)
    store.write(token(2))
    store.write(token(3))
    assert store.read() == token(3)
    assert enabled_numbers(client, store.secret) == [3]

    other_instance = SecretManagerTokenStore(insecure_client(server.address), PROJECT, "kis-access-token")
    assert other_instance.read() == token(3)


def test_a_concurrent_newer_version_is_not_disabled(client):
    store = SecretManagerTokenStore(client, PROJECT, "kis-access-token")
    store.write(token(1))
    mine = add(client, store.secret, token(2).to_json().encode())  # this writer added v2 ...
    newer = add(client, store.secret, token(3).to_json().encode())  # ... another writer v3 meanwhile
    store._disable_older(version_number(mine.name))
    assert enabled_numbers(client, store.secret) == [version_number(newer.name), version_number(mine.name)]
    assert store.read() == token(3)


def test_token_store_without_create_missing_reports_not_found(client):
    store = SecretManagerTokenStore(client, PROJECT, "absent", create_missing=False)
    with pytest.raises(gexc.NotFound):
        store.write(token(1))


def test_unreadable_version_reads_as_no_token_without_leaking(client, caplog):
    store = SecretManagerTokenStore(client, PROJECT, "kis-access-token")
    store.write(token(1))
    add(client, store.secret, f"not json {TOKEN}".encode())
    with caplog.at_level(logging.DEBUG):
        assert store.read() is None
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(store)


def test_token_store_from_settings_secretmanager(client):
    settings = load_settings({}, token_store="secretmanager://kis-token-paper", gcp_project=PROJECT)
    store = token_store_from_settings(settings, secret_client=client)
    assert isinstance(store, SecretManagerTokenStore)
    assert store.secret == f"{PARENT}/secrets/kis-token-paper"
    store.write(token(5))
    assert store.read() == token(5)
    default_id = token_store_from_settings(load_settings({}, token_store="secretmanager://", gcp_project=PROJECT),
                                           secret_client=client)
    assert default_id.secret == f"{PARENT}/secrets/kis-access-token"
    with pytest.raises(ValueError, match="GCP_PROJECT"):
        token_store_from_settings(load_settings({}, token_store="secretmanager://x"), secret_client=client)


def test_server_listens_on_the_port_asked_for(port):
    with LocalSecretManager(port=port) as manager:
        assert manager.address == f"127.0.0.1:{port}"
        client = insecure_client(manager.address)
        client.create_secret(request={"parent": PARENT, "secret_id": "a", "secret": {}})
        assert client.get_secret(request={"name": f"{PARENT}/secrets/a"}).name == f"{PARENT}/secrets/a"
