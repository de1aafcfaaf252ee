"""The config of the customer's history (docs/customer360.md): `[[events]]`, `[[traits]]`,
`[effort]` and `[[life_events]]`; documented in docs/config.md with the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipelines.config.base import _NAME, Constant, FileConfig, _Strict
from pipelines.config.privacy import ConsentColumns

ColumnOrConstant = str | Constant


class EventLink(_Strict):
    """How an event finds its customer: a source's record id, or an identifier's value."""

    source: str | None = Field(None, pattern=_NAME, description="A [[sources]] name whose record id the event names.")
    record_id: str | None = Field(None, description="The event column holding that source's record id.")
    identifier: str | None = Field(None, pattern=_NAME, description="An identifier kind (email, phone or a configured one).")
    column: str | None = Field(None, description="The event column holding that identifier's value.")

    @model_validator(mode="after")
    def _one_way(self) -> EventLink:
        by_record = self.source is not None or self.record_id is not None
        by_identifier = self.identifier is not None or self.column is not None
        if by_record == by_identifier:
            raise ValueError("give either source and record_id, or identifier and column")
        if by_record and (self.source is None or self.record_id is None):
            raise ValueError("a link by record needs both source and record_id")
        if by_identifier and (self.identifier is None or self.column is None):
            raise ValueError("a link by identifier needs both identifier and column")
        return self


class EventSourceConfig(FileConfig):
    name: Annotated[str, Field(pattern=_NAME, description="Unique event source name, [a-z0-9_]+.")]
    path: Path = Field(description="Event file; format from the extension, as for [[sources]].")
    id: str = Field(description="Column holding the event's id in its system; (name, id) is unique.")
    timestamp: str = Field(description="Column with the time the event occurred.")
    date_format: str | None = Field(None, description="strptime format of the timestamp; default: ISO and common formats are detected.")
    type: ColumnOrConstant = Field(description='What happened: a column, or { value = "..." } for every event of the file.')
    channel: ColumnOrConstant | None = Field(
        None, description="Where it happened (web, app, phone, chat, email, store): a column or a constant."
    )
    topic: str | None = Field(None, description="Column: what it was about (repeat contacts are contacts on one topic).")
    department: str | None = Field(None, description="Column: who handled it (a transfer is a change of department within one topic).")
    amount: str | None = Field(None, description="Column with a number (an order's total, a refund).")
    delimiter: str | None = Field(None, max_length=1, description="CSV delimiter; default ',' for .csv and tab for .tsv.")
    link: EventLink = Field(description="[events.link]: how an event finds its customer.")
    attributes: dict[Annotated[str, Field(pattern=_NAME)], str] = Field(
        default_factory=dict, description="Extra columns kept with each event: name = column."
    )
    consent: ConsentColumns | None = Field(
        None, description="[events.consent]: the source's events are consent statements (docs/privacy.md); which columns say what."
    )

    def columns(self) -> dict[str, str]:
        """Event columns the mapping reads (role -> column), for schema checks."""
        cols = {"id": self.id, "timestamp": self.timestamp}
        for role in ("type", "channel"):
            value = getattr(self, role)
            if isinstance(value, str):
                cols[role] = value
        cols.update({role: getattr(self, role) for role in ("topic", "department", "amount") if getattr(self, role)})
        cols["link"] = self.link.record_id or self.link.column or ""
        cols.update({f"attribute {n}": c for n, c in self.attributes.items()})
        if self.consent is not None:
            cols.update({f"consent {k}": v for k, v in self.consent.model_dump().items() if v})
        return cols


TRAIT_FUNCTIONS = ("count", "sum", "avg", "min", "max", "first", "last", "most_frequent", "count_distinct", "days_since_last")
#: The functions that read a field of the events.
TRAIT_FIELD_FUNCTIONS = frozenset({"sum", "avg", "min", "max", "first", "last", "most_frequent", "count_distinct"})
#: Fields of an event a trait or a filter may read besides its attributes.
EVENT_FIELDS = ("type", "channel", "topic", "department", "amount", "event_id")


class TraitFilter(_Strict):
    type: list[str] | None = Field(None, min_length=1, description="Only events of these types.")
    channel: list[str] | None = Field(None, min_length=1, description="Only events through these channels.")
    topic: list[str] | None = Field(None, min_length=1, description="Only events on these topics.")
    department: list[str] | None = Field(None, min_length=1, description="Only events handled by these departments.")


class TraitConfig(_Strict):
    name: Annotated[str, Field(pattern=_NAME, description="Unique trait name, [a-z0-9_]+.")]
    function: Literal["count", "sum", "avg", "min", "max", "first", "last", "most_frequent", "count_distinct", "days_since_last"] = Field(
        description="How the events become one value."
    )
    events: list[Annotated[str, Field(pattern=_NAME)]] = Field(min_length=1, description="Event source names the trait reads.")
    field: str | None = Field(
        None,
        description="The event field or attribute the function reads (sum, avg, min, max, first, last, most_frequent, count_distinct).",
    )
    window_days: int | None = Field(None, ge=1, description="Only events of the last this many days.")
    where: TraitFilter = Field(default_factory=TraitFilter, description="Structured filters: { type = [...], channel = [...] }.")

    @model_validator(mode="after")
    def _field_when_needed(self) -> TraitConfig:
        if self.function in TRAIT_FIELD_FUNCTIONS and not self.field:
            raise ValueError(f"function {self.function!r} needs a field")
        if self.function not in TRAIT_FIELD_FUNCTIONS and self.field:
            raise ValueError(f"function {self.function!r} takes no field")
        return self


class EffortConfig(_Strict):
    repeat_days: int = Field(7, ge=1, description="A contact on the same topic as an earlier one within this many days is a repeat.")
    transfer_minutes: int = Field(
        15,
        ge=1,
        description="A contact whose department differs from the one before it on the topic within this many minutes is a transfer.",
    )
    contact_types: list[str] = Field(default_factory=lambda: ["contact"], min_length=1, description="Event types that are contacts.")
    ces_attribute: str = Field("ces", pattern=_NAME, description="The event attribute holding a customer effort score (1-7) answer.")


LifeEventKind = Literal["moved", "name_changed", "new_dependant", "bereavement", "age_milestone"]


class LifeEventConfig(_Strict):
    kind: LifeEventKind = Field(description="moved, name_changed, new_dependant, bereavement or age_milestone.")
    types: list[str] = Field(default_factory=list, description="Event types that announce it (new_dependant, bereavement).")
    topics: list[str] = Field(default_factory=list, description="Event topics that announce it (new_dependant, bereavement).")
    ages: list[int] = Field(default_factory=list, description="Birthdays that are milestones (age_milestone), e.g. [18, 67].")
    expires_days: int = Field(365, ge=1, description="Days after it occurred that it stops being shown.")
    shareable: bool = Field(False, description="Whether the personalization role sees this kind.")

    @model_validator(mode="after")
    def _evidence(self) -> LifeEventConfig:
        if self.kind in ("new_dependant", "bereavement") and not (self.types or self.topics):
            raise ValueError(f"{self.kind} needs types or topics that announce it")
        if self.kind == "age_milestone" and not self.ages:
            raise ValueError("age_milestone needs ages")
        return self
