"""A thin client over the gRPC code generated from proto/claude_swarm/v1/swarm.proto.

Every method returns the generated messages (`swarm_pb2.Task`, `swarm_pb2.Workflow`, ...)
and lets `grpc.RpcError` through: `error.code()` is the status (INVALID_ARGUMENT, NOT_FOUND,
ALREADY_EXISTS, FAILED_PRECONDITION, ...) and `error.details()` the server's message, which
names the field at fault (`invalid task.prompt: must not be empty`).
"""

from __future__ import annotations

import collections
import os
import time
from typing import Mapping, Optional, Sequence

import grpc

from .v1 import swarm_pb2 as pb
from .v1 import swarm_pb2_grpc as rpc

#: The kinds that end a task: exactly one of them is published per task.
TERMINAL_TASK_KINDS = (
    pb.EVENT_KIND_TASK_COMPLETED,
    pb.EVENT_KIND_TASK_FAILED,
    pb.EVENT_KIND_TASK_CANCELLED,
    pb.EVENT_KIND_TASK_SKIPPED,
)
TERMINAL_TASK_STATUSES = frozenset(
    {
        pb.TASK_STATUS_COMPLETED,
        pb.TASK_STATUS_FAILED,
        pb.TASK_STATUS_CANCELLED,
        pb.TASK_STATUS_SKIPPED,
    }
)

# TaskSpec enum fields that also take a short word ("high", "fail_fast", "worktree").
_ENUM_PREFIXES = {
    "priority": "PRIORITY_",
    "on_failure": "FAILURE_POLICY_",
    "isolation": "ISOLATION_",
}


def task_spec(prompt: str, **fields) -> pb.TaskSpec:
    """A `TaskSpec` from keyword arguments named as in the proto.

    Enum fields take the generated constants, their full names (`"PRIORITY_HIGH"`) or the
    short words the REST API uses (`"high"`); `options` takes an `AgentOptions` or a dict.
    """
    for field, prefix in _ENUM_PREFIXES.items():
        value = fields.get(field)
        if isinstance(value, str) and not value.upper().startswith(prefix):
            fields[field] = prefix + value.upper()
    return pb.TaskSpec(prompt=prompt, **fields)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    """A call's details, rebuilt with one more metadata entry."""


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Sends `authorization: Bearer <key>` with every call (streams included)."""

    def __init__(self, api_key: str):
        self._entry = ("authorization", f"Bearer {api_key}")

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            (*(details.metadata or ()), self._entry),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


class SwarmStreamEnded(Exception):
    """The event stream ended before the awaited event (the server is shutting down)."""


class Client:
    """A connection to one claude-swarm server (gRPC over HTTP/2, plaintext by default).

    The generated stubs are exposed for everything the helpers do not cover:
    `tasks`, `workflows`, `events`, `instances` and `swarm`.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        channel: Optional[grpc.Channel] = None,
        timeout: Optional[float] = 30.0,
        api_key: Optional[str] = None,
        ca_cert: Optional[str] = None,
    ):
        """`target` is `host:port` (an `http://` prefix is accepted; `https://` means TLS);
        `timeout` bounds each unary call in seconds (None: unbounded). Pass `api_key` when
        the server has keys (it is sent with every call), and `ca_cert`, the path of a PEM
        certificate to trust (a self-signed server's, or its CA; default `SWARM_CA_CERT`),
        for a server with TLS: either `https://` or `ca_cert` makes the channel TLS, which
        trusts the system's roots otherwise. Pass `channel` for other options."""
        tls = target.startswith("https://")
        for scheme in ("http://", "https://", "dns:///"):
            if target.startswith(scheme):
                target = target[len(scheme) :]
        ca_cert = ca_cert if ca_cert is not None else os.environ.get("SWARM_CA_CERT") if tls else None
        if channel is None and (tls or ca_cert is not None):
            roots = None
            if ca_cert is not None:
                with open(ca_cert, "rb") as pem:
                    roots = pem.read()
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            channel = grpc.secure_channel(target, credentials)
        self.channel = channel if channel is not None else grpc.insecure_channel(target)
        if api_key is not None:
            self.channel = grpc.intercept_channel(self.channel, _Bearer(api_key))
        self.timeout = timeout
        self.tasks = rpc.TaskServiceStub(self.channel)
        self.workflows = rpc.WorkflowServiceStub(self.channel)
        self.events = rpc.EventServiceStub(self.channel)
        self.instances = rpc.InstanceServiceStub(self.channel)
        self.swarm = rpc.SwarmServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- tasks ---------------------------------------------------------------------------

    def submit(self, prompt: str, **fields) -> pb.Task:
        """Submits one task (fields as in `TaskSpec`) and returns it as accepted."""
        request = pb.SubmitTaskRequest(task=task_spec(prompt, **fields))
        return self.tasks.SubmitTask(request, timeout=self.timeout).task

    def submit_all(self, specs: Sequence[pb.TaskSpec]) -> list:
        """Submits a batch, all or nothing (build the specs with `task_spec`)."""
        request = pb.SubmitTasksRequest(tasks=specs)
        return list(self.tasks.SubmitTasks(request, timeout=self.timeout).tasks)

    def get(self, task_id: str) -> pb.Task:
        return self.tasks.GetTask(pb.GetTaskRequest(task_id=task_id), timeout=self.timeout)

    def cancel(self, task_id: str) -> pb.Task:
        """Cancels a task; a running one's processes are stopped before this returns."""
        request = pb.CancelTaskRequest(task_id=task_id)
        return self.tasks.CancelTask(request, timeout=self.timeout)

    def wait(self, task_id: str, timeout: Optional[float] = None) -> pb.Task:
        """Waits for a task to end and returns it (COMPLETED, FAILED, CANCELLED or SKIPPED).

        Follows `StreamEvents` from the start of the retained history, filtered to the task
        and the terminal kinds, so an event published before the call is not missed. Raises
        `grpc.RpcError` (DEADLINE_EXCEEDED) when `timeout` seconds pass first.
        """
        event = self._first_event(
            pb.StreamEventsRequest(task_id=task_id, kinds=TERMINAL_TASK_KINDS),
            timeout,
            lambda e: e.task_id == task_id,
            # Ended before the retained history begins: nothing to replay, but it has ended.
            lambda: _terminal_or_none(self.get(task_id)),
        )
        return event.task if isinstance(event, pb.Event) else event

    # ---- workflows -----------------------------------------------------------------------

    def start_workflow(self, yaml: str, variables: Optional[Mapping[str, str]] = None):
        """Submits a workflow document and returns it as started."""
        request = pb.ExecuteWorkflowRequest(yaml=yaml, variables=dict(variables or {}))
        return self.workflows.ExecuteWorkflow(request, timeout=self.timeout).workflow

    def wait_workflow(self, workflow_id: str, timeout: Optional[float] = None) -> pb.Workflow:
        """Waits for WORKFLOW_FINISHED and returns the workflow as it finished."""
        event = self._first_event(
            pb.StreamEventsRequest(
                workflow_id=workflow_id, kinds=[pb.EVENT_KIND_WORKFLOW_FINISHED]
            ),
            timeout,
            lambda e: e.workflow_id == workflow_id,
            lambda: _finished_or_none(self.get_workflow(workflow_id)),
        )
        return event.workflow if isinstance(event, pb.Event) else event

    def run_workflow(
        self,
        yaml: str,
        variables: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> pb.Workflow:
        """Submits a workflow and follows its events until it finishes."""
        return self.wait_workflow(self.start_workflow(yaml, variables).id, timeout)

    def get_workflow(self, workflow_id: str) -> pb.Workflow:
        request = pb.GetWorkflowRequest(workflow_id=workflow_id)
        return self.workflows.GetWorkflow(request, timeout=self.timeout)

    # ---- the rest ------------------------------------------------------------------------

    def status(self) -> pb.GetStatusResponse:
        return self.swarm.GetStatus(pb.GetStatusRequest(), timeout=self.timeout)

    def resume_account(self, name: str) -> pb.AccountStatus:
        """Lifts an account's usage-limit pause now (needs an admin key); its state after."""
        return self.swarm.ResumeAccount(pb.ResumeAccountRequest(name=name), timeout=self.timeout)

    def stream_events(
        self,
        after_sequence: Optional[int] = None,
        *,
        task_id: str = "",
        workflow_id: str = "",
        instance_id: str = "",
        kinds: Sequence[int] = (),
        timeout: Optional[float] = None,
    ):
        """The raw event stream: an iterator of `Event` that is also a `grpc.Call` (call
        `.cancel()` to stop it). `after_sequence=None` is live only, 0 replays everything
        retained first."""
        request = pb.StreamEventsRequest(
            task_id=task_id, workflow_id=workflow_id, instance_id=instance_id, kinds=kinds
        )
        if after_sequence is not None:
            request.after_sequence = after_sequence
        return self.events.StreamEvents(request, timeout=timeout)

    def _first_event(self, request, timeout, matches, already_done):
        """The first event of `request` (replayed from the start) that `matches`, or what
        `already_done()` returns once the stream is open. Resumes after DATA_LOSS."""
        deadline = None if timeout is None else time.monotonic() + timeout
        after = 0
        checked = False
        while True:
            request.after_sequence = after
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            stream = self.events.StreamEvents(request, timeout=left)
            try:
                if not checked:
                    # Already over? Answers at once, and covers an end older than the
                    # history the server retains (the replay from 0 covers the rest).
                    checked = True
                    done = already_done()
                    if done is not None:
                        return done
                for event in stream:
                    after = event.sequence
                    if matches(event):
                        return event
                raise SwarmStreamEnded(f"event stream ended before {request.kinds}")
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.DATA_LOSS:
                    raise
                # Too slow a reader: resume after the last event seen, nothing is lost.
            finally:
                stream.cancel()


def _terminal_or_none(task: pb.Task) -> Optional[pb.Task]:
    return task if task.status in TERMINAL_TASK_STATUSES else None


def _finished_or_none(workflow: pb.Workflow) -> Optional[pb.Workflow]:
    return workflow if workflow.status != pb.WORKFLOW_STATUS_RUNNING else None
