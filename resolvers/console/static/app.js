// Sign-in (the key lives in this tab's sessionStorage only), the views a key's role may use,
// and the keyboard.

import { AgentView } from "./agent.js";
import { Api, explain } from "./api.js";
import { ProfileTools, StewardView } from "./steward.js";

const KEY = "unify.key";
const VIEWER = "query Viewer { viewer { role identifierKinds } }";
const VIEWS = { agent: ["agent", "steward", "admin", "personalization"], steward: ["steward"], profile: ["steward"] };

const $ = (id) => document.getElementById(id);
const message = $("message");

function say(text, kind = "error") {
  message.textContent = text;
  message.className = `message ${kind}`;
  message.hidden = !text;
}

let steward = null;

function showView(name) {
  for (const view of Object.keys(VIEWS)) {
    $(view).hidden = view !== name;
    $(`nav-${view}`).setAttribute("aria-pressed", String(view === name));
  }
  if (name === "steward" && steward) steward.load();
  if (name === "agent") $("lookup").focus();
}

async function signIn(key) {
  const api = new Api(key);
  let viewer;
  try {
    viewer = (await api.run(VIEWER)).data.viewer;
  } catch (e) {
    sessionStorage.removeItem(KEY);
    say(explain(e));
    return;
  }
  sessionStorage.setItem(KEY, key);
  say("");
  $("signin").hidden = true;
  $("nav").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = `signed in as ${viewer.role}`;
  document.body.dataset.role = viewer.role;
  for (const [view, roles] of Object.entries(VIEWS)) $(`nav-${view}`).hidden = !roles.includes(viewer.role);
  new AgentView(api, viewer, say);
  if (viewer.role === "steward") {
    const tools = new ProfileTools(api, say);
    steward = new StewardView(api, say, (id) => {
      showView("profile");
      tools.open(id);
    });
    showView("steward");
  } else {
    showView("agent");
  }
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("key").value.trim();
  $("key").value = "";
  if (key) signIn(key);
});
$("signout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  location.reload();
});
for (const button of $("nav").querySelectorAll("button")) button.addEventListener("click", () => showView(button.dataset.view));

document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (target.matches?.("input, textarea, select")) {
    if (event.key === "Escape") target.blur(); // back to the review keys
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || !steward || $("steward").hidden) return;
  if (steward.key(event)) event.preventDefault();
});

const saved = sessionStorage.getItem(KEY);
if (saved) signIn(saved);
else $("key").focus();
