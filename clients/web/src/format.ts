// How values read on the page: enum words as the REST API and the CLI print them, times,
// sizes, money.

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AccountState,
  InstanceStatus,
  Priority,
  TaskStatus,
  WorkflowStatus,
  FailureClass,
} from "../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";
import { ApprovalState } from "../../typescript/src/gen/claude_swarm/v1/approvals_pb.js";

function word(table: Record<number, string>, value: number): string {
  return (table[value] ?? "unspecified").toLowerCase();
}

export const taskWord = (s: TaskStatus) => word(TaskStatus, s);
export const priorityWord = (p: Priority) => word(Priority, p === Priority.UNSPECIFIED ? Priority.NORMAL : p);
export const instanceWord = (s: InstanceStatus) => word(InstanceStatus, s);
export const workflowWord = (s: WorkflowStatus) => word(WorkflowStatus, s);
export const failureWord = (f: FailureClass) => word(FailureClass, f);
export const approvalWord = (s: ApprovalState) => word(ApprovalState, s);
export const accountWord = (s: AccountState) => word(AccountState, s);

export const TERMINAL = new Set([
  TaskStatus.COMPLETED,
  TaskStatus.FAILED,
  TaskStatus.CANCELLED,
  TaskStatus.SKIPPED,
]);

export function time(t: Timestamp | undefined): string {
  return t ? timestampDate(t).toLocaleString() : "";
}

export function millis(t: Timestamp | undefined): number {
  return t ? timestampDate(t).getTime() : 0;
}

export function usd(value: number): string {
  return `$${value.toFixed(value < 1 ? 4 : 2)}`;
}

export function bytes(value: bigint | number): string {
  const n = Number(value);
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}
