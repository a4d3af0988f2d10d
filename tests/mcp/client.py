"""Drives `claude-swarm mcp` with the official Python MCP client (the `mcp` package, pinned in
scripts/setup), for tests/mcp.rs: starts it as a child over stdio, makes the calls of one
scenario and prints what came back as one JSON document on stdout. The assertions are in
tests/mcp.rs; this file only makes calls and chains the ids between them.

    client.py BIN SERVER_URL SCENARIO
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def answer(result):
    """A tools/call result as plain JSON."""
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": [c.text for c in result.content if getattr(c, "type", None) == "text"],
    }


async def roundtrip(session, out):
    tools = await session.list_tools()
    out["tools"] = {t.name: {"schema": t.input_schema, "description": t.description} for t in tools.tools}

    async def call(label, name, arguments, **kw):
        result = answer(await session.call_tool(name, arguments, **kw))
        out[label] = result
        return result

    submitted = await call(
        "submit",
        "submit_task",
        {
            "prompt": "sim:delay=400 sim:chunks=3 sim:reply=pong answer me",
            "name": "from-mcp",
            "priority": "high",
            "labels": {"via": "mcp"},
            "timeout": 60,
        },
    )
    task_id = submitted["structured"]["id"]
    progress = []

    async def on_progress(value, total, message):
        progress.append({"progress": value, "message": message})

    await call("wait", "wait_for_task", {"task_id": task_id, "timeout_seconds": 60}, progress_callback=on_progress)
    out["progress"] = progress
    await call("get", "get_task", {"task_id": task_id})
    await call("list", "list_tasks", {"status": ["completed"], "limit": 5})
    await call("status", "get_status", {})
    await call("cancel_finished", "cancel_task", {"task_id": task_id})
    await call("bad_priority", "submit_task", {"prompt": "x", "priority": "urgent"})
    await call("shell", "submit_task", {"prompt": "x", "command": "touch /tmp/owned"})
    await call("unknown_dependency", "submit_task", {"prompt": "x", "depends_on": ["nope"]})
    await call("bypass", "submit_task", {"prompt": "x", "permission_mode": "bypassPermissions"})
    await call("missing_prompt", "submit_task", {"name": "no prompt"})
    await call("bad_limit", "list_tasks", {"limit": 5000})
    await call("unknown_task", "get_task", {"task_id": "nope"})

    # A task that waits on one that hangs: the wait runs out and says so; then cancel.
    hung = await call("submit_hang", "submit_task", {"prompt": "sim:hang", "id": "hangs"})
    await call("wait_short", "wait_for_task", {"task_id": hung["structured"]["id"], "timeout_seconds": 0.5})
    await call("cancel", "cancel_task", {"task_id": "hangs"})

    await call(
        "workflow",
        "submit_workflow",
        {"yaml": "name: pair\ntasks:\n  - name: one\n    prompt: sim:reply=first\n  - name: two\n    prompt: after {{ tasks.one.result }}\n    depends_on: [one]\n"},
    )
    ids = out["workflow"]["structured"]["workflow"]["task_ids"]
    await call("workflow_wait", "wait_for_task", {"task_id": ids[1], "timeout_seconds": 60})
    await call("workflow_get", "get_workflow", {"workflow_id": out["workflow"]["structured"]["workflow"]["id"]})
    await call(
        "workflow_invalid",
        "submit_workflow",
        {"yaml": "name: bad\ntasks:\n  - name: one\n    prompt: hi\n    depends_on: [missing]\n"},
    )
    await call(
        "workflow_shell",
        "submit_workflow",
        {"yaml": "name: sh\ntasks:\n  - name: one\n    command: touch /tmp/owned\n"},
    )
    await call(
        "workflow_validate",
        "submit_workflow",
        {"yaml": "name: v\ntasks:\n  - name: one\n    prompt: '{{ task.x }}'\n", "validate_only": True},
    )


async def denied(session, out):
    out["submit"] = answer(await session.call_tool("submit_task", {"prompt": "x"}))
    out["status"] = answer(await session.call_tool("get_status", {}))


async def unreachable(session, out):
    tools = await session.list_tools()
    out["tools"] = [t.name for t in tools.tools]
    out["status"] = answer(await session.call_tool("get_status", {}))


SCENARIOS = {"roundtrip": roundtrip, "denied": denied, "unreachable": unreachable}


async def main():
    binary, server, scenario = sys.argv[1:4]
    # The key (when the scenario has one) reaches the child as a person would give it.
    env = {k: v for k, v in os.environ.items() if k in ("SWARM_API_KEY", "SWARM_LOG")}
    params = StdioServerParameters(command=binary, args=["mcp", "--server", server], env=env)
    out = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await SCENARIOS[scenario](session, out)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
