// Following StreamEvents for as long as the page wants: it resumes after a disconnect or a
// server restart from the last sequence number it saw (the server replays what came
// since, so nothing is missed and nothing is seen twice), with a backoff between tries.

import type { Event } from "../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";
import { api, Code, ConnectError } from "./api.js";

export type StreamState = "connecting" | "live" | "reconnecting" | "denied";

export interface Follow {
  /** Which events (task_id, workflow_id, kinds); `after_sequence` is the follower's. */
  request: { taskId?: string; workflowId?: string };
  /** Resume after this sequence; undefined: live events only, from the first connection. */
  after?: bigint;
  event(event: Event): void;
  /**
   * The server is streaming: `fresh` when the follower has no position to resume from
   * (the first connection without `after`, or the server no longer holds what came
   * since): what it shows must be read anew, as events from now on follow.
   */
  opened?(fresh: boolean): void | Promise<void>;
  state?(state: StreamState): void;
}

const FIRST_DELAY = 250;
const MAX_DELAY = 8000;

export function follow(f: Follow, signal: AbortSignal): void {
  let after = f.after;
  let delay = FIRST_DELAY;
  const run = async () => {
    while (!signal.aborted) {
      let received = false;
      try {
        const fresh = after === undefined;
        let headers = () => {};
        const opened = new Promise<void>((resolve) => (headers = resolve));
        const events = api.events.streamEvents(
          { ...f.request, afterSequence: after },
          { signal, onHeader: () => headers() },
        );
        const iterator = events[Symbol.asyncIterator]();
        let next = iterator.next();
        // Headers come as soon as the server has subscribed, before any event.
        await Promise.race([opened, next]);
        f.state?.("live");
        delay = FIRST_DELAY;
        await f.opened?.(fresh);
        for (;;) {
          const step = await next;
          if (step.done) break;
          received = true;
          after = step.value.sequence;
          f.event(step.value);
          next = iterator.next();
        }
      } catch (error) {
        if (signal.aborted) return;
        const e = ConnectError.from(error);
        if (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied) {
          f.state?.("denied");
          return;
        }
        // Asked to resume from events the server no longer holds: start afresh.
        if (e.code === Code.DataLoss && !received) after = undefined;
      }
      if (signal.aborted) return;
      f.state?.("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, MAX_DELAY);
    }
  };
  f.state?.("connecting");
  void run();
}
