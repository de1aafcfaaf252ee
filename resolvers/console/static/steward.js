// The data steward's view: the review queue (closest to the boundary first), a pair side by
// side with the model's evidence as a match weight chart, decisions; and a profile's records
// (split), merge, and its audit log (undo).

import { explain } from "./api.js";
import { h, svg, text, when } from "./dom.js";

const PAGE = 6; // full pairs per request: records, raw rows and evidence stay within api.max_fields

const RECORD = `key source recordId updatedAt firstName lastName fullName dateOfBirth email phone raw
  address { street houseNumber addressLine2 postcode city country }`;
const QUEUE = `query Queue($first: Int!, $after: String) { reviewQueue(first: $first, after: $after) {
  totalCount pageInfo { hasNextPage endCursor }
  edges { node { id matchProbability matchWeight distanceToBoundary leftProfileId rightProfileId
    left { ${RECORD} } right { ${RECORD} }
    explanation { priorWeight matchWeight matchProbability scoredInRun comparisons { comparison level matchWeight termFrequencyAdjustment } } } } } }`;
const ACTION = "id kind actor reason createdAt profilesBefore profilesAfter records undoes undoneBy";
const DECIDE = `mutation Decide($id: ID!, $decision: Decision!, $reason: String!) { decideCandidate(pairId: $id, decision: $decision, reason: $reason) { ${ACTION} } }`;

/** The rows compared side by side: label, then how to read it from a record. */
const COMPARED = [
  ["First name", (r) => r.firstName],
  ["Last name", (r) => r.lastName],
  ["Full name", (r) => r.fullName],
  ["Birth date", (r) => r.dateOfBirth],
  ["E-mail", (r) => r.email],
  ["Phone", (r) => r.phone],
  ["Street", (r) => r.address?.street],
  ["House number", (r) => r.address?.houseNumber],
  ["Postcode", (r) => r.address?.postcode],
  ["City", (r) => r.address?.city],
];

export class StewardView {
  constructor(api, say, openProfile) {
    this.api = api;
    this.say = say;
    this.openProfile = openProfile;
    this.queue = document.getElementById("queue");
    this.pairBox = document.getElementById("pair");
    this.pairs = [];
    this.index = 0;
    this.total = 0;
    this.reason = ""; // what the steward typed, kept across pairs and failures
    this.busy = false;
  }

  async load() {
    try {
      const { data } = await this.api.run(QUEUE, { first: PAGE, after: null });
      const q = data.reviewQueue;
      this.pairs = q.edges.map((e) => e.node);
      this.total = q.totalCount;
      this.next = q.pageInfo.hasNextPage ? q.pageInfo.endCursor : null;
      this.index = Math.min(this.index, Math.max(0, this.pairs.length - 1));
      this.draw();
    } catch (e) {
      this.say(explain(e));
    }
  }

  draw() {
    this.queue.replaceChildren(
      h("li", { class: "muted" }, `${this.total} open pairs`),
      ...this.pairs.map((p, i) =>
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "link", "aria-current": i === this.index ? "true" : null, onclick: () => this.select(i) },
            `${(p.matchProbability * 100).toFixed(0)}% · `,
            text(p.left.fullName || [p.left.firstName, p.left.lastName].filter(Boolean).join(" ")),
            " / ",
            text(p.right.fullName || [p.right.firstName, p.right.lastName].filter(Boolean).join(" ")),
          ),
        ),
      ),
    );
    const pair = this.pairs[this.index];
    this.pairBox.replaceChildren(pair ? this.pairView(pair) : h("p", {}, "The queue is empty."));
  }

  async select(i) {
    if (i >= this.pairs.length && this.next && !this.busy) await this.more();
    if (i < 0 || i >= this.pairs.length) return;
    this.index = i;
    this.draw();
  }

  /** The next page of the queue, after the pairs shown. */
  async more() {
    this.busy = true;
    try {
      const { data } = await this.api.run(QUEUE, { first: PAGE, after: this.next });
      const q = data.reviewQueue;
      const known = new Set(this.pairs.map((p) => p.id));
      this.pairs.push(...q.edges.map((e) => e.node).filter((p) => !known.has(p.id)));
      this.next = q.pageInfo.hasNextPage ? q.pageInfo.endCursor : null;
    } catch (e) {
      this.say(explain(e));
    } finally {
      this.busy = false;
    }
  }

  pairView(p) {
    const diff = (a, b) => a !== null && a !== undefined && b !== null && b !== undefined && String(a).toLowerCase() !== String(b).toLowerCase();
    const reasonBox = h("input", { id: "reason", type: "text", autocomplete: "off", value: this.reason, placeholder: "why (kept in the audit log)" });
    reasonBox.value = this.reason;
    reasonBox.addEventListener("input", () => (this.reason = reasonBox.value));
    const profileButton = (id) => h("button", { type: "button", class: "link", onclick: () => this.openProfile(id) }, id);
    return h(
      "div",
      { class: "pair-body", "data-pair": p.id },
      h("h3", {}, `Pair ${p.id}: probability ${p.matchProbability.toFixed(3)}, weight ${p.matchWeight.toFixed(2)}`),
      h(
        "table",
        { class: "compare" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Standardized"), h("th", { scope: "col" }, text(p.left.key)), h("th", { scope: "col" }, text(p.right.key)))),
        h(
          "tbody",
          {},
          h("tr", {}, h("th", { scope: "row" }, "Profile"), h("td", {}, profileButton(p.leftProfileId)), h("td", {}, profileButton(p.rightProfileId))),
          COMPARED.map(([label, read]) => {
            const [a, b] = [read(p.left), read(p.right)];
            const cls = diff(a, b) ? "diff" : null;
            return h("tr", { class: cls }, h("th", { scope: "row" }, label), h("td", {}, text(a)), h("td", {}, text(b)));
          }),
        ),
      ),
      p.explanation ? weightChart(p.explanation) : h("p", {}, "No explanation for this pair."),
      h(
        "form",
        { class: "decide", onsubmit: (e) => e.preventDefault() },
        h("label", { for: "reason" }, "Reason"),
        reasonBox,
        h("button", { type: "button", id: "decide-same", onclick: () => this.decide("SAME") }, "Same (s)"),
        h("button", { type: "button", id: "decide-different", onclick: () => this.decide("DIFFERENT") }, "Different (d)"),
      ),
      h("details", { class: "raw", open: true }, h("summary", {}, "Raw rows as the sources wrote them"), h("div", { class: "raw-pair" }, rawTable(p.left), rawTable(p.right))),
    );
  }

  async decide(decision) {
    const pair = this.pairs[this.index];
    if (!pair || this.busy) return;
    const reason = this.reason.trim();
    if (!reason) {
      this.say("Give a reason first: it goes into the audit log.");
      document.getElementById("reason")?.focus();
      return;
    }
    this.busy = true;
    try {
      const { data } = await this.api.run(DECIDE, { id: pair.id, decision, reason });
      const action = data.decideCandidate;
      this.say(`Decided ${decision} (action ${action.id}) for pair ${pair.id}.`, "ok");
      this.pairs.splice(this.index, 1);
      this.total -= 1;
      if (!this.pairs.length) await this.load();
      else this.draw();
    } catch (e) {
      this.say(explain(e)); // the pair and the reason stay as they were
    } finally {
      this.busy = false;
    }
  }

  key(event) {
    const k = event.key;
    if (k === "j" || k === "n") this.select(this.index + 1);
    else if (k === "k") this.select(this.index - 1);
    else if (k === "s") this.decide("SAME");
    else if (k === "d") this.decide("DIFFERENT");
    else return false;
    return true;
  }
}

function rawTable(record) {
  const raw = record.raw && typeof record.raw === "object" ? record.raw : {};
  return h(
    "table",
    { class: "raw-row" },
    h("caption", {}, text(record.key)),
    h("tbody", {}, Object.entries(raw).map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, text(v))))),
  );
}

/** splink's waterfall: the prior, then each comparison's weight (with its term-frequency
 * adjustment) from where the previous one ended, adding up to the pair's match weight. */
export function weightChart(x) {
  const steps = [{ label: "prior", detail: "", weight: x.priorWeight }];
  for (const c of x.comparisons) {
    steps.push({ label: c.comparison, detail: c.level, weight: c.matchWeight + c.termFrequencyAdjustment, tf: c.termFrequencyAdjustment });
  }
  let running = 0;
  const bars = steps.map((s) => {
    const from = running;
    running += s.weight;
    return { ...s, from, to: running };
  });
  bars.push({ label: "match weight", detail: `probability ${x.matchProbability.toFixed(3)}`, weight: x.matchWeight, from: 0, to: x.matchWeight, total: true });
  const values = bars.flatMap((b) => [b.from, b.to]);
  const lo = Math.min(0, ...values);
  const hi = Math.max(0, ...values);
  const [labelW, plotW, valueW, rowH] = [300, 360, 70, 22];
  const scale = (v) => labelW + ((v - lo) / (hi - lo || 1)) * plotW;
  const height = bars.length * rowH + 24;
  const chart = svg(
    "svg",
    { class: "waterfall", viewBox: `0 0 ${labelW + plotW + valueW} ${height}`, role: "img", "aria-labelledby": "chart-title" },
    svg("title", { id: "chart-title" }, `Match weight ${x.matchWeight.toFixed(2)}: prior ${x.priorWeight.toFixed(2)} plus ${x.comparisons.length} comparisons`),
    svg("line", { x1: scale(0), x2: scale(0), y1: 0, y2: height - 20, class: "axis" }),
    bars.map((b, i) => {
      const y = i * rowH + 2;
      const cls = b.total ? "bar total" : b.weight >= 0 ? "bar up" : "bar down";
      return svg(
        "g",
        { class: "step" },
        svg("title", {}, `${b.label} ${b.detail}: ${b.weight >= 0 ? "+" : ""}${b.weight.toFixed(2)}${b.tf ? ` (term frequency ${b.tf.toFixed(2)})` : ""}`),
        svg("text", { x: 4, y: y + 14, class: "label" }, `${b.label}${b.detail ? `: ${b.detail}` : ""}`),
        svg("rect", { x: Math.min(scale(b.from), scale(b.to)), y, width: Math.max(1, Math.abs(scale(b.to) - scale(b.from))), height: rowH - 6, class: cls }),
        svg("text", { x: labelW + plotW + 6, y: y + 14, class: "value" }, `${b.weight >= 0 ? "+" : ""}${b.weight.toFixed(2)}`),
      );
    }),
    svg("text", { x: scale(0), y: height - 6, class: "tick" }, "0"),
  );
  const sum = bars.slice(0, -1).reduce((acc, b) => acc + b.weight, 0);
  return h(
    "figure",
    { class: "chart" },
    chart,
    h("figcaption", {}, `Prior ${x.priorWeight.toFixed(2)} + evidence = ${sum.toFixed(2)} (the pair's match weight ${x.matchWeight.toFixed(2)})${x.scoredInRun ? "" : "; scored now, not in the run"}`),
  );
}

const PROFILE = `query Profile($id: ID!) {
  profile(id: $id) { id redirectedFrom fullName recordCount
    records { key source fullName dateOfBirth email phone address { postcode city } } }
  auditLog(profileId: $id, first: 30) { edges { node { id occurredAt actor role action subject detail } } } }`;
const SPLIT = `mutation Split($keys: [String!]!, $reason: String!) { splitRecords(recordKeys: $keys, reason: $reason) { ${ACTION} } }`;
const MERGE = `mutation Merge($ids: [ID!]!, $reason: String!) { mergeProfiles(ids: $ids, reason: $reason) { ${ACTION} } }`;
const UNDO = `mutation Undo($id: ID!, $reason: String!) { undo(actionId: $id, reason: $reason) { ${ACTION} } }`;

/** A profile's records (split), merging another profile in, and its audit log (undo). */
export class ProfileTools {
  constructor(api, say) {
    this.api = api;
    this.say = say;
    this.body = document.getElementById("profile-body");
    this.input = document.getElementById("profile-id");
    this.reason = "";
    document.getElementById("profile-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.open(this.input.value.trim());
    });
  }

  async open(id) {
    if (!id) return;
    this.input.value = id;
    try {
      const { data } = await this.api.run(PROFILE, { id });
      if (!data.profile) {
        this.body.replaceChildren(h("p", {}, "No such profile."));
        return;
      }
      this.id = data.profile.id;
      this.body.replaceChildren(this.view(data.profile, data.auditLog.edges.map((e) => e.node)));
    } catch (e) {
      this.say(explain(e));
    }
  }

  reasonBox(id) {
    const box = h("input", { id, type: "text", autocomplete: "off", placeholder: "why (kept in the audit log)" });
    box.value = this.reason;
    box.addEventListener("input", () => (this.reason = box.value));
    return box;
  }

  view(p, audit) {
    const checks = p.records.map((r) => h("input", { type: "checkbox", value: r.key, "aria-label": `select ${r.key}` }));
    const mergeWith = h("input", { id: "merge-with", autocomplete: "off" });
    return h(
      "div",
      { class: "profile-tools", "data-profile": p.id },
      h("h3", {}, text(p.fullName), h("span", { class: "muted" }, ` profile ${p.id} · ${p.recordCount} records`)),
      h(
        "table",
        { class: "records" },
        h("thead", {}, h("tr", {}, ["", "Record", "Name", "Birth date", "E-mail", "Phone", "Postcode", "City"].map((t) => h("th", { scope: "col" }, t)))),
        h(
          "tbody",
          {},
          p.records.map((r, i) =>
            h("tr", {}, h("td", {}, checks[i]), h("td", {}, text(r.key)), h("td", {}, text(r.fullName)), h("td", {}, text(r.dateOfBirth)), h("td", {}, text(r.email)), h("td", {}, text(r.phone)), h("td", {}, text(r.address?.postcode)), h("td", {}, text(r.address?.city))),
          ),
        ),
      ),
      h(
        "form",
        { class: "act", onsubmit: (e) => e.preventDefault() },
        h("label", { for: "profile-reason" }, "Reason"),
        this.reasonBox("profile-reason"),
        h("button", { type: "button", id: "split", onclick: () => this.split(checks.filter((c) => c.checked).map((c) => c.value)) }, "Split selected records"),
        h("label", { for: "merge-with" }, "Merge with profile"),
        mergeWith,
        h("button", { type: "button", id: "merge", onclick: () => this.merge(mergeWith.value.trim()) }, "Merge"),
      ),
      h("h4", {}, "Audit log"),
      h(
        "ol",
        { class: "audit", "aria-label": "Audit log" },
        audit.map((a) => {
          const undoable = a.action.startsWith("steward.") && a.action !== "steward.refused" && a.subject;
          return h(
            "li",
            { "data-action": a.action },
            h("span", { class: "muted" }, when(a.occurredAt)),
            " ",
            h("strong", {}, a.action),
            ` by ${a.actor} (${a.role})`,
            a.detail?.reason ? ` · ${a.detail.reason}` : "",
            a.subject ? h("span", { class: "muted" }, ` · ${a.subject}`) : "",
            undoable ? h("button", { type: "button", class: "undo", onclick: () => this.act(UNDO, { id: a.subject }, `Undid ${a.subject}`) }, "Undo") : "",
          );
        }),
      ),
    );
  }

  split(keys) {
    if (!keys.length) return this.say("Select the records to take out first.");
    return this.act(SPLIT, { keys }, `Split ${keys.length} record(s)`);
  }

  merge(other) {
    if (!other) return this.say("Give the id of the profile to merge with.");
    return this.act(MERGE, { ids: [this.id, other] }, `Merged ${other}`);
  }

  async act(mutation, variables, done) {
    const reason = this.reason.trim();
    if (!reason) {
      this.say("Give a reason first: it goes into the audit log.");
      document.getElementById("profile-reason")?.focus();
      return;
    }
    try {
      const { data } = await this.api.run(mutation, { ...variables, reason });
      const action = Object.values(data)[0];
      this.say(`${done}: action ${action.id} (${action.kind}).`, "ok");
      const next = action.profilesAfter.includes(this.id) ? this.id : action.profilesAfter[0] || this.id;
      await this.open(next);
    } catch (e) {
      this.say(explain(e)); // the reason stays in the box
    }
  }
}
