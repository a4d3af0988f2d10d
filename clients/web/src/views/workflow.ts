// Workflows: the list, and one workflow's DAG drawn as a graph (a column per depth, edges
// from each task to the tasks it waits on), each node coloured by its task's state and
// redrawn as its events come; cancel.

import type { Task } from "../../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";
import { api, caller, message } from "../api.js";
import { h, refill, svg } from "../dom.js";
import { taskWord, time, usd, workflowWord } from "../format.js";
import { putTask, store } from "../live.js";
import type { View } from "../main.js";

export function workflows(main: HTMLElement): View {
  const table = h("table", { class: "grid" });
  main.append(h("h2", null, "Workflows"), table);
  return {
    update() {
      const all = [...store.workflows.values()].sort((a, b) => Number((b.createdAt?.seconds ?? 0n) - (a.createdAt?.seconds ?? 0n)));
      refill(
        table,
        h("tr", null, ["workflow", "state", "tasks", "cost", "created"].map((c) => h("th", null, c))),
        all.map((w) =>
          h(
            "tr",
            { "data-workflow-id": w.id },
            h("td", null, h("a", { href: `#/workflow/${encodeURIComponent(w.id)}` }, w.name || w.id)),
            h("td", null, h("span", { class: `badge ${workflowWord(w.status)}` }, workflowWord(w.status))),
            h("td", null, `${w.taskCounts?.completed ?? 0n} of ${w.taskIds.length} completed`),
            h("td", null, usd(w.totalCostUsd)),
            h("td", null, time(w.createdAt)),
          ),
        ),
      );
    },
  };
}

const W = 180;
const H = 44;
const GAP_X = 60;
const GAP_Y = 18;

/** Depth of each task: 0 without dependencies in the workflow, else one more than the deepest. */
function depths(tasks: Task[]): Map<string, number> {
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const depth = new Map<string, number>();
  const visit = (t: Task, seen: Set<string>): number => {
    const known = depth.get(t.id);
    if (known !== undefined) return known;
    if (seen.has(t.id)) return 0;
    seen.add(t.id);
    let d = 0;
    for (const dep of t.dependsOn) {
      const up = byId.get(dep);
      if (up) d = Math.max(d, visit(up, seen) + 1);
    }
    depth.set(t.id, d);
    return d;
  };
  for (const t of tasks) visit(t, new Set());
  return depth;
}

export function workflowPage(main: HTMLElement, id: string): View {
  const head = h("div");
  const notice = h("p", { class: "notice" });
  const graph = h("div", { class: "graph", id: "dag" });
  main.append(head, notice, graph);
  let fetched = false;

  async function fetchMissing() {
    fetched = true;
    try {
      const w = await api.workflows.getWorkflow({ workflowId: id });
      store.workflows.set(w.id, w);
      const missing = w.taskIds.filter((t) => !store.tasks.has(t));
      for (const t of await Promise.all(missing.map((taskId) => api.tasks.getTask({ taskId })))) putTask(t);
      update();
    } catch (error) {
      notice.textContent = message(error);
    }
  }

  function update() {
    const w = store.workflows.get(id);
    if (!w || w.taskIds.some((t) => !store.tasks.has(t))) {
      if (!fetched) void fetchMissing();
      if (!w) return;
    }
    const running = workflowWord(w.status) === "running";
    refill(
      head,
      h(
        "h2",
        null,
        w.name || w.id,
        " ",
        h("span", { class: `badge ${workflowWord(w.status)}`, id: "workflow-status" }, workflowWord(w.status)),
        caller.can("operate") && running
          ? h(
              "button",
              {
                id: "cancel-workflow",
                class: "danger",
                onclick: async () => {
                  try {
                    await api.workflows.cancelWorkflow({ workflowId: id });
                  } catch (error) {
                    notice.textContent = message(error);
                  }
                },
              },
              "Cancel workflow",
            )
          : null,
      ),
      h("p", { class: "muted" }, w.description, ` ${w.taskIds.length} tasks · ${usd(w.totalCostUsd)}${w.budgetUsd ? ` of ${usd(w.budgetUsd)}` : ""}`),
    );
    const tasks = w.taskIds.map((t) => store.tasks.get(t)).filter((t): t is Task => !!t);
    const depth = depths(tasks);
    const columns: Task[][] = [];
    for (const t of tasks) (columns[depth.get(t.id) ?? 0] ??= []).push(t);
    const at = new Map<string, { x: number; y: number }>();
    columns.forEach((column, c) => column.forEach((t, r) => at.set(t.id, { x: c * (W + GAP_X) + 10, y: r * (H + GAP_Y) + 10 })));
    const width = columns.length * (W + GAP_X) + 20;
    const height = Math.max(...columns.map((c) => c.length), 1) * (H + GAP_Y) + 20;
    const edges = tasks.flatMap((t) =>
      t.dependsOn
        .filter((d) => at.has(d))
        .map((d) => {
          const from = at.get(d)!;
          const to = at.get(t.id)!;
          const x1 = from.x + W;
          const y1 = from.y + H / 2;
          const x2 = to.x;
          const y2 = to.y + H / 2;
          return svg("path", { class: "edge", d: `M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" });
        }),
    );
    const nodes = tasks.map((t) => {
      const p = at.get(t.id)!;
      const state = taskWord(t.status);
      const link = svg(
        "a",
        { href: `#/task/${encodeURIComponent(t.id)}`, class: `node ${state}`, "data-task-id": t.id, "data-status": state },
        svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: 6 }),
        svg("text", { x: p.x + 10, y: p.y + 18 }, (t.name || t.id).slice(0, 24)),
        svg("text", { x: p.x + 10, y: p.y + 35, class: "state" }, state),
      );
      return link;
    });
    refill(
      graph,
      svg(
        "svg",
        { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `the tasks of ${w.name || w.id}` },
        svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" }, svg("path", { d: "M0,0 L10,5 L0,10 z" }))),
        ...edges,
        ...nodes,
      ),
    );
  }
  return { update };
}
