"""The Python client against the real server binary (simulated agent, state in memory).

Run by scripts/test-clients (which builds the binary); alone:
    cargo build --bin claude-swarm && python3 -m pytest clients/python
SWARM_TEST_BIN overrides the binary's path.
"""

import os
import queue
import re
import subprocess
import threading

import grpc
import pytest

from claude_swarm_client import Client, swarm_pb2 as pb

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SWARM_TEST_BIN", os.path.join(ROOT, "target", "debug", "claude-swarm"))
# Every wait in these tests is bounded by this many seconds.
BOUND = 60


class Server:
    """`claude-swarm serve` on a free port; the address comes from its log line."""

    def __init__(self, env=None):
        if not os.access(BIN, os.X_OK):
            pytest.fail(f"{BIN} is missing: run `cargo build --bin claude-swarm` first")
        self.log = []
        self.process = subprocess.Popen(
            [BIN, "serve", "--agent", "simulated", "--in-memory", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SWARM_LOG": "claude_swarm=info", **(env or {})},
        )
        found = queue.Queue()
        # Reads the log for the address, then keeps draining it so the server never blocks
        # on a full pipe; the lines are kept for failure messages.
        def read():
            for line in self.process.stderr:
                self.log.append(line)
                match = re.search(r"\baddress=(\S+)", line)
                if match:
                    found.put(match.group(1))
            found.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            self.address = found.get(timeout=BOUND)
        except queue.Empty:
            self.address = None
        if self.address is None:
            self.stop()
            pytest.fail(f"the server logged no address within {BOUND}s:\n{''.join(self.log)}")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def client():
    server = Server()
    with Client(server.address, timeout=BOUND) as client:
        yield client
    server.stop()


def test_submit_and_wait_returns_the_result(client):
    submitted = client.submit(
        "hello from python sim:cost=0.25", priority="high", labels={"suite": "python"}
    )
    assert submitted.id
    assert submitted.priority == pb.PRIORITY_HIGH
    assert submitted.status in (
        pb.TASK_STATUS_QUEUED,
        pb.TASK_STATUS_RUNNING,
        pb.TASK_STATUS_COMPLETED,
    )

    done = client.wait(submitted.id, timeout=BOUND)
    assert done.status == pb.TASK_STATUS_COMPLETED, done
    assert done.result.text == "Simulated answer to: hello from python"
    assert done.result.session_id
    assert done.result.cost_usd == 0.25
    assert not done.result.is_error
    assert done.labels["suite"] == "python"

    # Waiting again replays the ended task's event; GetTask agrees.
    assert client.wait(submitted.id, timeout=BOUND) == done
    fetched = client.get(submitted.id)
    assert fetched.status == pb.TASK_STATUS_COMPLETED
    assert fetched.result.session_id == done.result.session_id


def test_workflow_with_a_dependency_runs_in_order(client):
    document = """
name: python client workflow
variables:
  word: alpha
tasks:
  - id: first
    prompt: "sim:reply={{ vars.word }}"
  - id: second
    prompt: "Use {{ tasks.first.result }}"
    depends_on: [first]
"""
    workflow = client.run_workflow(document, {"word": "beta"}, timeout=BOUND)
    assert workflow.status == pb.WORKFLOW_STATUS_COMPLETED, workflow
    assert workflow.name == "python client workflow"
    assert workflow.task_counts.completed == 2
    assert len(workflow.task_ids) == 2
    # Only the last task is an output: what the workflow produced.
    assert list(workflow.outputs.values()) == ["Simulated answer to: Use beta"], workflow

    first, second = (client.get(task_id) for task_id in workflow.task_ids)
    assert first.result.text == "beta"
    assert list(second.depends_on) == [first.id]
    assert second.workflow_id == workflow.id
    assert second.started_at.ToNanoseconds() >= first.completed_at.ToNanoseconds()
    assert client.get_workflow(workflow.id).status == pb.WORKFLOW_STATUS_COMPLETED


def test_cancel_stops_a_hanging_task(client):
    task = client.submit("never answers sim:hang")
    # Wait for it to run (an event, not a poll), so the cancel stops a live process.
    started = client.stream_events(
        0, task_id=task.id, kinds=[pb.EVENT_KIND_TASK_STARTED], timeout=BOUND
    )
    try:
        event = next(started)
    finally:
        started.cancel()
    assert event.kind == pb.EVENT_KIND_TASK_STARTED
    assert event.task.status == pb.TASK_STATUS_RUNNING

    cancelled = client.cancel(task.id)
    assert cancelled.status == pb.TASK_STATUS_CANCELLED
    assert cancelled.failure_class == pb.FAILURE_CLASS_CANCELLED
    assert client.wait(task.id, timeout=BOUND).status == pb.TASK_STATUS_CANCELLED

    with pytest.raises(grpc.RpcError) as error:
        client.cancel(task.id)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION, error.value.details()


def test_an_empty_prompt_is_invalid_and_names_the_field(client):
    with pytest.raises(grpc.RpcError) as error:
        client.submit("")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task.prompt" in error.value.details(), error.value.details()

    with pytest.raises(grpc.RpcError) as error:
        client.get("no-such-task")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND, error.value.details()


def test_a_wait_is_bounded(client):
    task = client.submit("sim:hang")
    with pytest.raises(grpc.RpcError) as error:
        client.wait(task.id, timeout=0.5)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert client.cancel(task.id).status == pb.TASK_STATUS_CANCELLED


KEY = "python-client-key-0123456789"


@pytest.fixture(scope="module")
def keyed_server():
    server = Server(env={"SWARM_API_KEYS": f"python:operate:{KEY}"})
    yield server
    server.stop()


def test_a_server_with_keys_wants_one_and_the_client_sends_it(keyed_server):
    with Client(keyed_server.address, timeout=BOUND, api_key=KEY) as swarm:
        task = swarm.wait(swarm.submit("with a key").id, timeout=BOUND)
        assert task.status == pb.TASK_STATUS_COMPLETED
        # `operate` may not run shell steps: that takes `admin`.
        with pytest.raises(grpc.RpcError) as refused:
            swarm.submit("", command="true")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "task.command" in refused.value.details()
    with Client(keyed_server.address, timeout=BOUND) as anonymous:
        with pytest.raises(grpc.RpcError) as refused:
            anonymous.status()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_over_tls_the_client_trusts_the_given_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    os.chmod(key, 0o600)
    server = Server(env={"SWARM_TLS_CERT": str(cert), "SWARM_TLS_KEY": str(key)})
    try:
        port = server.address.rsplit(":", 1)[1]
        with Client(f"https://localhost:{port}", timeout=BOUND, ca_cert=str(cert)) as swarm:
            task = swarm.wait(swarm.submit("over tls").id, timeout=BOUND)
            assert task.status == pb.TASK_STATUS_COMPLETED
        # Plaintext to a TLS port gets no answer.
        with Client(server.address, timeout=5) as plain:
            with pytest.raises(grpc.RpcError) as refused:
                plain.status()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


def test_an_account_paused_by_its_limit_is_resumed_and_the_task_completes(client):
    # The only account's API refuses new sessions with a reset two minutes away.
    events = client.stream_events(0, kinds=[pb.EVENT_KIND_ACCOUNT_CHANGED], timeout=30)
    try:
        task = client.submit("limited sim:rate_limit=120")
        paused = next(iter(events))
    finally:
        events.cancel()
    assert paused.account.name == "default"
    assert paused.account.state == pb.ACCOUNT_STATE_PAUSED

    resumed = client.resume_account("default")
    assert resumed.state == pb.ACCOUNT_STATE_ACTIVE
    assert not resumed.HasField("paused_until")
    assert client.wait(task.id, timeout=30).status == pb.TASK_STATUS_COMPLETED

    with pytest.raises(grpc.RpcError) as error:
        client.resume_account("no-such-account")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND, error.value.details()
