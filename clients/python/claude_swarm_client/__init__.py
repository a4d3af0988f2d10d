"""Python client for claude-swarm, generated from proto/claude_swarm/v1/swarm.proto.

    from claude_swarm_client import Client
    with Client("127.0.0.1:50051") as swarm:
        task = swarm.wait(swarm.submit("Fix the failing test", priority="high").id)

`claude_swarm_client.v1.swarm_pb2` / `swarm_pb2_grpc` are the generated modules (made by
generate.sh; they are not committed).
"""

try:
    from .v1 import swarm_pb2, swarm_pb2_grpc
except ImportError as error:  # pragma: no cover - only before generate.sh has run
    raise ImportError(
        "claude_swarm_client.v1 is not generated yet: run clients/python/generate.sh "
        f"(needs grpcio-tools, see clients/python/requirements.txt): {error}"
    ) from error

from .client import (
    TERMINAL_TASK_KINDS,
    TERMINAL_TASK_STATUSES,
    Client,
    SwarmStreamEnded,
    task_spec,
)

__all__ = [
    "Client",
    "SwarmStreamEnded",
    "TERMINAL_TASK_KINDS",
    "TERMINAL_TASK_STATUSES",
    "swarm_pb2",
    "swarm_pb2_grpc",
    "task_spec",
]
