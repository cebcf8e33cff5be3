"""Runs the sandbox EHR as its own process (the demo starts it): ``python -m sandbox.ehr.server``.

One worker process, because the cards the clinician has on screen are kept in its memory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from app.wsgi_server import serve
from sandbox.ehr import SandboxConfig, create_app
from sandbox.ehr.cds_client import ClientIdentity
from sandbox.ehr.launcher import LaunchUser, SmartLauncher

THREADS = 8


def _launch_user(value: str) -> LaunchUser:
    user_id, _, label = value.partition("=")
    if not user_id or not label:
        raise argparse.ArgumentTypeError("expected ID=LABEL")
    return LaunchUser(user_id, label)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", required=True, help="address:port, e.g. 127.0.0.1:8001")
    parser.add_argument("--fhir", required=True, help="base URL of the EHR's FHIR server")
    parser.add_argument("--cds", required=True, help="URL of the CDS services (…/cds-services)")
    parser.add_argument("--key-dir", required=True, type=Path, help="folder of the EHR's signing key")
    parser.add_argument("--smart-launches", help="the EHR authorization server's launch-context endpoint")
    parser.add_argument("--smart-app", help="the SMART app's launch URL (…/app/launch)")
    parser.add_argument(
        "--launch-user", action="append", type=_launch_user, default=[], help="ID=LABEL, repeatable"
    )
    arguments = parser.parse_args(argv)
    launcher = None
    if arguments.smart_launches and arguments.smart_app:
        launcher = SmartLauncher(arguments.smart_launches, arguments.smart_app, tuple(arguments.launch_user))
    identity = ClientIdentity.in_directory(arguments.key_dir)
    config = SandboxConfig(arguments.fhir, arguments.cds, identity, launcher=launcher)
    serve(
        lambda: create_app(config), arguments.bind, 1, THREADS, {"loglevel": "warning", "graceful_timeout": 3}
    )


if __name__ == "__main__":
    main()
