// The agent's view: one search box for anything a customer says, and the customer card,
// loaded in one GraphQL request.

import { explain, withheldUnder } from "./api.js";
import { h, text, when } from "./dom.js";

const EFFORT_DAYS = 30;

export const CARD = `fragment Card on Profile {
  id redirectedFrom pseudonymousId fullName gender email phone dateOfBirth recordCount sources updatedAt
  address { street houseNumber addressLine2 postcode city country }
  fields { name value source rule recordId updatedAt }
  identifiers { kind value sources }
  timeline(first: 50) { totalCount nodes { id occurredAt channel type topic department amount source } }
  traits { name value definition }
  effort(days: ${EFFORT_DAYS}) { days contacts repeatContacts channelSwitches transfers openTopics }
  lifeEvents { kind occurredAt evidence }
  consents { purpose status allowed }
}`;

const alias = (kind) => `by_${kind.replace(/[^A-Za-z0-9_]/g, "_")}`;

/** How to look a typed text up: {kinds: [...]} for identifier-shaped input, {record: true}, {pseudonymous: true} or {search: true}. */
export function classify(input, viewer) {
  const value = input.trim();
  if (viewer.role === "personalization") return { pseudonymous: true };
  if (/^[^\s@]+@[^\s@]+$/.test(value)) return { kinds: ["email"] };
  const record = /^([a-z][a-z0-9_]*):(\S+)$/i.exec(value);
  if (record && !/^\+?\d/.test(value)) return { record: true };
  const compact = value.replace(/[\s().\-/+]/g, "");
  const digits = (compact.match(/\d/g) || []).length;
  if (digits >= 4 && compact.length - digits <= 3 && !/\s[A-Za-z]{2,}/.test(value)) {
    return { kinds: viewer.identifierKinds.filter((k) => k !== "email") };
  }
  return { search: true };
}

/** The query and variables that find a typed text: every alias answers a card or null. */
export function lookupQuery(how) {
  if (how.pseudonymous) {
    return `query Card($v: String!, $id: ID!) { by_pseudonym: profileByIdentifier(kind: "pseudonymous_id", value: $v) { ...Card } by_id: profile(id: $id) { ...Card } } ${CARD}`;
  }
  if (how.record) return `query Card($v: String!) { by_record: profileByIdentifier(kind: "record", value: $v) { ...Card } } ${CARD}`;
  const parts = how.kinds.map((k) => `${alias(k)}: profileByIdentifier(kind: ${JSON.stringify(k)}, value: $v) { ...Card }`);
  return `query Card($v: String!) { ${parts.join(" ")} } ${CARD}`;
}

const SEARCH = `query Search($q: String!) { searchProfiles(query: $q, first: 8) {
  score matchedRecord profile { id fullName dateOfBirth address { postcode city } sources } } }`;
const BY_ID = `query Card($id: ID!) { card: profile(id: $id) { ...Card } } ${CARD}`;

export class AgentView {
  constructor(api, viewer, say) {
    this.api = api;
    this.viewer = viewer;
    this.say = say;
    this.form = document.getElementById("lookup-form");
    this.input = document.getElementById("lookup");
    this.status = document.getElementById("lookup-status");
    this.matches = document.getElementById("matches");
    this.card = document.getElementById("card");
    if (viewer.role === "personalization") this.input.placeholder = "pseudonymous id or profile id";
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.find(this.input.value);
    });
  }

  async find(typed) {
    const value = typed.trim();
    if (!value) return;
    this.matches.replaceChildren();
    this.card.replaceChildren();
    this.status.textContent = "Looking…";
    const how = classify(value, this.viewer);
    try {
      if (how.search) return await this.search(value);
      const variables = how.pseudonymous ? { v: value, id: value } : { v: value };
      const started = performance.now();
      const result = await this.api.request(lookupQuery(how), variables);
      const found = Object.entries(result.data).filter(([, p]) => p);
      const distinct = [...new Map(found.map(([a, p]) => [p.id, [a, p]])).values()];
      const problems = result.errors.filter((e) => e.extensions?.code !== "BAD_REQUEST" || !distinct.length);
      if (distinct.length === 1) {
        const [root, profile] = distinct[0];
        this.render(profile, withheldUnder(result.extensions, root));
        this.status.textContent = `Found by ${root.replace(/^by_/, "").replace(/_/g, " ")} in ${Math.round(performance.now() - started)} ms`;
      } else if (distinct.length > 1) {
        this.status.textContent = `${distinct.length} customers match; choose one.`;
        this.list(distinct.map(([root, p]) => ({ profile: p, note: `by ${root.replace(/^by_/, "")}` })));
      } else if (problems.length) {
        this.status.textContent = problems.map(explain).join("; ");
      } else if (!how.pseudonymous && this.viewer.role !== "personalization") {
        return await this.search(value); // not an identifier after all: free text
      } else {
        this.status.textContent = "No customer found.";
      }
    } catch (e) {
      this.status.textContent = explain(e);
    }
  }

  async search(query) {
    const result = await this.api.request(SEARCH, { q: query });
    if (result.errors.length) {
      this.status.textContent = result.errors.map(explain).join("; ");
      return;
    }
    const hits = result.data.searchProfiles || [];
    this.status.textContent = hits.length ? `${hits.length} candidates, best first` : "No customer found.";
    this.list(hits.map((hit) => ({ profile: hit.profile, note: `${Math.round(hit.score * 100)}%` })));
  }

  list(items) {
    this.matches.replaceChildren(
      ...items.map(({ profile, note }) =>
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "link", onclick: () => this.open(profile.id) },
            text(profile.fullName),
            " · ",
            text(profile.dateOfBirth),
            " · ",
            text(profile.address?.postcode),
            " ",
            text(profile.address?.city),
          ),
          " ",
          h("span", { class: "muted" }, note),
        ),
      ),
    );
    this.matches.querySelector("button")?.focus();
  }

  async open(id) {
    const started = performance.now();
    try {
      const result = await this.api.request(BY_ID, { id });
      if (!result.data.card) {
        this.status.textContent = result.errors.length ? result.errors.map(explain).join("; ") : "No such profile.";
        return;
      }
      this.matches.replaceChildren();
      this.render(result.data.card, withheldUnder(result.extensions, "card"));
      this.status.textContent = `Opened in ${Math.round(performance.now() - started)} ms`;
    } catch (e) {
      this.status.textContent = explain(e);
    }
  }

  render(p, withheld) {
    this.card.replaceChildren(renderCard(p, withheld));
  }
}

/** A value, or why it is missing: "withheld: <reason>" when consent kept it back. */
function shown(value, field, withheld) {
  if ((value === null || value === undefined) && withheld.has(field)) {
    return h("span", { class: "withheld" }, `withheld: ${withheld.get(field)}`);
  }
  return text(value);
}

function section(title, ...content) {
  return h("section", { class: "panel", "aria-label": title }, h("h3", {}, title), ...content);
}

function address(a) {
  if (!a) return "—";
  const parts = [[a.street, a.houseNumber, a.addressLine2].filter(Boolean).join(" "), [a.postcode, a.city].filter(Boolean).join(" "), a.country];
  return parts.filter(Boolean).join(", ") || "—";
}

export function renderCard(p, withheld) {
  const lineage = new Map((p.fields || []).map((f) => [f.name, f]));
  const from = (...names) => {
    const found = names.map((n) => lineage.get(n)).filter(Boolean);
    const said = [...new Set(found.map((f) => `${f.source}${f.rule ? ` · ${f.rule}` : ""}`))];
    return said.length ? h("span", { class: "lineage", title: found.map((f) => `${f.name}: ${f.source} (${f.rule}) ${text(f.recordId)}`).join("\n") }, said.join(", ")) : "";
  };
  const golden = [
    ["Name", p.fullName, "full_name", "first_name", "last_name"],
    ["Birth date", p.dateOfBirth, "date_of_birth"],
    ["E-mail", p.email, "email"],
    ["Phone", p.phone, "phone"],
    ["Gender", p.gender, "gender"],
  ];
  const fieldNames = { full_name: "fullName", date_of_birth: "dateOfBirth", email: "email", phone: "phone", gender: "gender" };
  return h(
    "div",
    { class: "card-body", "data-profile": p.id },
    h(
      "header",
      { class: "card-head" },
      h("h2", { id: "card-name" }, shown(p.fullName, "fullName", withheld)),
      h("p", { class: "muted" }, `profile ${p.id}`, p.redirectedFrom ? ` (merged from ${p.redirectedFrom})` : "", ` · ${p.recordCount} records · updated ${when(p.updatedAt)}`),
    ),
    effortLine(p, withheld),
    h(
      "div",
      { class: "grid" },
      section(
        "Golden record",
        h(
          "table",
          { class: "golden" },
          h("tbody", {}, [
            ...golden.map(([label, value, ...names]) => h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, shown(value, fieldNames[names[0]], withheld)), h("td", {}, from(...names)))),
            h("tr", {}, h("th", { scope: "row" }, "Address"), h("td", { class: "address" }, address(p.address)), h("td", {}, from("street", "house_number", "postcode", "city"))),
          ]),
        ),
      ),
      section("Sources", h("ul", { class: "chips" }, (p.sources || []).map((s) => h("li", {}, s)))),
      section(
        "Identifiers",
        h("table", {}, h("tbody", {}, (p.identifiers || []).map((i) => h("tr", {}, h("th", { scope: "row" }, i.kind), h("td", {}, text(i.value)), h("td", { class: "muted" }, (i.sources || []).join(", ")))))),
      ),
      section("Traits", p.traits ? h("table", {}, h("tbody", {}, p.traits.map((t) => h("tr", { title: t.definition }, h("th", { scope: "row" }, t.name), h("td", {}, text(t.value)))))) : shown(null, "traits", withheld)),
      section(
        "Life events",
        p.lifeEvents
          ? p.lifeEvents.length
            ? h("ul", {}, p.lifeEvents.map((e) => h("li", {}, h("strong", {}, e.kind), ` ${when(e.occurredAt).slice(0, 10)} `, h("span", { class: "muted" }, (e.evidence || []).join("; ")))))
            : "none"
          : shown(null, "lifeEvents", withheld),
      ),
      section("Consent", h("ul", {}, (p.consents || []).map((c) => h("li", {}, `${c.purpose}: ${c.status}`)))),
    ),
    timeline(p, withheld),
  );
}

const DAY = 86400000;
const REPEAT_DAYS = 7; // as [effort] repeat_days in the demo: contacts on a topic this close are one episode

/** "contacted 3 times about delivery in 2 days, switched from phone to chat (last 2024-12-21)": per topic,
 * the latest run of contacts each within REPEAT_DAYS of the one before, from the card's timeline. */
export function effortSentences(p) {
  const contacts = (p.timeline?.nodes || []).filter((n) => n.type === "contact" && n.topic);
  const byTopic = new Map();
  for (const n of [...contacts].sort((a, b) => b.occurredAt.localeCompare(a.occurredAt))) {
    const run = byTopic.get(n.topic) || { contacts: [], closed: false };
    byTopic.set(n.topic, run);
    const later = run.contacts.at(-1);
    if (run.closed) continue;
    if (later && (new Date(later.occurredAt) - new Date(n.occurredAt)) / DAY > REPEAT_DAYS) run.closed = true;
    else run.contacts.push(n);
  }
  return [...byTopic.entries()]
    .map(([topic, run]) => [topic, run.contacts])
    .filter(([, run]) => run.length > 1)
    .sort(([, a], [, b]) => b[0].occurredAt.localeCompare(a[0].occurredAt))
    .slice(0, 3)
    .map(([topic, run]) => {
      const about = [...run].reverse(); // oldest first
      const days = Math.max(1, Math.ceil((new Date(about.at(-1).occurredAt) - new Date(about[0].occurredAt)) / DAY));
      const channels = about.map((n) => n.channel).filter((c, i, all) => c && c !== all[i - 1]);
      const switched = channels.length > 1 ? `, switched from ${channels.join(" to ")}` : "";
      const departments = new Set(about.map((n) => n.department).filter(Boolean)).size;
      const handed = departments > 1 ? `, through ${departments} departments` : "";
      return `contacted ${about.length} times about ${topic} in ${days} day${days > 1 ? "s" : ""}${switched}${handed} (last ${when(about.at(-1).occurredAt).slice(0, 10)})`;
    });
}

function effortLine(p, withheld) {
  if (!p.effort) return h("p", { class: "effort" }, "Effort: ", shown(null, "effort", withheld));
  const e = p.effort;
  const sentences = effortSentences(p);
  return h(
    "div",
    { class: "effort", role: "note", "aria-label": "Effort" },
    h("strong", {}, `Last ${e.days} days: `),
    `${e.contacts} contacts, ${e.repeatContacts} repeats, ${e.channelSwitches} channel switches, ${e.transfers} transfers`,
    (e.openTopics || []).length ? `; open: ${e.openTopics.join(", ")}` : "",
    sentences.length ? h("ul", { class: "episodes" }, sentences.map((s) => h("li", {}, s))) : "",
  );
}

function timeline(p, withheld) {
  if (!p.timeline) return section("Timeline", shown(null, "timeline", withheld));
  const nodes = p.timeline.nodes;
  const channels = [...new Set(nodes.map((n) => n.channel).filter(Boolean))].sort();
  const body = h("tbody", {});
  const fill = (channel) =>
    body.replaceChildren(
      ...nodes
        .filter((n) => !channel || n.channel === channel)
        .map((n) => h("tr", { "data-channel": n.channel || "" }, h("td", {}, when(n.occurredAt)), h("td", {}, text(n.channel)), h("td", {}, text(n.type)), h("td", {}, text(n.topic)), h("td", {}, text(n.department)), h("td", { class: "num" }, n.amount == null ? "" : n.amount.toFixed(2)))),
    );
  const select = h("select", { id: "timeline-channel", onchange: (e) => fill(e.target.value) }, h("option", { value: "" }, "all channels"), channels.map((c) => h("option", { value: c }, c)));
  fill("");
  return section(
    "Timeline",
    h("p", {}, h("label", { for: "timeline-channel" }, "Channel "), select, h("span", { class: "muted" }, ` ${nodes.length} of ${p.timeline.totalCount} events, newest first`)),
    h("table", { class: "timeline" }, h("thead", {}, h("tr", {}, ["When", "Channel", "Type", "Topic", "Department", "Amount"].map((t) => h("th", { scope: "col" }, t)))), body),
  );
}
