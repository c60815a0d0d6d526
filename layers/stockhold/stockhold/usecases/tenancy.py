"""Stores and their API keys. Keys are stored as SHA-256 hashes, never in clear.

A key is 32 random bytes (base64url), so an unsalted hash cannot be brute-forced;
the hash is the table key, which makes the authorizer's lookup one GetItem.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from stockhold.data.repositories import TenancyRepository
from stockhold.domain.errors import ValidationFailed
from stockhold.domain.models import Role

STORE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class Principal:
    store_id: str
    role: Role
    key_id: str | None = None  # the first 8 hex digits of the key's hash: names the key in logs and the audit trail


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key(role: Role) -> str:
    prefix = "sh_admin_" if role is Role.ADMIN else "sh_front_"
    return prefix + secrets.token_urlsafe(32)


class Tenancy:
    def __init__(self, repo: TenancyRepository) -> None:
        self._repo = repo

    def authenticate(self, api_key: str) -> Principal | None:
        if not api_key or len(api_key) > 512:
            return None
        digest = hash_key(api_key)
        item = self._repo.api_key(digest)
        if item is None or item.get("revoked"):
            return None
        return Principal(store_id=item["storeId"], role=Role(item["role"]), key_id=digest[:8])

    def create_store(self, store_id: str, name: str | None, now_ms: int) -> bool:
        """Create the store record; False if it already existed (that is fine)."""
        if not STORE_ID.match(store_id):
            raise ValidationFailed("a store id is 1-63 lowercase letters, digits or '-'", {"storeId": store_id})
        return self._repo.put_store(store_id, {"name": name or store_id, "createdAt": now_ms})

    def add_key(
        self, store_id: str, role: Role, now_ms: int, api_key: str | None = None, label: str | None = None
    ) -> str:
        """Register a key (a new random one unless given) and return it in clear, once."""
        key = api_key or new_api_key(role)
        digest = hash_key(key)
        self._repo.put_api_key(
            digest,
            {
                "storeId": store_id,
                "role": role.value,
                "label": label,
                "keyPrefix": key[:12],
                "createdAt": now_ms,
            },
        )
        return key

    def revoke_key(self, api_key: str) -> bool:
        """Revoke a key (given in clear; only its hash is looked up). False: no such key."""
        return self._repo.revoke_api_key(hash_key(api_key))
