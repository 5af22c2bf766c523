"""The store: every table of Genesys over one database (SQLite with WAL by default, PostgreSQL by URL).

``Store(url)`` opens the database, creates missing tables and gives each part its repository.
"""

from __future__ import annotations

from genesys.runtime.store.adapters import AdapterRegistry, AdapterState, AdapterTransition, AdapterVersion
from genesys.runtime.store.alerts import Alert, AlertActionRecord, AlertKind, AlertState, AlertStore
from genesys.runtime.store.annotations import Annotation, AnnotationStore, Tier
from genesys.runtime.store.cycles import Cycle, CycleInProgress, CycleMessage, CycleState, CycleStore
from genesys.runtime.store.datasets import DatasetStore, DatasetVersion
from genesys.runtime.store.db import Base, Database, UtcDateTime, utcnow
from genesys.runtime.store.feedback import Feedback, FeedbackSource, FeedbackStore, Thumbs
from genesys.runtime.store.ide_events import DataLevel, IdeEvent, IdeEventStore
from genesys.runtime.store.interactions import (
    Endpoint,
    Interaction,
    InteractionStore,
    InteractionType,
    Status,
    new_interaction_id,
)
from genesys.runtime.store.leases import Lease, LeaseStore
from genesys.runtime.store.operator_chats import OperatorChatStore, OperatorConversation, OperatorMessage
from genesys.runtime.store.rollouts import Rollout, RolloutEvent, RolloutState, RolloutStore
from genesys.runtime.store.training_runs import RunState, TrainingProgress, TrainingRun, TrainingRunStore

__all__ = [
    "AdapterRegistry",
    "AdapterState",
    "AdapterTransition",
    "AdapterVersion",
    "Alert",
    "AlertActionRecord",
    "AlertKind",
    "AlertState",
    "AlertStore",
    "Annotation",
    "AnnotationStore",
    "Base",
    "Cycle",
    "CycleInProgress",
    "CycleMessage",
    "CycleState",
    "CycleStore",
    "DataLevel",
    "Database",
    "DatasetStore",
    "DatasetVersion",
    "Endpoint",
    "Feedback",
    "FeedbackSource",
    "FeedbackStore",
    "IdeEvent",
    "IdeEventStore",
    "Interaction",
    "InteractionStore",
    "InteractionType",
    "Lease",
    "LeaseStore",
    "OperatorChatStore",
    "OperatorConversation",
    "OperatorMessage",
    "Rollout",
    "RolloutEvent",
    "RolloutState",
    "RolloutStore",
    "RunState",
    "Status",
    "Store",
    "Thumbs",
    "Tier",
    "TrainingProgress",
    "TrainingRun",
    "TrainingRunStore",
    "UtcDateTime",
    "new_interaction_id",
    "utcnow",
]


class Store:
    """All repositories over one database."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        self.db.create_tables()
        self.interactions = InteractionStore(self.db)
        self.feedback = FeedbackStore(self.db)
        self.annotations = AnnotationStore(self.db)
        self.ide_events = IdeEventStore(self.db)
        self.datasets = DatasetStore(self.db)
        self.training_runs = TrainingRunStore(self.db)
        self.adapters = AdapterRegistry(self.db)
        self.rollouts = RolloutStore(self.db)
        self.cycles = CycleStore(self.db)
        self.leases = LeaseStore(self.db)
        self.alerts = AlertStore(self.db)
        self.operator_chats = OperatorChatStore(self.db)

    @property
    def url(self) -> str:
        return self.db.url

    def ping(self) -> bool:
        return self.db.ping()

    def close(self) -> None:
        self.db.close()
