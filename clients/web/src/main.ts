// The dashboard: asks for a key when the server wants one, learns its role, reads the
// swarm and follows its events, and shows one view at a time by the location's hash
// (#/, #/tasks, #/task/ID, #/workflows, #/workflow/ID, #/approvals, #/actions).

import { api, caller, isUnauthenticated, key, message } from "./api.js";
import { fill, h } from "./dom.js";
import { start, store, subscribe } from "./live.js";
import type { StreamState } from "./stream.js";
import { actions } from "./views/actions.js";
import { approvals, notifyApprovals } from "./views/approvals.js";
import { overview } from "./views/overview.js";
import { taskPage } from "./views/task.js";
import { tasks } from "./views/tasks.js";
import { workflowPage, workflows } from "./views/workflow.js";

/** A view: drawn into `main`, told of changes, ended when the page moves on. */
export interface View {
  update(): void;
  destroy?(): void;
}

const main = document.getElementById("main")!;
let current: View | undefined;

function route() {
  current?.destroy?.();
  const [, name = "", id = ""] = location.hash.split("/").map(decodeURIComponent);
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === `#/${name}`);
  }
  main.replaceChildren();
  switch (name) {
    case "tasks":
      current = tasks(main);
      break;
    case "task":
      current = taskPage(main, id);
      break;
    case "workflows":
      current = workflows(main);
      break;
    case "workflow":
      current = workflowPage(main, id);
      break;
    case "approvals":
      current = approvals(main);
      break;
    case "actions":
      current = actions(main);
      break;
    default:
      current = overview(main);
  }
  current.update();
}

function showStream(state: StreamState) {
  document.body.dataset.stream = state;
  document.getElementById("stream")!.textContent = state;
  if (state === "denied") askForKey("The server refused the key; enter another.");
}

function title() {
  const n = store.approvals.size;
  document.title = n ? `(${n}) claude-swarm` : "claude-swarm";
  document.getElementById("approval-count")!.textContent = n ? String(n) : "";
  const status = store.status;
  const banner = document.getElementById("banner")!;
  const paused = status?.dispatchPausedReason;
  banner.hidden = !paused;
  if (paused) {
    const until = status?.dispatchPausedUntil;
    fill(
      banner,
      `Dispatching is paused: ${paused}`,
      until ? ` (until ${new Date(Number(until.seconds) * 1000).toLocaleString()})` : "",
    );
  }
}

function askForKey(why: string) {
  fill(
    main,
    h(
      "form",
      {
        class: "card key",
        id: "key-form",
        onsubmit: (e: SubmitEvent) => {
          e.preventDefault();
          const input = (e.target as HTMLFormElement).elements.namedItem("key") as HTMLInputElement;
          key.set(input.value.trim());
          location.reload();
        },
      },
      h("h2", null, "API key"),
      h("p", null, why, " It is kept for this tab's session only."),
      h("input", { name: "key", type: "password", autocomplete: "off", required: true, placeholder: "swarm_…" }),
      h("button", { type: "submit" }, "Use this key"),
    ),
  );
}

async function boot() {
  try {
    const who = await api.caller.getCaller({});
    caller.set(who.role);
    document.body.dataset.role = who.role;
    const whoEl = document.getElementById("who")!;
    if (who.keysRequired) {
      fill(
        whoEl,
        `${who.name} (${who.role}) `,
        h("button", { class: "link", onclick: () => (key.forget(), location.reload()) }, "forget key"),
      );
    }
    document.getElementById("nav-actions")!.hidden = !caller.can("operate");
  } catch (error) {
    if (isUnauthenticated(error)) {
      askForKey(key.get() ? "The server refused the key; enter another." : "This server asks for an API key.");
      return;
    }
    fill(main, h("p", { class: "error" }, `The server did not answer: ${message(error)}`));
    setTimeout(boot, 2000);
    return;
  }
  subscribe(() => {
    title();
    if (store.loaded) current?.update();
  });
  subscribe(notifyApprovals);
  window.addEventListener("hashchange", route);
  start(showStream);
  route();
}

void boot();
