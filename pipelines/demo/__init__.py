"""Synthetic siloed customer data with known ground truth: the `unify demo` data set and the linkage-accuracy fixture.

Four source systems describe overlapping persons in their own formats and noise; truth.parquet says who is who.
Five event files hold what the persons did (orders, calls, chats and e-mails, surveys, loyalty transactions);
events_truth.parquet says whose each event is, life_events_truth.parquet which life moments lie behind them.
"""

from pipelines.demo.events import EventsManifest
from pipelines.demo.generator import DemoManifest, generate

__all__ = ["DemoManifest", "EventsManifest", "generate"]
