"""The platform assembled: embedded stores, the supervisor, the public entry and its routes.

local        broker, PostgreSQL and Redis: external when configured, else embedded
embedded     the embedded servers themselves (also the test fixtures)
provision    migrations and topics
supervisor   keeps the processes running, one output stream
gateway      the public entry on port 8000
routes       which service owns which public path (the one source of truth)
run          ``cineamate run``
deploy       the deployment files generated from the above (``python -m cineamate.stack.deploy``)
"""

__all__ = [
    "deploy",
    "embedded",
    "gateway",
    "local",
    "processes",
    "provision",
    "routes",
    "run",
    "services",
    "supervisor",
]
