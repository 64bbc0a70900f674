"""The platform's processes: the six services and the public entry."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic_settings import BaseSettings
from starlette.types import ASGIApp

from cineamate.common.settings import SERVICE_NAMES

__all__ = ["PROCESS_NAMES", "ServiceModule", "load_service", "port_variable"]

PROCESS_NAMES = (*SERVICE_NAMES, "gateway")


@dataclass(frozen=True)
class ServiceModule:
    """What ``cineamate serve NAME`` needs: the settings class and the app factory."""

    name: str
    settings_class: type[BaseSettings]
    create_app: Callable[[Any], ASGIApp]


def load_service(name: str) -> ServiceModule:
    """Import the service ``name`` (or the gateway)."""
    if name == "gateway":
        from cineamate.stack.gateway import GatewaySettings, create_gateway

        return ServiceModule(name, GatewaySettings, create_gateway)
    if name not in SERVICE_NAMES:
        raise ValueError(f"unknown service {name!r}; expected one of {', '.join(PROCESS_NAMES)}")
    module = importlib.import_module(f"cineamate.{name}")
    settings_class = getattr(module, f"{name.capitalize()}Settings")
    return ServiceModule(name, settings_class, module.create_app)


def port_variable(name: str) -> str:
    """The variable that sets the port of process ``name``."""
    return f"CINEAMATE_{name.upper()}_PORT"
