"""The config of privacy (docs/privacy.md): `[[purposes]]` the data is used for, the
consent columns of an `[[events]]` source whose events are consent statements, and the
purposes each API role reads for (`[api.roles.NAME]`); documented in docs/config.md."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pipelines.config.base import _NAME, _Strict

LegalBasis = Literal["consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interest"]
#: What a consent statement says; a withdrawal ends an earlier grant.
CONSENT_STATUSES = ("granted", "denied", "withdrawn")
#: The bases under which a statement of the customer cannot stop the processing.
UNCONDITIONAL_BASES = frozenset({"contract", "legal_obligation", "vital_interests", "public_task"})


class PurposeConfig(_Strict):
    name: Annotated[str, Field(pattern=_NAME, description="Unique purpose name, [a-z0-9_]+ (e.g. service, personalization, marketing).")]
    description: str = Field("", description="What the data is used for, in words a customer would understand.")
    legal_basis: LegalBasis = Field(
        description="consent (a grant is needed), legitimate_interest (allowed until the customer objects: denied or withdrawn), "
        "or contract, legal_obligation, vital_interests, public_task (statements are kept but do not stop it)."
    )
    default: Literal["granted", "denied"] | None = Field(
        None, description="The state when nothing is known: default denied for consent, granted for the other bases."
    )
    max_age_days: int | None = Field(None, ge=1, description="Days after which a grant lapses (expired) unless it is given again.")

    @property
    def default_allowed(self) -> bool:
        if self.default is not None:
            return self.default == "granted"
        return self.legal_basis != "consent"


class ConsentColumns(_Strict):
    """Marks an [[events]] source as consent statements: which columns say what."""

    purpose: str = Field(description="Column naming the purpose (a [[purposes]] name).")
    status: str = Field(description="Column with granted, denied or withdrawn.")
    source: str | None = Field(None, description="Column naming where the statement was made (default: the event source's name).")


class RolePolicy(_Strict):
    purposes: list[Annotated[str, Field(pattern=_NAME)]] | None = Field(
        None,
        description="The purposes this role reads for: a field serving none of them is withheld, and one serving a purpose "
        "that needs consent is withheld for profiles without it. Unset: the role reads every field its role allows.",
    )


RoleName = Literal["agent", "personalization", "steward", "admin"]


def check_purposes(purposes: list[PurposeConfig], named: dict[str, list[str]]) -> None:
    """Purpose names unique, and every purpose named elsewhere (``what`` -> names) declared."""
    seen: set[str] = set()
    for purpose in purposes:
        if purpose.name in seen:
            raise ValueError(f"purpose name {purpose.name!r} is used twice")
        seen.add(purpose.name)
    for what, names in named.items():
        for name in names:
            if name not in seen:
                raise ValueError(f"{what}: purpose {name!r} is not a [[purposes]] name ({', '.join(sorted(seen)) or 'none declared'})")
