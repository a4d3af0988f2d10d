// A task: its live transcript as the agent works (text, tool calls with their input, tool
// results, permission denials), cost and tokens so far, attempts and failure class, the
// worktree branch and diff stat; cancel, or retry (a new task with the same spec).

import { EventKind, type Event, type Task } from "../../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";
import { api, caller, message } from "../api.js";
import { h, refill } from "../dom.js";
import { failureWord, priorityWord, taskWord, TERMINAL, time, usd } from "../format.js";
import { putTask, store } from "../live.js";
import type { View } from "../main.js";
import { follow } from "../stream.js";

type Json = Record<string, unknown>;

function pretty(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

/** The transcript entries of one stream-json line. */
function entries(raw: string, fallback: string): HTMLElement[] {
  let line: Json;
  try {
    line = JSON.parse(raw) as Json;
  } catch {
    return fallback ? [h("div", { class: "entry text" }, fallback)] : [];
  }
  const blocks = ((line.message as Json | undefined)?.content ?? []) as Json[];
  const out: HTMLElement[] = [];
  if (line.type === "assistant" && Array.isArray(blocks)) {
    for (const b of blocks) {
      if (b.type === "text") out.push(h("div", { class: "entry text" }, String(b.text)));
      else if (b.type === "tool_use")
        out.push(h("div", { class: "entry tool" }, h("b", null, `tool call: ${String(b.name)}`), h("pre", null, pretty(b.input))));
    }
  } else if (line.type === "user" && Array.isArray(blocks)) {
    for (const b of blocks) {
      if (b.type === "tool_result") {
        const content = Array.isArray(b.content) ? (b.content as Json[]).map((c) => c.text ?? "").join("\n") : b.content;
        out.push(h("div", { class: `entry result${b.is_error ? " error" : ""}` }, h("b", null, b.is_error ? "tool error" : "tool result"), h("pre", null, pretty(content))));
      }
    }
  } else if (line.type === "result") {
    out.push(h("div", { class: "entry final" }, h("b", null, `result (${String(line.subtype ?? "")})`), h("pre", null, pretty(line.result ?? ""))));
  } else if (line.type === "system" && line.subtype === "init") {
    out.push(h("div", { class: "entry system" }, `session ${String(line.session_id ?? "")} · model ${String(line.model ?? "")}`));
  }
  return out;
}

function field(name: string, value: unknown) {
  return value === "" || value === undefined ? null : h("tr", null, h("th", null, name), h("td", null, String(value)));
}

export function taskPage(main: HTMLElement, id: string): View {
  const stop = new AbortController();
  const head = h("div");
  const facts = h("div", { class: "cards" });
  const transcript = h("div", { class: "transcript", id: "transcript" });
  const tokens = { input: 0, output: 0 };
  const notice = h("p", { class: "notice" });
  main.append(head, notice, facts, h("h3", null, "Transcript"), transcript);

  const show = (event: Event) => {
    const p = event.payload;
    if (p.case === "output") {
      try {
        const usage = ((JSON.parse(p.value.raw) as Json).message as Json | undefined)?.usage as Json | undefined;
        if (usage) {
          tokens.input += Number(usage.input_tokens ?? 0);
          tokens.output += Number(usage.output_tokens ?? 0);
        }
      } catch {
        // Not JSON: shown as text.
      }
      transcript.append(...entries(p.value.raw, p.value.text));
    } else if (p.case === "denial") {
      transcript.append(h("div", { class: "entry denied" }, h("b", null, `permission denied: ${p.value.toolName}`), p.value.message ? h("p", null, p.value.message) : null, h("pre", null, pretty(p.value.input ?? {}))));
    } else if (p.case === "approval" && event.kind === EventKind.APPROVAL_REQUESTED) {
      transcript.append(h("div", { class: "entry ask" }, h("a", { href: "#/approvals" }, `waiting for approval: ${p.value.toolName}`)));
    } else if (event.kind === EventKind.TASK_STARTED && p.case === "task") {
      transcript.append(h("div", { class: "entry system" }, `attempt ${p.value.attempts} started on ${p.value.instanceId}`));
    } else if (event.kind === EventKind.TASK_RETRYING && p.case === "task") {
      transcript.append(h("div", { class: "entry system" }, `retrying: ${p.value.error}`));
    }
    if (p.case === "task") putTask(p.value);
    update();
  };

  const act = async (what: () => Promise<unknown>) => {
    try {
      await what();
    } catch (error) {
      notice.textContent = message(error);
    }
  };

  function update() {
    const t: Task | undefined = store.tasks.get(id);
    if (!t) return;
    const done = TERMINAL.has(t.status);
    const r = t.result;
    refill(
      head,
      h(
        "h2",
        null,
        t.name || t.id,
        " ",
        h("span", { class: `badge ${taskWord(t.status)}`, id: "task-status" }, taskWord(t.status)),
        caller.can("operate") && !done ? h("button", { id: "cancel", class: "danger", onclick: () => act(() => api.tasks.cancelTask({ taskId: id })) }, "Cancel") : null,
        caller.can("operate") && done
          ? h(
              "button",
              {
                id: "retry",
                onclick: () =>
                  act(async () => {
                    const made = await api.tasks.submitTask({
                      task: { prompt: t.prompt, name: t.name, workingDirectory: t.workingDirectory, priority: t.priority, model: t.model, labels: t.labels, metadata: t.metadata, allowedTools: t.allowedTools, maxTurns: t.maxTurns, permissionMode: t.permissionMode, isolation: t.isolation, account: t.account, options: t.options, permissions: t.permissions },
                    });
                    location.hash = `#/task/${encodeURIComponent(made.taskId)}`;
                  }),
              },
              "Retry as a new task",
            )
          : null,
      ),
      h("p", { class: "prompt" }, t.prompt),
    );
    refill(
      facts,
      h(
        "table",
        { class: "card facts" },
        field("id", t.id),
        field("priority", priorityWord(t.priority)),
        t.workflowId ? h("tr", null, h("th", null, "workflow"), h("td", null, h("a", { href: `#/workflow/${encodeURIComponent(t.workflowId)}` }, t.workflowId))) : null,
        field("instance", t.instanceId),
        field("model", t.model),
        field("depends on", t.dependsOn.join(", ")),
        field("created", time(t.createdAt)),
        field("started", time(t.startedAt)),
        field("completed", time(t.completedAt)),
      ),
      h(
        "table",
        { class: "card facts" },
        field("cost", r ? usd(r.costUsd) : "so far: unknown until the result"),
        field("tokens", r?.usage ? `${r.usage.inputTokens} in, ${r.usage.outputTokens} out` : `so far: ${tokens.input} in, ${tokens.output} out`),
        field("turns", r?.numTurns),
        field("attempts", `${t.attempts} (retries allowed: ${t.retries})`),
        field("failure class", t.failureClass ? failureWord(t.failureClass) : ""),
        field("error", t.error),
        field("branch", r?.branch),
        r?.diffStat ? h("tr", null, h("th", null, "diff stat"), h("td", null, h("pre", null, r.diffStat))) : null,
      ),
      t.history.length
        ? h(
            "table",
            { class: "card grid" },
            h("tr", null, ["attempt", "instance", "failure class", "error"].map((c) => h("th", null, c))),
            t.history.map((a) => h("tr", null, h("td", null, a.attempt), h("td", null, a.instanceId), h("td", null, failureWord(a.failureClass)), h("td", null, a.error))),
          )
        : null,
    );
  }

  void (async () => {
    try {
      if (!store.tasks.has(id)) putTask(await api.tasks.getTask({ taskId: id }));
      update();
    } catch (error) {
      notice.textContent = message(error);
    }
  })();
  // The task's own events from the first retained one: its whole transcript, then live.
  follow({ request: { taskId: id }, after: 0n, event: show }, stop.signal);
  return { update, destroy: () => stop.abort() };
}
