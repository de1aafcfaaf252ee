"""`unify.toml`: declared once here (name, default, help), validated strictly, and
documented in docs/config.md (a test fails when a key is missing there)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from pipelines.config.base import _NAME, SOURCE_FORMATS, SURVIVORSHIP_RULES, Constant, FileConfig, _Strict
from pipelines.config.history import (
    EVENT_FIELDS,
    TRAIT_FIELD_FUNCTIONS,
    TRAIT_FUNCTIONS,
    EffortConfig,
    EventLink,
    EventSourceConfig,
    LifeEventConfig,
    LifeEventKind,
    TraitConfig,
    TraitFilter,
)
from pipelines.config.privacy import (
    CONSENT_STATUSES,
    UNCONDITIONAL_BASES,
    ConsentColumns,
    LegalBasis,
    PurposeConfig,
    RoleName,
    RolePolicy,
    check_purposes,
)
from profiles.errors import ConfigError
from profiles.model import BUILTIN_IDENTIFIER_KINDS, CANONICAL_FIELDS


class StoreConfig(_Strict):
    path: Path = Field(Path("unify.duckdb"), description="DuckDB store file (relative to the config file).")
    memory_limit: str | None = Field(None, description="DuckDB memory limit for runs, e.g. '6GB'; default: DuckDB's (80% of RAM).")
    threads: int | None = Field(None, ge=1, description="DuckDB worker threads; default: all cores.")
    checkpoint_wal: str = Field(
        "256MB",
        pattern=r"^[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|KiB|MiB|GiB)$",
        description="For the server: the write-ahead log size at which a commit also checkpoints "
        "the store (DuckDB's default is 16MB). A checkpoint stops the world while it writes the changed tables and "
        "index parts (over a second at 1M records), so the server checkpoints when idle instead and this is the backstop.",
    )
    compress: bool = Field(
        False,
        description="Compress the store's tables: about a third of the disk, but runs write them ~40% slower "
        "and reads by key (API lookups, live ingest) take ~1.5x as long.",
    )


Veto = Literal["date_of_birth", "first_name"]
VETOES: tuple[Veto, ...] = ("date_of_birth", "first_name")


class RunConfig(_Strict):
    max_shrink: float = Field(
        0.2,
        ge=0,
        le=1,
        description="A batch run refuses to publish when a source has this share fewer accepted records than in the "
        "published run, or none at all (a truncated export must not delete a silo's customers); "
        "`unify run --accept-shrink SOURCE` publishes anyway.",
    )


class MatchingConfig(_Strict):
    backend: Literal["duckdb", "spark"] = Field("duckdb", description="Linkage backend: 'duckdb' (one machine) or 'spark'.")
    match_threshold: float = Field(0.95, gt=0, lt=1, description="Match probability at or above which two records are one profile.")
    review_threshold: float = Field(0.60, gt=0, lt=1, description="Pairs between this and match_threshold go to the steward review queue.")
    model: Path = Field(Path("unify-model.json"), description="Trained model (splink JSON); trained and saved when missing.")
    default_country: str = Field(
        "NL", pattern=r"^[A-Z]{2}$", description="Country assumed for phone numbers and postcodes without one (ISO 3166 alpha-2)."
    )
    seed: int = Field(42, description="Seed for the random sampling in training, for reproducible models.")
    u_max_pairs: int = Field(10_000_000, ge=10_000, description="Random pairs sampled to estimate u-probabilities.")
    em_max_pairs: int = Field(2_000_000, ge=10_000, description="Cap on pairs per EM training session (memory and time bound).")
    min_labels: int = Field(
        20, ge=1, description="Steward 'same' decisions on this run's records needed before training estimates m-probabilities from them."
    )
    vetoes: list[Veto] = Field(
        default_factory=lambda: list(VETOES),
        description="Conflicts that keep two records apart whatever their score: birth dates that differ by more than a typo, clearly different given names.",
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> MatchingConfig:
        if self.review_threshold >= self.match_threshold:
            raise ValueError("review_threshold must be below match_threshold")
        return self


CanonicalField = Literal[
    "first_name",
    "middle_name",
    "last_name",
    "full_name",
    "gender",
    "date_of_birth",
    "email",
    "phone",
    "street",
    "house_number",
    "address_line2",
    "postcode",
    "city",
    "region",
    "country",
]


class SourceConfig(FileConfig):
    name: Annotated[str, Field(pattern=_NAME, description="Unique source name, [a-z0-9_]+.")]
    path: Path = Field(description="Source file; format from the extension (.csv .tsv .parquet .json .ndjson).")
    id: str = Field(description="Column holding the source's own record id.")
    trust: int = Field(1, description="Survivorship: a higher trust wins.")
    updated_at: str | None = Field(None, description="Column with the record's last update time (recency for survivorship).")
    updated_at_format: str | None = Field(None, description="strptime format of updated_at; default: ISO and common formats are detected.")
    date_format: str | None = Field(
        None, description="strptime format of date fields; default: detected from the values (ISO and common formats)."
    )
    delimiter: str | None = Field(None, max_length=1, description="CSV delimiter; default ',' for .csv and tab for .tsv.")
    fields: dict[CanonicalField, str | Constant] = Field(description='Canonical field = source column, or { value = "..." }.')
    identifiers: dict[Annotated[str, Field(pattern=_NAME)], str] = Field(
        default_factory=dict, description='Exact identifiers: name = column (e.g. customer_number = "klantnummer").'
    )

    @field_validator("identifiers")
    @classmethod
    def _no_builtin_identifier_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name in ("email", "phone", "record"):
                raise ValueError(f"identifier name {name!r} is reserved")
        return value

    def columns(self) -> dict[str, str]:
        """Source columns the mapping reads (role -> column), for schema checks."""
        cols = {"id": self.id}
        if self.updated_at:
            cols["updated_at"] = self.updated_at
        cols.update({f: c for f, c in self.fields.items() if isinstance(c, str)})
        cols.update({f"identifier {n}": c for n, c in self.identifiers.items()})
        return cols


class SurvivorshipConfig(_Strict):
    default: Literal["trust", "recent", "frequent"] = Field(
        "trust",
        description="Rule for fields without one: trust (then recent, then frequent), recent (then trust, frequent) or frequent (then trust, recent).",
    )
    fields: dict[CanonicalField | Literal["address"], Literal["trust", "recent", "frequent"]] = Field(
        default_factory=dict, description="Rule per golden field; 'address' sets the rule of the address, which survives as one unit."
    )


class ApiKey(_Strict):
    role: Literal["agent", "personalization", "steward", "admin"] = Field(description="What the key may see and do.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the key; the key itself is never stored.")
    name: str | None = Field(None, description="Who holds the key (written to the audit log instead of the key).")


class ApiConfig(_Strict):
    keys: list[ApiKey] = Field(
        default_factory=list, description='[[api.keys]] tables; UNIFY_API_KEYS="role=KEY,..." adds keys for development and tests.'
    )
    max_depth: int = Field(8, ge=2, description="Deepest nesting a query may have.")
    max_tokens: int = Field(2000, ge=100, description="Most tokens a query document may have.")
    max_aliases: int = Field(15, ge=1, description="Most aliases a query may use.")
    max_fields: int = Field(
        500, ge=20, description="Most fields a query may select, a fragment counted each time it is spread (the demo's card selects ~60)."
    )
    max_body_bytes: int = Field(65_536, ge=1024, description="Largest request body; larger gets HTTP 413.")
    resolver_timeout: float = Field(
        2.0,
        gt=0,
        description="Seconds a request may take before it fails with a TIMEOUT error; a mutation whose write has committed answers with its outcome instead, however late.",
    )
    development: bool = Field(
        False,
        description="Enables introspection, field suggestions and the demo keys (off in production); GraphiQL needs `unify serve --dev`.",
    )
    roles: dict[RoleName, RolePolicy] = Field(
        default_factory=dict, description="[api.roles.NAME]: what each role reads for (purposes = [...]; docs/privacy.md)."
    )


class Config(_Strict):
    store: StoreConfig = Field(default_factory=StoreConfig, description="Where the store lives.")
    run: RunConfig = Field(default_factory=RunConfig, description="Guards of batch runs.")
    matching: MatchingConfig = Field(default_factory=MatchingConfig, description="Linkage model and thresholds.")
    survivorship: SurvivorshipConfig = Field(default_factory=SurvivorshipConfig, description="Golden record rules.")
    api: ApiConfig = Field(default_factory=ApiConfig, description="The GraphQL API: keys and limits.")
    sources: list[SourceConfig] = Field(min_length=1, description="One [[sources]] block per source system.")
    events: list[EventSourceConfig] = Field(
        default_factory=list, description="One [[events]] block per event source (orders, calls, chats, ...)."
    )
    traits: list[TraitConfig] = Field(default_factory=list, description="[[traits]]: values derived from a profile's events.")
    effort: EffortConfig = Field(default_factory=EffortConfig, description="Windows of the effort signals.")
    life_events: list[LifeEventConfig] = Field(
        default_factory=list, description="[[life_events]]: the moments that matter a profile shows."
    )
    purposes: list[PurposeConfig] = Field(
        default_factory=list, description="[[purposes]]: what the data is used for, on which legal basis (docs/privacy.md)."
    )
    base_dir: Path = Field(Path("."), exclude=True, description="Directory of the config file (set by load_config).")

    @model_validator(mode="after")
    def _unique_sources(self) -> Config:
        seen: set[str] = set()
        for source in self.sources:
            if source.name in seen:
                raise ValueError(f"source name {source.name!r} is used twice")
            seen.add(source.name)
        return self

    @model_validator(mode="after")
    def _events_refer_to_what_exists(self) -> Config:
        sources = {s.name for s in self.sources}
        kinds = set(self.identifier_kinds())
        names: set[str] = set()
        for event in self.events:
            if event.name in names:
                raise ValueError(f"event source name {event.name!r} is used twice")
            names.add(event.name)
            if event.link.source is not None and event.link.source not in sources:
                raise ValueError(f"events {event.name!r}: link.source {event.link.source!r} is not a [[sources]] name")
            if event.link.identifier is not None and event.link.identifier not in kinds:
                raise ValueError(
                    f"events {event.name!r}: link.identifier {event.link.identifier!r} is not an identifier kind ({', '.join(sorted(kinds))})"
                )
        traits: set[str] = set()
        for trait in self.traits:
            if trait.name in traits:
                raise ValueError(f"trait name {trait.name!r} is used twice")
            traits.add(trait.name)
            for name in trait.events:
                if name not in names:
                    raise ValueError(f"trait {trait.name!r}: events {name!r} is not an [[events]] name")
            known = {*EVENT_FIELDS, *(a for e in self.events if e.name in trait.events for a in e.attributes)}
            if trait.field is not None and trait.field not in known:
                raise ValueError(
                    f"trait {trait.name!r}: field {trait.field!r} is neither an event field ({', '.join(EVENT_FIELDS)}) nor an attribute of its events"
                )
        check_purposes(self.purposes, {f"api.roles.{role}": list(policy.purposes or []) for role, policy in self.api.roles.items()})
        if "consent" in names:
            raise ValueError("event source name 'consent' is kept for the statements recordConsent makes")
        if any(e.consent is not None for e in self.events) and not self.purposes:
            raise ValueError("an [[events]] source with [events.consent] needs [[purposes]] to name")
        kinds_seen: set[str] = set()
        for rule in self.life_events:
            if rule.kind in kinds_seen:
                raise ValueError(f"life event kind {rule.kind!r} is configured twice")
            kinds_seen.add(rule.kind)
        return self

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.base_dir / path)

    def stewardship_settings(self) -> dict[str, Any]:
        """The keyword arguments of ``profiles.store.Stewardship`` (besides the store)."""
        return {
            "match_threshold": self.matching.match_threshold,
            "rules": {str(k): str(v) for k, v in self.survivorship.fields.items()},
            "default_rule": self.survivorship.default,
        }

    @property
    def store_path(self) -> Path:
        return self.resolve(self.store.path)

    @property
    def model_path(self) -> Path:
        return self.resolve(self.matching.model)

    def identifier_kinds(self) -> list[str]:
        """Every identifier kind a record can carry: email, phone and the configured ones."""
        return sorted({*BUILTIN_IDENTIFIER_KINDS, *(n for source in self.sources for n in source.identifiers)})

    def serving_differences(self, served: Config) -> list[str]:
        """The sections of this config that differ from ``served``'s, among those a server
        serves with (all but ``api``, its own, and ``run``, a batch run's guards): a run or
        an ingest with such a config would publish what the server's live path and API do
        not know (a source, a comparison, a trait)."""
        mine, theirs = self.model_dump(exclude={"api", "run"}), served.model_dump(exclude={"api", "run"})
        return [section for section in mine if mine[section] != theirs.get(section)]

    def shared_identifiers(self) -> list[str]:
        """Identifier names mapped by more than one source: only those can link records."""
        counts: dict[str, int] = {}
        for source in self.sources:
            for name in source.identifiers:
                counts[name] = counts.get(name, 0) + 1
        return sorted(n for n, c in counts.items() if c > 1)


def load_config(path: Path | str) -> Config:
    """Read and validate a config file; errors name the key and its line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} not found (run `unify demo` to create an example)")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    data["base_dir"] = path.parent.resolve()
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(p for p in first["loc"] if p != "[key]")  # dict keys are reported as "<key>.[key]"
        key = ".".join(str(p) for p in loc if not isinstance(p, int)) or "(top level)"
        line = _line_of(text, loc)
        where = f" (line {line})" if line else ""
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "literal_error" and loc and loc[-1] not in ("backend", "default"):
            message = f"unknown key; expected one of {', '.join(CANONICAL_FIELDS)}" if "fields" in loc else message
        raise ConfigError(f"{path}: {key}{where}: {message}") from exc


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of the key at ``loc`` (tomllib keeps no positions)."""
    keys = [p for p in loc if isinstance(p, str)]
    if not keys:
        return None
    index = next((p for p in loc if isinstance(p, int)), None)
    table_path = keys[:-1]
    target = keys[-1]
    current: list[str] = []
    array_counts: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?$", line)
        if header:
            current = [part.strip() for part in header.group(1).split(".")]
            if line.startswith("[["):
                array_counts[current[0]] = array_counts.get(current[0], -1) + 1
            continue
        in_right_item = index is None or array_counts.get(current[0] if current else "", -1) == index
        key = re.match(r'^"?([A-Za-z0-9_\-]+)"?\s*=', line)
        if key and key.group(1) == target and current == table_path and in_right_item:
            return number
        if not keys[:-1] and not current and key and key.group(1) == target:
            return number
    if table_path:
        # the key may be a table header itself, e.g. an unknown [sources.extra]
        for number, raw in enumerate(text.splitlines(), start=1):
            if re.match(rf"^\[\[?\s*{re.escape('.'.join(keys))}\s*\]\]?", raw.strip()):
                return number
    return None


__all__ = [
    "CONSENT_STATUSES",
    "EVENT_FIELDS",
    "SOURCE_FORMATS",
    "SURVIVORSHIP_RULES",
    "TRAIT_FIELD_FUNCTIONS",
    "TRAIT_FUNCTIONS",
    "UNCONDITIONAL_BASES",
    "ApiConfig",
    "ApiKey",
    "CanonicalField",
    "Config",
    "ConsentColumns",
    "Constant",
    "EffortConfig",
    "EventLink",
    "EventSourceConfig",
    "LegalBasis",
    "LifeEventConfig",
    "LifeEventKind",
    "MatchingConfig",
    "PurposeConfig",
    "RoleName",
    "RolePolicy",
    "RunConfig",
    "SourceConfig",
    "StoreConfig",
    "SurvivorshipConfig",
    "TraitConfig",
    "TraitFilter",
    "Veto",
    "load_config",
]
