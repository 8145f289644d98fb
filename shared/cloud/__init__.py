"""Adapters to Google Cloud services, each with a local counterpart for tests and the local stack.

- `firestore_breaker`: circuit-breaker state in Firestore.
- `secret_manager`: the KIS access token kept as Secret Manager versions.
- `tasks`: drain triggers on Cloud Tasks (and in-process).
- `token_store`: Redis and memory adapters of the `TokenStore` port (market.ports), chosen by URI.

Local stand-ins (development only, left out of the deploy bundle): `local_firestore` (the SDK's
Firestore emulator), `local_scheduler`, `local_tasks_server` / `local_tasks_dispatch`,
`secret_manager_server`.
"""
