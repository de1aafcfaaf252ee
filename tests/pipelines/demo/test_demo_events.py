"""Tests of the demo's events: the files load with the demo config's mapping (read here with
DuckDB, independently of pipelines.history), their links, their truth, realistic rates,
the life moments and their evidence, and reproducibility from the seed."""

from __future__ import annotations

import ast
import csv
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines.config import Config, Constant, EventSourceConfig, SourceConfig, load_config
from pipelines.demo import DemoManifest, generate

EVENT_FILES = ("orders", "calls", "messages", "surveys", "loyalty_transactions", "consents")
Demo = tuple[DemoManifest, duckdb.DuckDBPyConnection]


# ---- reading the files as the config maps them ----------------------------------------------


def _relation(spec: EventSourceConfig | SourceConfig, base: Path) -> str:
    """A file as text columns: CSV/TSV rows of the right width, NDJSON lines that parse, Parquet rows."""
    path = base / spec.path
    if spec.format in ("csv", "tsv"):
        delim = spec.delimiter or ("\t" if spec.format == "tsv" else ",")
        with path.open(encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh, delimiter=delim))
        columns = ", ".join(f"'{c}': 'VARCHAR'" for c in header)
        return f"read_csv('{path}', header = true, delim = '{delim}', quote = '\"', columns = {{{columns}}}, auto_detect = false, ignore_errors = true)"
    if spec.format == "ndjson":
        names = sorted(set(spec.columns().values()))
        select = ", ".join(f"json_extract_string(line, '$.{c}') AS \"{c}\"" for c in names)
        lines = f"read_csv('{path}', columns = {{'line': 'VARCHAR'}}, header = false, delim = '\x1e', quote = '', escape = '', auto_detect = false)"
        return f"(SELECT {select} FROM {lines} WHERE json_valid(line))"
    return f"read_parquet('{path}')"


def _value(column: str | Constant | None) -> str:
    if column is None:
        return "NULL::VARCHAR"
    if isinstance(column, Constant):
        return f"'{column.value}'"
    return f"nullif(trim(CAST(\"{column}\" AS VARCHAR)), '')"


def _load_events(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """``ev``: every readable row of every event file, mapped by its [[events]] block."""
    selects = []
    for e in config.events:
        parsed = f"try_strptime(ts_raw, '{e.date_format}')" if e.date_format else "NULL"
        attributes = ", ".join(f"'{n}', {_value(c)}" for n, c in e.attributes.items())
        selects.append(
            f"""SELECT '{e.name}' AS event_source, {_value(e.id)} AS event_id, ts_raw,
                       coalesce(try_cast(ts_raw AS TIMESTAMP), {parsed}) AS occurred_at,
                       {_value(e.type)} AS type, {_value(e.channel)} AS channel, {_value(e.topic)} AS topic,
                       {_value(e.department)} AS department, try_cast({_value(e.amount)} AS DOUBLE) AS amount,
                       {f"json_object({attributes})" if attributes else "NULL::JSON"} AS attributes,
                       {_value(e.link.record_id or e.link.column)} AS link, '{e.link.source or e.link.identifier}' AS link_to
                FROM (SELECT *, {_value(e.timestamp)} AS ts_raw FROM {_relation(e, config.base_dir)})"""
        )
    con.execute("CREATE TABLE ev AS " + " UNION ALL BY NAME ".join(selects))


def _load_records(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """``rec``: the accepted source records with their person and what life moments read."""
    selects = []
    for s in config.sources:
        fields: dict[str, str] = {k: v for k, v in s.fields.items() if isinstance(v, str)}

        def col(name: str, fields: dict[str, str] = fields) -> str:
            return _value(fields.get(name))

        name = col("last_name") if "last_name" in fields else col("full_name")
        selects.append(
            f"""SELECT '{s.name}:' || {_value(s.id)} AS record_key, lower(trim({col("email")})) AS email,
                       {col("postcode")} AS postcode, {col("city")} AS city, {name} AS name,
                       {col("date_of_birth")} AS dob, '{s.date_format}' AS dob_format
                FROM {_relation(s, config.base_dir)}"""
        )
    con.execute(
        "CREATE TABLE rec AS SELECT r.*, t.person_id FROM (" + " UNION ALL BY NAME ".join(selects) + ") r "
        "JOIN truth t ON t.source || ':' || t.record_id = r.record_key"
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    m = generate(tmp_path_factory.mktemp("events") / "out", records=5_000, seed=11)
    assert m.events is not None
    con = duckdb.connect()
    con.execute(f"CREATE TABLE truth AS SELECT * FROM read_parquet('{m.truth_path}')")
    con.execute(f"CREATE TABLE et AS SELECT * FROM read_parquet('{m.events.truth_path}')")
    con.execute(f"CREATE TABLE life AS SELECT * FROM read_parquet('{m.events.life_events_truth_path}')")
    con.execute(f"CREATE TABLE neg AS SELECT * FROM read_parquet('{m.events.life_event_negatives_path}')")
    config = load_config(m.config_path)
    _load_events(con, config)
    _load_records(con, config)
    return m, con


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return con.execute(sql, params or []).fetchall()


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    return _rows(con, sql, params)[0][0]


# ---- the files and the config ----------------------------------------------------------------


def test_config_has_events_traits_effort_and_life_events(demo: Demo) -> None:
    m, _ = demo
    assert m.events is not None
    config = load_config(m.config_path)
    assert [e.name for e in config.events] == list(EVENT_FILES)
    assert {e.name: config.resolve(e.path) for e in config.events} == m.events.paths
    assert {e.format for e in config.events} == {"ndjson", "csv", "tsv", "parquet"}
    assert sum(e.date_format is not None for e in config.events) >= 2  # non-ISO times, declared
    assert {e.link.source for e in config.events} >= {"webshop", "contact_center", "loyalty"}
    assert any(e.link.identifier == "email" for e in config.events)
    assert len(config.traits) >= 6
    assert {t.function for t in config.traits} >= {"count", "sum", "avg", "last", "most_frequent", "days_since_last"}
    assert {r.kind for r in config.life_events} == {"moved", "name_changed", "new_dependant", "bereavement", "age_milestone"}
    assert any(r.shareable for r in config.life_events) and not all(r.shareable for r in config.life_events)
    assert config.effort.contact_types == ["contact"] and config.effort.ces_attribute == "ces"


def test_files_load_with_the_mapping_but_the_malformed_rows(demo: Demo) -> None:
    m, con = demo
    assert m.events is not None
    good = dict(_rows(con, "SELECT event_source, count(*) FROM ev WHERE event_id IS NOT NULL AND occurred_at IS NOT NULL GROUP BY 1"))
    for name in EVENT_FILES:
        assert good[name] == m.events.rows[name] - m.events.malformed[name], name
        assert 1 <= m.events.malformed[name] <= 0.002 * m.events.rows[name] + 3, name
    # exactly the rows the truth calls malformed fail, each the way the truth says
    missing = dict(_rows(con, "SELECT event_source, count(*) FROM ev WHERE event_id IS NULL GROUP BY 1"))
    expected = dict(_rows(con, "SELECT event_source, count(*) FROM et WHERE problem = 'missing_id' GROUP BY 1"))
    assert missing == expected and set(expected) == set(EVENT_FILES)
    bad_time = _rows(con, "SELECT event_source, event_id FROM ev WHERE event_id IS NOT NULL AND occurred_at IS NULL ORDER BY ALL")
    assert bad_time == _rows(con, "SELECT event_source, event_id FROM et WHERE problem IN ('bad_time', 'no_time') ORDER BY ALL")
    unreadable = _rows(
        con, "SELECT event_source, event_id FROM et WHERE problem IN ('extra_field', 'not_json') AND event_id IN (SELECT event_id FROM ev)"
    )
    assert unreadable == []
    assert _one(con, "SELECT count(*) FROM et WHERE problem IN ('extra_field', 'not_json')") >= 4
    accepted = "SELECT event_source, event_id FROM {} WHERE {} ORDER BY ALL"
    assert _rows(con, accepted.format("ev", "event_id IS NOT NULL AND occurred_at IS NOT NULL")) == _rows(
        con, accepted.format("et", "NOT malformed")
    )


def test_values_are_what_the_config_promises(demo: Demo) -> None:
    m, con = demo
    assert m.events is not None
    until = m.events.until
    first, last = _rows(con, "SELECT min(occurred_at), max(occurred_at) FROM ev")[0]
    assert until - timedelta(days=3 * 365) <= first and last < until
    types = dict(_rows(con, "SELECT event_source, list(DISTINCT type ORDER BY type) FROM ev GROUP BY 1"))
    assert types == {
        "orders": ["order", "return"],
        "calls": ["contact"],
        "messages": ["contact"],
        "surveys": ["survey"],
        "loyalty_transactions": ["child_added", "earn", "redeem"],
        "consents": ["consent"],
    }
    channels = dict(_rows(con, "SELECT event_source, list(DISTINCT channel ORDER BY channel) FROM ev WHERE channel IS NOT NULL GROUP BY 1"))
    assert channels == {
        "orders": ["app", "web"],
        "calls": ["phone"],
        "messages": ["chat", "email"],
        "loyalty_transactions": ["app", "store"],
        "consents": ["app", "store", "web"],
    }
    assert _one(con, "SELECT count(*) FROM ev WHERE type IN ('order', 'return', 'earn', 'redeem') AND NOT amount > 0") == 0
    ces = _rows(con, "SELECT DISTINCT (attributes->>'ces')::INT FROM ev WHERE type = 'survey' ORDER BY 1")
    assert [c for (c,) in ces] == list(range(1, 8))
    departments = {d for (d,) in _rows(con, "SELECT DISTINCT department FROM ev WHERE type = 'contact'")}
    assert departments >= {"billing", "delivery", "technical", "customer_care"}
    # times in non-ISO formats only parse with the declared format
    declared = load_config(m.config_path)
    for e in declared.events:
        if e.date_format:
            assert _one(con, "SELECT count(try_cast(ts_raw AS TIMESTAMP)) FROM ev WHERE event_source = ?", [e.name]) == 0, e.name
    # a return names the order it returns, of the same customer and earlier
    orphans = _one(
        con,
        """SELECT count(*) FROM ev r JOIN et USING (event_source, event_id)
           LEFT JOIN ev o ON o.event_source = 'orders' AND o.event_id = r.attributes->>'order_ref'
           WHERE r.type = 'return' AND r.occurred_at IS NOT NULL AND et.linked
             AND (o.event_id IS NULL OR o.occurred_at >= r.occurred_at
                  OR o.link <> r.link AND o.event_id NOT IN (SELECT event_id FROM et WHERE NOT linked))""",
    )
    assert orphans <= 3  # the order may be one of the few malformed rows


def test_ids_are_unique_per_file(demo: Demo) -> None:
    _, con = demo
    assert _rows(con, "SELECT event_source, event_id FROM ev WHERE event_id IS NOT NULL GROUP BY ALL HAVING count(*) > 1") == []
    assert _rows(con, "SELECT event_source, event_id FROM et GROUP BY ALL HAVING count(*) > 1") == []


def test_links_name_existing_records_but_the_deliberate_unknown_ones(demo: Demo) -> None:
    _, con = demo
    con.execute(
        """CREATE TEMP TABLE linked AS SELECT ev.event_source, ev.event_id, ev.link, ev.link_to, et.person_id, et.linked
           FROM ev JOIN et USING (event_source, event_id)"""
    )
    by_record = "link_to IN ('webshop', 'contact_center', 'loyalty')"
    wrong = _one(
        con,
        f"""SELECT count(*) FROM linked l LEFT JOIN truth t ON t.source = l.link_to AND t.record_id = l.link
            WHERE {by_record} AND (l.linked <> (t.person_id IS NOT NULL) OR t.person_id <> l.person_id)""",
    )
    assert wrong == 0
    # a survey's address, standardized, is on a record of its person and of nobody else's
    owners = """SELECT l.event_id, l.linked, l.person_id, list(DISTINCT r.person_id) FILTER (WHERE r.person_id IS NOT NULL) AS owners
                FROM linked l LEFT JOIN rec r ON r.email = lower(trim(l.link)) WHERE l.link_to = 'email' GROUP BY ALL"""
    for event_id, linked, person, found in _rows(con, owners):
        assert (found or []) == ([person] if linked else []), event_id
    unknown, total = _rows(con, "SELECT count(*) FILTER (WHERE NOT linked), count(*) FROM et")[0]
    assert 0.002 * total <= unknown <= 0.01 * total
    assert _one(con, "SELECT count(DISTINCT event_source) FROM et WHERE NOT linked") == len(EVENT_FILES)
    assert _one(con, "SELECT count(*) FROM et WHERE person_id NOT IN (SELECT person_id FROM truth)") == 0


# ---- rates -----------------------------------------------------------------------------------


def _contacts(con: duckdb.DuckDBPyConnection) -> None:
    """``c``: the readable contacts with the contact before them on the same topic (the person's)."""
    con.execute(
        """CREATE TEMP TABLE IF NOT EXISTS c AS
           SELECT ev.*, et.person_id, et.role, et.episode,
                  lag(occurred_at) OVER w AS prev_at, lag(department) OVER w AS prev_department, lag(channel) OVER w AS prev_channel
           FROM ev JOIN et USING (event_source, event_id)
           WHERE ev.type = 'contact' AND NOT et.malformed
           WINDOW w AS (PARTITION BY et.person_id, ev.topic ORDER BY occurred_at, event_id)"""
    )


def test_events_per_person_and_mix(demo: Demo) -> None:
    m, con = demo
    per_person = _one(con, "SELECT count(*) FROM et") / m.persons
    assert 8.5 <= per_person <= 11.5
    share = dict(_rows(con, "SELECT event_source, count(*) / (SELECT count(*) FROM et) FROM et GROUP BY 1"))
    assert all(share[name] > 0.02 for name in EVENT_FILES), share
    returns = _one(con, "SELECT count(*) FILTER (WHERE type = 'return') / count(*) FROM ev WHERE event_source = 'orders'")
    assert 0.06 <= returns <= 0.13


def test_repeat_contacts_channel_switches_and_transfers(demo: Demo) -> None:
    _, con = demo
    _contacts(con)
    contacts, repeats, transfers, switches = _rows(
        con,
        """SELECT count(*),
                  count(*) FILTER (WHERE occurred_at - prev_at <= INTERVAL 7 DAY AND NOT transfer),
                  count(*) FILTER (WHERE transfer),
                  count(*) FILTER (WHERE occurred_at - prev_at <= INTERVAL 7 DAY AND NOT transfer AND channel <> prev_channel)
           FROM (SELECT *, coalesce(occurred_at - prev_at <= INTERVAL 15 MINUTE AND department <> prev_department, false) AS transfer FROM c)""",
    )[0]
    assert contacts > 2_000
    assert 0.18 <= repeats / contacts <= 0.30, repeats / contacts  # issue: 20-30% repeat a topic within 7 days
    assert 0.25 <= (repeats + transfers) / contacts <= 0.35  # counting transfers as repeats too
    assert 0.25 <= switches / repeats <= 0.45, switches / repeats
    assert 0.04 <= transfers / contacts <= 0.12
    # what the data shows is what was generated
    assert abs(_one(con, "SELECT count(*) FROM c WHERE role = 'transfer'") - transfers) <= 3  # a broken first leg hides one
    # transfers happen on calls and chats, never within the same department
    assert {ch for (ch,) in _rows(con, "SELECT DISTINCT channel FROM c WHERE role = 'transfer'")} == {"phone", "chat"}


def test_effort_shows_in_the_survey_scores(demo: Demo) -> None:
    _, con = demo
    _contacts(con)
    scores = dict(
        _rows(
            con,
            """SELECT e.contacts > 1, avg((s.attributes->>'ces')::INT)
               FROM (SELECT episode, person_id, count(*) AS contacts FROM c GROUP BY ALL) e
               JOIN et t ON t.episode = e.episode AND t.event_source = 'surveys'
               JOIN ev s ON s.event_source = 'surveys' AND s.event_id = t.event_id
               GROUP BY 1""",
        )
    )
    assert scores[True] < scores[False] - 0.6


# ---- life moments ----------------------------------------------------------------------------


def test_life_moments_of_every_kind(demo: Demo) -> None:
    m, con = demo
    assert m.events is not None
    counts = dict(_rows(con, "SELECT kind, count(*) FROM life GROUP BY 1"))
    assert counts == m.events.moments
    assert counts["moved"] >= 30 and counts["name_changed"] >= 15 and counts["age_milestone"] >= 50
    assert counts["new_dependant"] >= 20 and counts["bereavement"] >= 5
    assert _one(con, "SELECT count(*) FROM life WHERE person_id NOT IN (SELECT person_id FROM truth)") == 0
    assert _one(con, "SELECT count(*) FROM life WHERE evidenced_at < occurred_at") == 0


def _keys(evidence: str) -> list[str]:
    return re.findall(r"\b(?:crm|webshop|contact_center|loyalty):[\w-]+", evidence)


def test_moves_and_name_changes_show_in_two_records(demo: Demo) -> None:
    _, con = demo
    rows = _rows(con, "SELECT person_id, kind, evidence FROM life WHERE kind IN ('moved', 'name_changed')")
    records = {r[0]: r[1:] for r in _rows(con, "SELECT record_key, person_id, postcode, city, name FROM rec")}
    for person, kind, evidence in rows:
        old, new = (records[k] for k in _keys(evidence))
        assert old[0] == new[0] == person, evidence
        if kind == "moved":
            area = [re.sub(r"\D", "", r[1] or "")[:4] or None for r in (old, new)]
            city = [(r[2] or "").upper() or None for r in (old, new)]
            assert (None not in area and area[0] != area[1]) or (None not in city and city[0] != city[1]), evidence
        else:
            assert old[3].lower() != new[3].lower(), evidence


def test_births_and_bereavements_are_announced_by_linked_events(demo: Demo) -> None:
    _, con = demo
    rows = _rows(
        con,
        """SELECT l.kind, l.person_id, t.person_id, t.linked, t.malformed, e.type, e.topic, e.occurred_at, l.evidenced_at
           FROM life l
           JOIN et t ON t.event_source || ':' || t.event_id = split_part(l.evidence, ' ', 1)
           JOIN ev e USING (event_source, event_id)
           WHERE l.kind IN ('new_dependant', 'bereavement')""",
    )
    assert len(rows) == _one(con, "SELECT count(*) FROM life WHERE kind IN ('new_dependant', 'bereavement')")
    for kind, person, owner, linked, malformed, type_, topic, at, evidenced in rows:
        assert person == owner and linked and not malformed
        assert at == evidenced
        if kind == "new_dependant":
            assert type_ == "child_added" or topic == "add_dependant"
        else:
            assert topic == "bereavement"
    assert {r[5] for r in rows if r[0] == "new_dependant"} == {"child_added", "contact"}  # a loyalty change or a call


def test_age_milestones_follow_from_a_shown_birth_date(demo: Demo) -> None:
    _, con = demo
    dob = {k: (p, d, f) for k, p, d, f in _rows(con, "SELECT record_key, person_id, dob, dob_format FROM rec")}
    for person, occurred, evidence in _rows(con, "SELECT person_id, occurred_at, evidence FROM life WHERE kind = 'age_milestone'"):
        age = int(evidence.split(":")[0].removeprefix("age "))
        owner, text, fmt = dob[_keys(evidence)[0]]
        born = datetime.strptime(text, fmt)
        assert owner == person and age in (18, 67)
        assert (occurred.year - born.year, occurred.month, occurred.day) == (age, born.month, born.day) or (born.month, born.day) == (2, 29)


def test_typo_only_differences_are_negatives(demo: Demo) -> None:
    _, con = demo
    reasons = dict(_rows(con, "SELECT kind || ' ' || reason, count(*) FROM neg GROUP BY 1"))
    assert reasons.get("moved typo", 0) >= 10 and reasons.get("name_changed typo", 0) >= 10 and reasons.get("moved alias", 0) >= 5
    both = "SELECT count(*) FROM neg n JOIN life l ON l.person_id = n.person_id AND l.kind = n.kind"
    assert _one(con, both) == 0
    owner = dict(_rows(con, "SELECT record_key, person_id FROM rec"))
    close = 0
    typos = _rows(con, "SELECT * FROM neg WHERE kind = 'moved' AND reason = 'typo'")
    for person, kind, reason, evidence in _rows(con, "SELECT * FROM neg"):
        a, b = _keys(evidence)
        assert owner[a] == owner[b] == person
        shown = [ast.literal_eval(part.split(" ", 1)[1]) for part in evidence.split(" / ")]  # "key 'value' / key 'value'"
        assert len(shown) == 2 and shown[0] != shown[1], evidence
        if (kind, reason) == ("moved", "typo"):
            close += _one(con, "SELECT levenshtein(lower(?), lower(?))", shown) <= 2
    assert close >= 0.8 * len(typos)  # one typo apart (a few are abbreviated too)


# ---- the featured caller, the knob, the seed -------------------------------------------------


def test_demo_caller_has_a_timeline_across_channels(demo: Demo) -> None:
    m, con = demo
    assert m.events is not None
    _contacts(con)
    person = m.demo_phone_lookup[1]
    rows = _rows(con, "SELECT channel, role, occurred_at, link FROM c WHERE person_id = ? ORDER BY occurred_at", [person])
    assert {r[0] for r in rows} >= {"phone", "chat"}
    assert {r[1] for r in rows} >= {"first", "repeat", "transfer"}
    assert max(r[2] for r in rows) >= m.events.until - timedelta(days=30)
    assert _one(con, "SELECT bool_and(linked AND NOT malformed) FROM et WHERE person_id = ?", [person])


def _event_bytes(m: DemoManifest) -> dict[str, bytes]:
    assert m.events is not None
    paths = [*m.events.paths.values(), m.events.truth_path, m.events.life_events_truth_path, m.events.life_event_negatives_path]
    return {p.name: p.read_bytes() for p in paths}


def test_same_seed_same_events_and_events_leave_the_sources_alone(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", records=2_000, seed=5)
    b = generate(tmp_path / "b", records=2_000, seed=5)
    c = generate(tmp_path / "c", records=2_000, seed=6)
    assert _event_bytes(a) == _event_bytes(b)
    assert a.config_path.read_bytes() == b.config_path.read_bytes()
    assert all(_event_bytes(a)[name] != _event_bytes(c)[name] for name in ("orders.ndjson", "calls.csv", "events_truth.parquet"))
    bare = generate(tmp_path / "bare", records=2_000, seed=5, events_per_person=0)
    assert bare.events is None
    assert all(bare.source_paths[s].read_bytes() == a.source_paths[s].read_bytes() for s in a.source_paths)
    assert bare.demo_phone_lookup == a.demo_phone_lookup
    config = load_config(bare.config_path)
    assert config.events == [] and config.traits == [] and config.life_events == []


def test_events_per_person_and_until_knobs(tmp_path: Path) -> None:
    m = generate(tmp_path / "half", records=3_000, seed=8, events_per_person=5, events_until=date(2026, 6, 1))
    assert m.events is not None and m.events.until == datetime(2026, 6, 1)
    truth = pq.read_table(m.events.truth_path)
    activity = truth.filter(pc.field("event_source") != "consents")  # consent statements come on top of activity
    assert 4.0 <= activity.num_rows / m.persons <= 6.0
    con = duckdb.connect()
    _load_events(con, load_config(m.config_path))
    first, last = _rows(con, "SELECT min(occurred_at), max(occurred_at) FROM ev")[0]
    assert datetime(2023, 6, 1) <= first and datetime(2026, 5, 1) <= last < datetime(2026, 6, 1)
