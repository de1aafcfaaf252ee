"""The rules that turn raw values into comparable ones (names, dates, phones, e-mails,
addresses). Each rule has two engines that must agree: SQL over whole tables for the
batch (batch.py) and Python row by row for the live path (rows.py); the tests hold them
equal value by value."""
