// Actions: submit a task, run a workflow (its YAML checked as it is typed, errors placed at
// their line and column, before anything runs), scale the pool.

import { Priority } from "../../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";
import { api, caller, message } from "../api.js";
import { fill, h } from "../dom.js";
import { priorityWord } from "../format.js";
import { store } from "../live.js";
import type { View } from "../main.js";

/** `(line L, column C)` in a server message. */
function place(text: string): { line: number; column: number } | undefined {
  const m = /line (\d+), column (\d+)/.exec(text);
  return m ? { line: Number(m[1]), column: Number(m[2]) } : undefined;
}

function value(form: HTMLFormElement, name: string): string {
  return (form.elements.namedItem(name) as HTMLInputElement).value.trim();
}

export function actions(main: HTMLElement): View {
  const submitted = h("p", { class: "notice", id: "submitted" });
  const submit = h(
    "form",
    {
      class: "card",
      id: "submit-task",
      onsubmit: async (e: SubmitEvent) => {
        e.preventDefault();
        const form = e.target as HTMLFormElement;
        try {
          const made = await api.tasks.submitTask({
            task: {
              prompt: value(form, "prompt"),
              priority: Number(value(form, "priority")) as Priority,
              workingDirectory: value(form, "working_directory"),
              model: value(form, "model"),
              dependsOn: value(form, "depends_on").split(/[\s,]+/).filter(Boolean),
            },
          });
          fill(submitted, "Submitted ", h("a", { href: `#/task/${encodeURIComponent(made.taskId)}`, "data-task-id": made.taskId }, made.taskId));
          form.reset();
        } catch (error) {
          submitted.textContent = message(error);
        }
      },
    },
    h("h3", null, "Submit a task"),
    h("textarea", { name: "prompt", rows: 4, required: true, placeholder: "What should the agent do?" }),
    h("label", null, "priority ", h("select", { name: "priority" }, [Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW].map((p) => h("option", { value: String(p), selected: p === Priority.NORMAL }, priorityWord(p))))),
    h("input", { name: "working_directory", placeholder: "working directory (the server's default)" }),
    h("input", { name: "model", placeholder: "model (the default)" }),
    h("input", { name: "depends_on", placeholder: "depends on: task ids, comma separated" }),
    h("button", { type: "submit" }, "Submit"),
    submitted,
  );

  const yaml = h("textarea", { name: "yaml", id: "workflow-yaml", rows: 14, spellcheck: false, placeholder: "name: my-workflow\ntasks:\n  - id: plan\n    prompt: ..." });
  const verdict = h("div", { class: "verdict", id: "workflow-verdict" });
  const run = h("button", { type: "submit", id: "run-workflow", disabled: true }, "Run workflow");
  let checking = 0;
  const validate = async () => {
    const mine = ++checking;
    run.disabled = true;
    if (!yaml.value.trim()) return fill(verdict);
    try {
      const checked = await api.workflows.validateWorkflow({ yaml: yaml.value });
      if (mine !== checking) return;
      fill(
        verdict,
        h("p", { class: "ok" }, `valid: ${checked.name}, ${checked.taskCount} tasks`),
        checked.warnings.map((w) => h("p", { class: "warning" }, w.line ? `line ${w.line}, column ${w.column}: ` : "", `${w.field}: ${w.message}`)),
      );
      run.disabled = false;
    } catch (error) {
      if (mine !== checking) return;
      const text = message(error);
      const at = place(text);
      fill(verdict, h("p", { class: "error", "data-line": at?.line, "data-column": at?.column }, at ? `line ${at.line}, column ${at.column}: ` : "", text));
      if (at) {
        // Put the cursor where the error is.
        const lines = yaml.value.split("\n");
        const offset = lines.slice(0, at.line - 1).reduce((n, l) => n + l.length + 1, 0) + at.column - 1;
        yaml.setSelectionRange(offset, offset);
      }
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  yaml.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(validate, 300);
  });
  const workflow = h(
    "form",
    {
      class: "card",
      id: "run-workflow-form",
      onsubmit: async (e: SubmitEvent) => {
        e.preventDefault();
        try {
          const made = await api.workflows.executeWorkflow({ yaml: yaml.value });
          store.workflows.set(made.workflowId, made.workflow!);
          location.hash = `#/workflow/${encodeURIComponent(made.workflowId)}`;
        } catch (error) {
          fill(verdict, h("p", { class: "error" }, message(error)));
        }
      },
    },
    h("h3", null, "Run a workflow"),
    yaml,
    h("button", { type: "button", onclick: validate }, "Check"),
    run,
    verdict,
  );

  const scaled = h("p", { class: "notice" });
  const scale = h(
    "form",
    {
      class: "card",
      id: "scale",
      onsubmit: async (e: SubmitEvent) => {
        e.preventDefault();
        try {
          const r = await api.instances.scaleInstances({ target: Number(value(e.target as HTMLFormElement, "target")) });
          scaled.textContent = `${r.instances.length} instances`;
        } catch (error) {
          scaled.textContent = message(error);
        }
      },
    },
    h("h3", null, "Scale the pool"),
    h("input", { name: "target", type: "number", min: 0, required: true, value: String(store.status?.instances?.total ?? 1) }),
    h("button", { type: "submit" }, "Scale"),
    scaled,
  );

  main.append(h("h2", null, "Actions"), h("div", { class: "actions" }, caller.can("operate") ? [submit, workflow] : h("p", null, "This key may only read."), caller.can("admin") ? scale : null));
  return { update() {} };
}
