// Approvals: the tool calls waiting on a person (tool, input, task, time left): allow, deny
// or always allow (adds the rule covering the call to the task's policy). The count is in
// the page title; a browser notification is shown for new ones if the person asked for it.

import type { Event } from "../../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";
import { EventKind } from "../../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";
import { type Approval, PolicyScope } from "../../../typescript/src/gen/claude_swarm/v1/approvals_pb.js";
import { api, caller, message } from "../api.js";
import { h } from "../dom.js";
import { duration, millis, time } from "../format.js";
import { store } from "../live.js";
import type { View } from "../main.js";

const NOTIFY = "claude-swarm.notify";

/** A notification for each new approval, when asked for and the page is not in sight. */
export function notifyApprovals(events: Event[]) {
  if (localStorage.getItem(NOTIFY) !== "on" || typeof Notification === "undefined" || Notification.permission !== "granted") return;
  for (const e of events) {
    if (e.kind === EventKind.APPROVAL_REQUESTED && e.payload.case === "approval" && document.hidden) {
      new Notification("claude-swarm: approval needed", { body: `${e.payload.value.toolName} for task ${e.payload.value.taskId}`, tag: e.payload.value.id });
    }
  }
}

export function approvals(main: HTMLElement): View {
  const list = h("div", { class: "approvals", id: "approvals" });
  const notice = h("p", { class: "notice" });
  const toggle = h("input", {
    type: "checkbox",
    checked: localStorage.getItem(NOTIFY) === "on",
    onchange: async (e: Event & { target: HTMLInputElement }) => {
      const on = e.target.checked;
      if (on && typeof Notification !== "undefined" && Notification.permission !== "granted") await Notification.requestPermission();
      localStorage.setItem(NOTIFY, on ? "on" : "off");
    },
  });
  main.append(h("h2", null, "Approvals"), h("label", { class: "muted" }, toggle, " notify me of new approvals"), notice, list);

  const decide = async (approvalId: string, allow: boolean, always = PolicyScope.UNSPECIFIED) => {
    try {
      await api.approvals.decideApproval({ approvalId, allow, always, message: allow ? "" : "denied from the dashboard" });
      store.approvals.delete(approvalId);
      update();
    } catch (error) {
      notice.textContent = message(error);
    }
  };

  /** One card per approval, kept while it waits: only its time left changes in place. */
  const cards = new Map<string, { card: HTMLElement; left: HTMLElement; expires: number }>();
  const empty = h("p", { class: "muted" }, "Nothing is waiting for a decision.");

  function card(a: Approval) {
    const left = h("span", { class: "left" });
    const card = h(
      "section",
      { class: "card approval", "data-approval-id": a.id, "data-task-id": a.taskId },
      h("h3", null, a.toolName, " ", h("span", { class: "muted" }, `for `, h("a", { href: `#/task/${encodeURIComponent(a.taskId)}` }, store.tasks.get(a.taskId)?.name || a.taskId))),
      a.description ? h("p", null, a.description) : null,
      a.blockedPath ? h("p", null, "path: ", h("code", null, a.blockedPath)) : null,
      h("pre", null, JSON.stringify(a.input ?? {}, null, 2)),
      h("p", { class: "muted" }, `asked ${time(a.requestedAt)}`, left),
      caller.can("operate")
        ? h(
            "div",
            { class: "buttons" },
            h("button", { class: "allow", onclick: () => decide(a.id, true) }, "Allow"),
            h("button", { class: "always", onclick: () => decide(a.id, true, PolicyScope.TASK) }, "Always allow (this task)"),
            h("button", { class: "deny danger", onclick: () => decide(a.id, false) }, "Deny"),
          )
        : null,
    );
    return { card, left, expires: millis(a.expiresAt) };
  }

  function tick() {
    const now = Date.now();
    for (const { left, expires } of cards.values()) {
      left.textContent = expires ? ` · ${duration(expires - now)} left` : "";
    }
  }

  function update() {
    const pending = [...store.approvals.values()].sort((a, b) => millis(a.requestedAt) - millis(b.requestedAt));
    const ids = new Set(pending.map((a) => a.id));
    for (const [id, { card }] of cards) {
      if (!ids.has(id)) {
        card.remove();
        cards.delete(id);
      }
    }
    for (const a of pending) {
      if (!cards.has(a.id)) {
        const made = card(a);
        cards.set(a.id, made);
        list.append(made.card);
      }
    }
    if (pending.length) empty.remove();
    else list.append(empty);
    tick();
  }
  // The time left counts down between events.
  const ticking = setInterval(tick, 1000);
  return { update, destroy: () => clearInterval(ticking) };
}
