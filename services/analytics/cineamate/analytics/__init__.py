"""The analytics service: Materialises dashboard views in PostgreSQL and serves the dashboard."""

from cineamate.analytics.app import create_app
from cineamate.analytics.settings import AnalyticsSettings

__all__ = ["AnalyticsSettings", "create_app"]
