// Tasks: every task, filtered (state, priority, workflow, label, text) and sorted by any
// column. Only the rows in sight are drawn (virtual scrolling), so 10,000 tasks scroll as
// fast as ten; the list is kept current from the events, never listed again.

import type { Task } from "../../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";
import { Priority, TaskStatus } from "../../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";
import { fill, h, refill } from "../dom.js";
import { millis, priorityWord, taskWord, usd } from "../format.js";
import { store } from "../live.js";
import type { View } from "../main.js";

const ROW = 30;
const COLUMNS: [string, (t: Task) => string | number][] = [
  ["name", (t) => t.name || t.id],
  ["state", (t) => t.status],
  ["priority", (t) => t.priority || Priority.NORMAL],
  ["workflow", (t) => t.workflowId],
  ["created", (t) => millis(t.createdAt)],
  ["cost", (t) => t.result?.costUsd ?? 0],
];

const statuses = [TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED];
const priorities = [Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW];

export function tasks(main: HTMLElement): View {
  let sort = { column: "created", descending: true };
  let rows: Task[] = [];
  const state = h("select", { name: "state" }, h("option", { value: "" }, "any state"), statuses.map((s) => h("option", { value: String(s) }, taskWord(s))));
  const priority = h("select", { name: "priority" }, h("option", { value: "" }, "any priority"), priorities.map((p) => h("option", { value: String(p) }, priorityWord(p))));
  const workflow = h("input", { name: "workflow", placeholder: "workflow id" });
  const label = h("input", { name: "label", placeholder: "label key=value" });
  const text = h("input", { name: "q", type: "search", placeholder: "search id, name, prompt" });
  const shown = h("span", { class: "muted", id: "task-count" });
  const head = h("div", { class: "row head" });
  const body = h("div", { class: "rows" });
  const scroller = h("div", { class: "scroller", id: "task-rows" }, body);

  const drawHead = () =>
    fill(
      head,
      COLUMNS.map(([name]) =>
        h(
          "span",
          { class: `cell ${name} sortable`, onclick: () => ((sort = { column: name, descending: sort.column === name ? !sort.descending : false }), compute()) },
          name,
          sort.column === name ? (sort.descending ? " ▼" : " ▲") : "",
        ),
      ),
    );

  const matches = (): ((t: Task) => boolean) => {
    const s = Number(state.value || 0);
    const p = Number(priority.value || 0);
    const w = workflow.value.trim();
    const [lk, lv] = label.value.includes("=") ? label.value.split("=", 2).map((x) => x.trim()) : [label.value.trim(), undefined];
    const q = text.value.trim().toLowerCase();
    return (t) =>
      (!s || t.status === s) &&
      (!p || (t.priority || Priority.NORMAL) === p) &&
      (!w || t.workflowId === w) &&
      (!lk || (lk in t.labels && (lv === undefined || t.labels[lk] === lv))) &&
      (!q || t.id.toLowerCase().includes(q) || t.name.toLowerCase().includes(q) || t.prompt.toLowerCase().includes(q));
  };

  function compute() {
    const keep = matches();
    const key = COLUMNS.find(([name]) => name === sort.column)![1];
    const sign = sort.descending ? -1 : 1;
    rows = [...store.tasks.values()].filter(keep);
    rows.sort((a, b) => {
      const x = key(a);
      const y = key(b);
      return sign * (x < y ? -1 : x > y ? 1 : a.id.localeCompare(b.id));
    });
    shown.textContent = `${rows.length} of ${store.tasks.size} tasks`;
    shown.dataset.shown = String(rows.length);
    shown.dataset.total = String(store.tasks.size);
    drawHead();
    draw();
  }

  function draw() {
    body.style.height = `${rows.length * ROW}px`;
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW) - 5);
    const last = Math.min(rows.length, first + Math.ceil(scroller.clientHeight / ROW) + 10);
    const visible: HTMLElement[] = [];
    for (let i = first; i < last; i++) {
      const t = rows[i];
      const row = h(
        "a",
        { class: "row", href: `#/task/${encodeURIComponent(t.id)}`, "data-task-id": t.id, "data-status": taskWord(t.status) },
        h("span", { class: "cell name" }, t.name || t.id),
        h("span", { class: "cell state" }, h("span", { class: `badge ${taskWord(t.status)}` }, taskWord(t.status))),
        h("span", { class: "cell priority" }, priorityWord(t.priority)),
        h("span", { class: "cell workflow" }, t.workflowId),
        h("span", { class: "cell created" }, t.createdAt ? new Date(millis(t.createdAt)).toLocaleTimeString() : ""),
        h("span", { class: "cell cost" }, t.result ? usd(t.result.costUsd) : ""),
      );
      row.style.top = `${i * ROW}px`;
      visible.push(row);
    }
    refill(body, visible);
  }

  for (const input of [state, priority]) input.addEventListener("change", compute);
  for (const input of [workflow, label, text]) input.addEventListener("input", compute);
  scroller.addEventListener("scroll", draw, { passive: true });
  main.append(h("h2", null, "Tasks"), h("div", { class: "filters" }, state, priority, workflow, label, text, shown), h("div", { class: "table" }, head, scroller));
  return { update: compute };
}
