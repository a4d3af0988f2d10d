"""Regenerates the gRPC code from ../../proto before the tests import it, so the tests
always run against the proto as it is now (the generated modules are not committed)."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_configure(config):
    subprocess.run(
        [os.path.join(HERE, "generate.sh")],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
