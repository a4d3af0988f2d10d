// What the page knows of the swarm, read once and then kept current from one StreamEvents
// follower: tasks, instances, workflows, pending approvals, the status. Views subscribe and
// are told, at most every 50 ms, which events came.

import {
  EventKind,
  type Event,
  type GetStatusResponse,
  type Instance,
  type Task,
  TaskStatus,
  type Workflow,
} from "../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";
import { type Approval, ApprovalState } from "../../typescript/src/gen/claude_swarm/v1/approvals_pb.js";
import { api } from "./api.js";
import { follow, type StreamState } from "./stream.js";

export const store = {
  tasks: new Map<string, Task>(),
  instances: new Map<string, Instance>(),
  workflows: new Map<string, Workflow>(),
  /** Approvals waiting on a person. */
  approvals: new Map<string, Approval>(),
  status: undefined as GetStatusResponse | undefined,
  loaded: false,
};

type Listener = (events: Event[]) => void;
const listeners = new Set<Listener>();
let batch: Event[] = [];
let scheduled = false;

export function subscribe(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function changed(event?: Event) {
  if (event) batch.push(event);
  if (scheduled) return;
  scheduled = true;
  setTimeout(() => {
    scheduled = false;
    const events = batch;
    batch = [];
    for (const listener of listeners) listener(events);
  }, 50);
}

/** How far along a task is; an event read while the lists load never moves one back. */
function rank(s: TaskStatus): number {
  switch (s) {
    case TaskStatus.PENDING:
      return 1;
    case TaskStatus.QUEUED:
      return 2;
    case TaskStatus.RUNNING:
      return 3;
    case TaskStatus.UNSPECIFIED:
      return 0;
    default:
      return 4;
  }
}

export function putTask(task: Task, careful = false) {
  const known = store.tasks.get(task.id);
  if (careful && known && rank(known.status) > rank(task.status)) return;
  store.tasks.set(task.id, task);
}

function apply(event: Event, careful: boolean) {
  const p = event.payload;
  switch (p.case) {
    case "task":
      putTask(p.value, careful);
      break;
    case "instance":
      if (event.kind === EventKind.INSTANCE_TERMINATED) store.instances.delete(p.value.id);
      else store.instances.set(p.value.id, p.value);
      break;
    case "workflow":
      store.workflows.set(p.value.id, p.value);
      break;
    case "approval":
      if (p.value.state === ApprovalState.PENDING) store.approvals.set(p.value.id, p.value);
      else store.approvals.delete(p.value.id);
      break;
  }
}

/** Every task, 1000 at a time. */
async function loadTasks(): Promise<Task[]> {
  const tasks: Task[] = [];
  let pageToken = "";
  do {
    const page = await api.tasks.listTasks({ limit: 1000, pageToken });
    tasks.push(...page.tasks);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return tasks;
}

let statusTimer: ReturnType<typeof setTimeout> | undefined;

/** The status and the instances' samples (CPU, memory), read again soon. */
export function refreshStatus(soon = 300) {
  if (statusTimer) return;
  statusTimer = setTimeout(async () => {
    statusTimer = undefined;
    try {
      const [status, instances] = await Promise.all([
        api.swarm.getStatus({}),
        api.instances.listInstances({}),
      ]);
      store.status = status;
      store.instances = new Map(instances.instances.map((i) => [i.id, i]));
      changed();
    } catch {
      // The stream's state says when the server is away.
    }
  }, soon);
}

let lastSequence: bigint | undefined;
export const lastSeen = () => lastSequence;

/** Reads everything, then follows the events; `state` hears how the stream is doing. */
export function start(state: (s: StreamState) => void) {
  let held: Event[] | null = null;
  follow(
    {
      request: {},
      event(event) {
        lastSequence = event.sequence;
        document.body.dataset.lastSequence = String(event.sequence);
        if (held) held.push(event);
        else {
          apply(event, false);
          changed(event);
          if (event.kind !== EventKind.TASK_OUTPUT) refreshStatus();
        }
      },
      async opened(fresh) {
        if (!fresh) return;
        held = [];
        try {
          const [tasks, instances, workflows, approvals, status] = await Promise.all([
            loadTasks(),
            api.instances.listInstances({}),
            api.workflows.listWorkflows({}),
            api.approvals.listApprovals({ state: [ApprovalState.PENDING] }),
            api.swarm.getStatus({}),
          ]);
          store.tasks = new Map(tasks.map((t) => [t.id, t]));
          store.instances = new Map(instances.instances.map((i) => [i.id, i]));
          store.workflows = new Map(workflows.workflows.map((w) => [w.id, w]));
          store.approvals = new Map(approvals.approvals.map((a) => [a.id, a]));
          store.status = status;
          store.loaded = true;
        } finally {
          // What came while the lists were read is applied on top of them, carefully.
          const events = held ?? [];
          held = null;
          for (const event of events) apply(event, true);
          changed();
        }
      },
      state,
    },
    new AbortController().signal,
  );
  // CPU and memory are samples, not events: read them now and then.
  setInterval(() => refreshStatus(0), 5000);
}
