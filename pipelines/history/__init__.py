"""Remembering: the customer's events across channels (attached to source records, so
they follow every merge, split and undo) and what is derived from them: traits, effort
signals and life events. Design: docs/customer360.md."""
