"""Launcher of the HAPI FHIR JPA server (``sandbox/fhir_servers/hapi/``, Java 17) for the demo and the tests.

It validates every write against R4 and against the StructureDefinitions Countersign claims
(``fhir_profiles/structure_definitions``), and enforces referential integrity as HAPI does by
default. ``make hapi-build`` builds the jar; nothing is built here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fhir_profiles.profiles import DIRECTORY as PROFILES_DIRECTORY
from sandbox.server_process import ServerProcess

JAR = Path(__file__).resolve().parent / "fhir_servers" / "hapi" / "target" / "countersign-hapi.jar"
# A modest heap on a 2-core machine: serial GC, C1 only (quicker start). HAPI_JAVA_OPTS overrides.
DEFAULT_JAVA_OPTIONS = "-Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"


def unavailable_reason(jar: Path = JAR) -> str | None:
    """Why the HAPI server cannot start here, or None when it can."""
    if not jar.exists():
        return f"{jar} missing: run `make hapi-build`"
    if shutil.which("java") is None:
        return "no `java` on PATH (Java 17 runs the HAPI FHIR server)"
    return None


class HapiServer(ServerProcess):
    """Runs the HAPI jar on 127.0.0.1 (a free port unless given) with an empty in-memory database."""

    ready_prefix = "HAPI FHIR server listening on "
    name = "HAPI FHIR server"
    start_timeout = 300

    def __init__(self, port: int = 0, jar: Path = JAR) -> None:
        super().__init__()
        self.port = port
        self.jar = jar

    def command(self) -> list[str]:
        reason = unavailable_reason(self.jar)
        if reason:
            raise RuntimeError(f"HAPI FHIR server unavailable: {reason}")
        options = os.environ.get("HAPI_JAVA_OPTS", DEFAULT_JAVA_OPTIONS).split()
        return [shutil.which("java") or "java", *options, "-jar", str(self.jar), str(self.port)]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "HAPI_PROFILES_DIR": str(PROFILES_DIRECTORY)}
