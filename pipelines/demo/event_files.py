"""The demo's five event files: where each system writes what happened, in its own format.

One spec per file drives both the writer (columns, timestamp format, delimiter) and the
`[[events]]` block of the demo's unify.toml, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Const:
    """A value every event of a file has (`type = { value = "contact" }`)."""

    value: str


@dataclass(frozen=True)
class EventFile:
    name: str  # the [[events]] name
    file: str  # relative to the demo directory
    id: str
    timestamp: str
    timestamp_format: str  # strftime format the file's times are written in
    declare_format: bool  # written to the config as date_format (non-ISO formats are)
    type: str | Const
    link_column: str
    link_source: str | None = None  # link by record id of this [[sources]] name ...
    link_identifier: str | None = None  # ... or by an identifier's value
    channel: str | Const | None = None
    topic: str | None = None
    department: str | None = None
    amount: str | None = None
    delimiter: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    columns: tuple[str, ...] = ()  # the file's columns, in order
    consent: dict[str, str] = field(default_factory=dict)  # [events.consent]: purpose, status (and source) columns


ORDERS = EventFile(
    name="orders",
    file="data/orders.ndjson",
    id="orderId",
    timestamp="placedAt",
    timestamp_format="%Y-%m-%dT%H:%M:%S",
    declare_format=False,
    type="kind",  # "order" or "return"
    link_source="webshop",
    link_column="customerId",
    channel="channel",  # web, app
    topic="category",
    amount="total",
    attributes={"items": "items", "order_ref": "orderRef"},
    columns=("orderId", "customerId", "placedAt", "kind", "channel", "category", "items", "total", "orderRef"),
)

CALLS = EventFile(
    name="calls",
    file="data/calls.csv",
    id="call_id",
    timestamp="started",
    timestamp_format="%d-%m-%Y %H:%M:%S",
    declare_format=True,
    type=Const("contact"),
    link_source="contact_center",
    link_column="customer_ref",
    channel=Const("phone"),
    topic="reason",
    department="queue",
    attributes={"duration_sec": "duration_sec"},
    columns=("call_id", "started", "customer_ref", "reason", "queue", "duration_sec"),
)

MESSAGES = EventFile(
    name="messages",
    file="data/messages.tsv",
    id="message_id",
    timestamp="received",
    timestamp_format="%d/%m/%Y %H:%M",  # day first: without the declared format it reads as US dates
    declare_format=True,
    type=Const("contact"),
    link_source="contact_center",
    link_column="customer_ref",
    channel="medium",  # chat, email
    topic="subject",
    department="team",
    delimiter="\t",
    columns=("message_id", "received", "customer_ref", "medium", "subject", "team"),
)

SURVEYS = EventFile(
    name="surveys",
    file="data/surveys.csv",
    id="response_id",
    timestamp="submitted",
    timestamp_format="%d.%m.%Y %H:%M",
    declare_format=True,
    type=Const("survey"),
    link_identifier="email",
    link_column="email",  # as the customer typed it into the survey form
    topic="topic",
    delimiter=";",
    attributes={"ces": "ces_score", "touchpoint": "touchpoint"},
    columns=("response_id", "submitted", "email", "topic", "touchpoint", "ces_score"),
)

LOYALTY_TRANSACTIONS = EventFile(
    name="loyalty_transactions",
    file="data/loyalty_transactions.parquet",
    id="txn_id",
    timestamp="booked_at",
    timestamp_format="",  # a native timestamp column
    declare_format=False,
    type="txn_type",  # earn, redeem, child_added
    link_source="loyalty",
    link_column="card_number",
    channel="channel",  # store, app
    amount="amount",
    attributes={"points": "points", "store": "store_id"},
    columns=("txn_id", "card_number", "booked_at", "txn_type", "channel", "store_id", "amount", "points"),
)

CONSENTS = EventFile(
    name="consents",
    file="data/consents.csv",
    id="change_id",
    timestamp="changed_at",
    timestamp_format="%Y-%m-%d %H:%M:%S",
    declare_format=False,
    type=Const("consent"),
    link_identifier="email",
    link_column="email",  # the preference centre knows people by the address they sign in with
    channel="via",  # web, app, store
    consent={"purpose": "purpose", "status": "choice"},
    columns=("change_id", "changed_at", "email", "purpose", "choice", "via"),
)

EVENT_FILES: tuple[EventFile, ...] = (ORDERS, CALLS, MESSAGES, SURVEYS, LOYALTY_TRANSACTIONS, CONSENTS)
