"""The guardrails service: Watches running experiments and rolls a harmful variant back."""

from cineamate.guardrails.app import create_app
from cineamate.guardrails.settings import GuardrailsSettings

__all__ = ["GuardrailsSettings", "create_app"]
