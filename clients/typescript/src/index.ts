// A thin client over the code generated from proto/claude_swarm/v1/swarm.proto
// (src/gen, by `buf generate` with protoc-gen-es). Every method returns the generated
// message types; a failed call rejects with a ConnectError whose `code` is the gRPC status
// (Code.InvalidArgument, Code.NotFound, ...) and whose `rawMessage` is the server's message,
// which names the field at fault (`invalid task.prompt: must not be empty`).

import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { readFileSync } from "node:fs";
import {
  EventKind,
  EventService,
  InstanceService,
  SwarmService,
  TaskService,
  TaskStatus,
  WorkflowService,
  WorkflowStatus,
  type Event,
  type StreamEventsRequestSchema,
  type Task,
  type TaskSpecSchema,
  type Workflow,
} from "./gen/claude_swarm/v1/swarm_pb.js";

export * from "./gen/claude_swarm/v1/swarm_pb.js";
export { Code, ConnectError };

/** The kinds that end a task: exactly one of them is published per task. */
export const TERMINAL_TASK_KINDS: readonly EventKind[] = [
  EventKind.TASK_COMPLETED,
  EventKind.TASK_FAILED,
  EventKind.TASK_CANCELLED,
  EventKind.TASK_SKIPPED,
];

const TERMINAL_TASK_STATUSES: ReadonlySet<TaskStatus> = new Set([
  TaskStatus.COMPLETED,
  TaskStatus.FAILED,
  TaskStatus.CANCELLED,
  TaskStatus.SKIPPED,
]);

/** Fields of a TaskSpec besides the prompt, as the generated `TaskSpec` names them. */
export type TaskFields = Omit<MessageInitShape<typeof TaskSpecSchema>, "prompt" | "$typeName">;
export type EventFilter = Omit<MessageInitShape<typeof StreamEventsRequestSchema>, "$typeName">;

export interface SwarmClientOptions {
  /**
   * "grpc-web" (HTTP/1.1, what browsers speak; the default) or "grpc" (HTTP/2). Both are
   * served on the same port. Ignored when `transport` is given.
   */
  protocol?: "grpc-web" | "grpc";
  /** Any Connect transport, for TLS, interceptors or a browser's fetch. */
  transport?: Transport;
  /**
   * The API key, when the server has keys: sent with every call as
   * `authorization: Bearer <key>`. With `transport`, add `bearer(key)` to its interceptors.
   */
  apiKey?: string;
  /** Bound on each unary call in milliseconds (default 30 s). */
  timeoutMs?: number;
  /**
   * For an `https://` server: PEM certificate(s) to trust besides the system's roots (a
   * self-signed server's, or its CA). Defaults to the file named by `SWARM_CA_CERT`.
   */
  caCert?: string | Buffer;
}

export interface WaitOptions {
  /** Reject with Code.DeadlineExceeded after this many milliseconds. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** An interceptor that sends `authorization: Bearer <apiKey>` with every call. */
export function bearer(apiKey: string): Interceptor {
  return (next) => async (request) => {
    request.header.set("authorization", `Bearer ${apiKey}`);
    return await next(request);
  };
}

export class SwarmClient {
  readonly tasks: Client<typeof TaskService>;
  readonly workflows: Client<typeof WorkflowService>;
  readonly events: Client<typeof EventService>;
  readonly instances: Client<typeof InstanceService>;
  readonly swarm: Client<typeof SwarmService>;
  private readonly timeoutMs: number;

  /** `baseUrl` is the server, e.g. "http://127.0.0.1:50051". */
  constructor(baseUrl = "http://127.0.0.1:50051", options: SwarmClientOptions = {}) {
    const interceptors = options.apiKey === undefined ? [] : [bearer(options.apiKey)];
    const caFile = process.env.SWARM_CA_CERT;
    const ca =
      options.caCert ??
      (baseUrl.startsWith("https://") && caFile ? readFileSync(caFile) : undefined);
    const nodeOptions = ca === undefined ? {} : { nodeOptions: { ca } };
    const transport =
      options.transport ??
      (options.protocol === "grpc"
        ? createGrpcTransport({ baseUrl, interceptors, ...nodeOptions })
        : createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors, ...nodeOptions }));
    this.tasks = createClient(TaskService, transport);
    this.workflows = createClient(WorkflowService, transport);
    this.events = createClient(EventService, transport);
    this.instances = createClient(InstanceService, transport);
    this.swarm = createClient(SwarmService, transport);
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Submits one task and returns it as accepted. */
  async submit(prompt: string, fields: TaskFields = {}): Promise<Task> {
    const reply = await this.tasks.submitTask(
      { task: { ...fields, prompt } },
      { timeoutMs: this.timeoutMs },
    );
    return required(reply.task, "SubmitTaskResponse.task");
  }

  get(taskId: string): Promise<Task> {
    return this.tasks.getTask({ taskId }, { timeoutMs: this.timeoutMs });
  }

  /** Cancels a task; a running one's processes are stopped before this resolves. */
  cancel(taskId: string): Promise<Task> {
    return this.tasks.cancelTask({ taskId }, { timeoutMs: this.timeoutMs });
  }

  /**
   * Waits for a task to end (COMPLETED, FAILED, CANCELLED or SKIPPED) and returns it, by
   * following StreamEvents from the start of the retained history, filtered to the task and
   * the terminal kinds.
   */
  async wait(taskId: string, options: WaitOptions = {}): Promise<Task> {
    const found = await this.firstEvent(
      { taskId, kinds: [...TERMINAL_TASK_KINDS] },
      (event) => event.taskId === taskId,
      async () => {
        const task = await this.get(taskId);
        return TERMINAL_TASK_STATUSES.has(task.status) ? task : undefined;
      },
      options,
    );
    if (!isEvent(found)) return found;
    return found.payload.case === "task" ? found.payload.value : this.get(taskId);
  }

  /** Submits a workflow document (YAML) and returns it as started. */
  async startWorkflow(yaml: string, variables: Record<string, string> = {}): Promise<Workflow> {
    const reply = await this.workflows.executeWorkflow(
      { yaml, variables },
      { timeoutMs: this.timeoutMs },
    );
    return required(reply.workflow, "ExecuteWorkflowResponse.workflow");
  }

  /** Waits for WORKFLOW_FINISHED and returns the workflow as it finished. */
  async waitWorkflow(workflowId: string, options: WaitOptions = {}): Promise<Workflow> {
    const found = await this.firstEvent(
      { workflowId, kinds: [EventKind.WORKFLOW_FINISHED] },
      (event) => event.workflowId === workflowId,
      async () => {
        const workflow = await this.workflows.getWorkflow(
          { workflowId },
          { timeoutMs: this.timeoutMs },
        );
        return workflow.status === WorkflowStatus.RUNNING ? undefined : workflow;
      },
      options,
    );
    if (!isEvent(found)) return found;
    return found.payload.case === "workflow"
      ? found.payload.value
      : this.workflows.getWorkflow({ workflowId }, { timeoutMs: this.timeoutMs });
  }

  /** Submits a workflow and follows its events until it finishes. */
  async runWorkflow(
    yaml: string,
    variables: Record<string, string> = {},
    options: WaitOptions = {},
  ): Promise<Workflow> {
    const workflow = await this.startWorkflow(yaml, variables);
    return this.waitWorkflow(workflow.id, options);
  }

  /**
   * The raw event stream. `afterSequence` unset is live only; 0n replays everything
   * retained first. A live stream never ends by itself: abort `signal` to stop it (a
   * `break` alone leaves the request open). Bound it with your own timer on that signal
   * rather than `timeoutMs`: connect-es 2.1 keeps that timer alive after an abort.
   */
  streamEvents(filter: EventFilter, options: { signal?: AbortSignal } = {}): AsyncIterable<Event> {
    return this.events.streamEvents(filter, { signal: options.signal });
  }

  /**
   * The first event of `filter` (replayed from the start) that `matches`, or what
   * `alreadyDone` finds first (an end older than the server's retained history). Resumes
   * after DATA_LOSS (a reader too slow to keep up) from the last event seen.
   */
  private async firstEvent<T>(
    filter: EventFilter,
    matches: (event: Event) => boolean,
    alreadyDone: () => Promise<T | undefined>,
    options: WaitOptions,
  ): Promise<Event | T> {
    const done = await alreadyDone();
    if (done !== undefined) return done;
    // The deadline is kept here rather than passed as the call's `timeoutMs`: connect-es
    // 2.1 leaves that timer running when a stream is aborted mid-way (as this one is once
    // the event arrives), which holds node's event loop open until it fires.
    const abort = new AbortController();
    const stop = () => abort.abort(options.signal?.reason);
    if (options.signal?.aborted) stop();
    options.signal?.addEventListener("abort", stop);
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(
            () => abort.abort(new ConnectError("the wait timed out", Code.DeadlineExceeded)),
            options.timeoutMs,
          );
    try {
      let after = 0n;
      for (;;) {
        const call = new AbortController();
        const forward = () => call.abort(abort.signal.reason);
        abort.signal.addEventListener("abort", forward);
        if (abort.signal.aborted) forward();
        try {
          const stream = this.events.streamEvents(
            { ...filter, afterSequence: after },
            { signal: call.signal },
          );
          for await (const event of stream) {
            after = event.sequence;
            if (matches(event)) return event;
          }
          throw new ConnectError("the event stream ended before the awaited event", Code.Unavailable);
        } catch (error) {
          if (abort.signal.aborted || ConnectError.from(error).code !== Code.DataLoss) throw error;
          // Too slow a reader: resume after the last event seen, nothing is lost.
        } finally {
          abort.signal.removeEventListener("abort", forward);
          call.abort();
        }
      }
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", stop);
    }
  }
}

function isEvent(value: unknown): value is Event {
  return (value as Event | undefined)?.$typeName === "claude_swarm.v1.Event";
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new ConnectError(`${what} is missing`, Code.Internal);
  return value;
}
