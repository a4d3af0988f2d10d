// Overview: the instances, the queue by priority, tasks by state, spend against budget,
// the accounts and their usage limits (an admin may lift a pause from here).

import { AccountState, type AccountStatus } from "../../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";
import { api, caller, message } from "../api.js";
import { h, refill } from "../dom.js";
import { accountWord, bytes, instanceWord, time, usd } from "../format.js";
import { refreshStatus, store } from "../live.js";
import type { View } from "../main.js";

function counts(title: string, rows: [string, bigint | number][]) {
  return h(
    "section",
    { class: "card" },
    h("h3", null, title),
    h("table", { class: "counts" }, rows.map(([name, n]) => h("tr", { class: name }, h("th", null, name), h("td", null, String(n))))),
  );
}

/** An account's row; a held-back one has a Resume button for an admin. */
function account(a: AccountStatus, notice: HTMLElement) {
  const held = a.state === AccountState.PAUSED || a.state === AccountState.LIMITED;
  const resume = async () => {
    try {
      await api.swarm.resumeAccount({ name: a.name });
      notice.textContent = `${a.name}: resumed`;
    } catch (error) {
      notice.textContent = `${a.name}: ${message(error)}`;
    }
    refreshStatus(0);
  };
  return h(
    "tr",
    { "data-account": a.name },
    h("td", null, a.name),
    h("td", null, h("span", { class: `badge ${accountWord(a.state)}` }, accountWord(a.state))),
    h("td", null, `${a.instancesLive} of ${a.instances}`),
    h("td", null, a.window),
    h("td", null, a.utilization === undefined ? "" : `${Math.round(a.utilization * 100)}%`),
    h("td", null, time(a.pausedUntil)),
    h("td", null, String(a.refusals)),
    h("td", null, held && caller.can("admin") ? h("button", { class: "resume", onclick: resume }, "Resume") : ""),
  );
}

export function overview(main: HTMLElement): View {
  const notice = h("p", { class: "notice", id: "account-notice" });
  const root = h("div", { class: "overview" });
  main.append(h("h2", null, "Overview"), root);
  refreshStatus(0);
  return {
    update() {
      const s = store.status;
      if (!s) return;
      const t = s.tasks;
      const q = s.queue;
      const spent = s.totalCostUsd;
      const budget = s.budgetUsd;
      const bar = h("div", { class: "bar" }, h("div", { class: "fill" }));
      if (budget > 0) (bar.firstChild as HTMLElement).style.width = `${Math.min(100, (spent / budget) * 100)}%`;
      const instances = [...store.instances.values()].sort((a, b) => a.id.localeCompare(b.id));
      refill(
        root,
        h(
          "div",
          { class: "cards" },
          counts("Tasks by state", [
            ["pending", t?.pending ?? 0],
            ["queued", t?.queued ?? 0],
            ["running", t?.running ?? 0],
            ["completed", t?.completed ?? 0],
            ["failed", t?.failed ?? 0],
            ["cancelled", t?.cancelled ?? 0],
            ["skipped", t?.skipped ?? 0],
          ]),
          counts("Queue by priority", [
            ["critical", q?.critical ?? 0],
            ["high", q?.high ?? 0],
            ["normal", q?.normal ?? 0],
            ["low", q?.low ?? 0],
          ]),
          h(
            "section",
            { class: "card spend" },
            h("h3", null, "Spend"),
            h("p", { class: "big" }, usd(spent), budget > 0 ? ` of ${usd(budget)}` : ""),
            budget > 0 ? bar : h("p", { class: "muted" }, "no budget set"),
            h("p", { class: "muted" }, `${s.usage?.inputTokens ?? 0n} tokens in, ${s.usage?.outputTokens ?? 0n} out, ${s.turns} turns`),
          ),
          h(
            "section",
            { class: "card" },
            h("h3", null, "Swarm"),
            h("p", null, `agent: ${s.agent}`),
            h("p", null, `version ${s.version}, up ${Math.round(s.uptimeSeconds)} s`),
            h("p", null, `workflows running: ${s.workflowsRunning}`),
            h("p", null, h("a", { href: "#/approvals" }, `approvals pending: ${s.approvalsPending}`)),
          ),
        ),
        h("h3", null, `Instances (${s.instances?.total ?? 0} of at most ${s.instances?.max ?? 0})`),
        h(
          "table",
          { class: "grid instances" },
          h("tr", null, ["instance", "state", "current task", "account", "CPU", "memory", "done", "failed", "cost"].map((c) => h("th", null, c))),
          instances.map((i) =>
            h(
              "tr",
              { "data-instance-id": i.id },
              h("td", null, i.id),
              h("td", null, h("span", { class: `badge ${instanceWord(i.status)}` }, instanceWord(i.status))),
              h("td", null, i.currentTaskId ? h("a", { href: `#/task/${encodeURIComponent(i.currentTaskId)}` }, store.tasks.get(i.currentTaskId)?.name || i.currentTaskId) : ""),
              h("td", null, i.account),
              h("td", null, `${i.cpuSeconds.toFixed(1)} s`),
              h("td", null, i.memoryBytes ? bytes(i.memoryBytes) : ""),
              h("td", null, String(i.tasksCompleted)),
              h("td", null, String(i.tasksFailed)),
              h("td", null, usd(i.totalCostUsd)),
            ),
          ),
        ),
        h("h3", null, "Accounts"),
        h(
          "table",
          { class: "grid accounts" },
          h("tr", null, ["account", "state", "instances", "window", "utilization", "paused until", "refusals", ""].map((c) => h("th", null, c))),
          s.accounts.map((a) => account(a, notice)),
        ),
        notice,
      );
    },
  };
}
