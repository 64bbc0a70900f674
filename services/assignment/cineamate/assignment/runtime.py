"""Everything the assignment routes use, built once the dependencies are connected."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cineamate.assignment.cache import ExperimentRegistry, PosteriorCache
from cineamate.assignment.settings import AssignmentSettings
from cineamate.assignment.store import ExperimentStore
from cineamate.common.dependencies import (
    Dependencies,
    KafkaDependency,
    PostgresDependency,
    RedisDependency,
)
from cineamate.common.kafka import ReliablePublisher, Spool

__all__ = ["AssignmentRuntime"]


@dataclass
class AssignmentRuntime:
    settings: AssignmentSettings
    store: ExperimentStore
    registry: ExperimentRegistry
    posteriors: PosteriorCache
    publisher: ReliablePublisher
    rng: np.random.Generator

    @classmethod
    def build(cls, settings: AssignmentSettings, deps: Dependencies) -> AssignmentRuntime:
        kafka, postgres, redis = deps["kafka"], deps["postgres"], deps["redis"]
        assert isinstance(kafka, KafkaDependency)
        assert isinstance(postgres, PostgresDependency)
        assert isinstance(redis, RedisDependency)
        return cls(
            settings=settings,
            store=ExperimentStore(postgres.pool),
            registry=ExperimentRegistry(
                postgres.pool, refresh_seconds=settings.experiment_refresh_seconds
            ),
            posteriors=PosteriorCache(
                redis.client, staleness_seconds=settings.posterior_staleness_seconds
            ),
            publisher=ReliablePublisher(kafka.producer, Spool(settings.spool_dir)),
            rng=np.random.default_rng(),
        )
