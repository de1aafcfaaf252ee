"""API keys and roles. Keys are kept only as SHA-256 digests; a request names its key in
``Authorization: Bearer <key>`` and acts with that key's role."""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from dataclasses import dataclass

from pipelines.config import Config
from pipelines.demo.config import demo_key_roles
from profiles.errors import ConfigError


class Role(enum.Enum):
    AGENT = "agent"  # frontends and contact center: the full profile
    PERSONALIZATION = "personalization"  # traits and a pseudonymous id, no raw contact PII
    STEWARD = "steward"  # everything, plus review and merge actions
    ADMIN = "admin"  # runs and keys

    @property
    def sees_contact_pii(self) -> bool:
        return self is not Role.PERSONALIZATION


@dataclass(frozen=True)
class Principal:
    role: Role
    actor: str  # the key's name, or a short digest of it: never the key itself


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Keyring:
    """Known key digests -> principals, from `[[api.keys]]` and ``UNIFY_API_KEYS``."""

    def __init__(self, principals: dict[str, Principal]):
        self._by_digest = principals

    @classmethod
    def from_config(cls, config: Config, environ: dict[str, str] | None = None) -> Keyring:
        principals = {key.sha256: Principal(Role(key.role), key.name or f"key:{key.sha256[:8]}") for key in config.api.keys}
        spec = (environ if environ is not None else dict(os.environ)).get("UNIFY_API_KEYS", "")
        for item in filter(None, (part.strip() for part in spec.split(","))):
            role, sep, key = item.partition("=")
            if not sep or not key or role not in {r.value for r in Role}:
                raise ConfigError(f"UNIFY_API_KEYS: expected role=KEY pairs with roles {', '.join(r.value for r in Role)}")
            d = digest(key)
            principals[d] = Principal(Role(role), f"env:{role}:{d[:8]}")
        if not config.api.development:
            demo = demo_key_roles(principals)
            if demo:
                raise ConfigError(
                    f"the published demo key of role {', '.join(demo)} is accepted, and api.development is false: "
                    "anyone who read the README could use it. Give each [[api.keys]] a key of your own "
                    "(sha256 = the hex SHA-256 of a long random key), or set development = true for a demo"
                )
        return cls(principals)

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, authorization: str | None) -> Principal | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        offered = digest(authorization[len("Bearer ") :].strip())
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, offered):
                return principal
        return None
