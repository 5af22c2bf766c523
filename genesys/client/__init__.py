"""The Genesys Python SDK, for notebooks and scripts.

::

    from genesys.client import GenesysClient, setup_training_system

    status = setup_training_system()          # is the server ready to learn? what is missing?
    print(status.summary())

    client = GenesysClient()                  # $GENESYS_URL or http://127.0.0.1:8000, $GENESYS_API_KEY
    answer = client.chat("How do I mount a Vue 3 app?", max_tokens=128)
    client.correct(answer, "In Vue 3: createApp(App).mount('#app')")
    client.analyze(); client.kpis(); client.alerts()
    cycle = client.start_cycle("corrections piled up")
    for message in client.follow_cycle(cycle, timeout=600):
        print(message.source, message.text)

Every error is a ``GenesysError``; the server's refusals and unreachable servers are
``GenesysAPIError`` subclasses whose ``hint`` says what to do (``genesys.client._errors`` draws the
tree).
"""

from genesys.client._chat import ChatStream
from genesys.client._client import DEFAULT_URL, GenesysClient
from genesys.client._errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GenesysAPIError,
    GenesysError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    UnavailableError,
    WaitTimeout,
)
from genesys.client._models import (
    AbEvaluation,
    Alert,
    AlertAction,
    Analysis,
    ArmStats,
    ChatResult,
    Cycle,
    CycleDetail,
    CycleList,
    CycleMessage,
    Feedback,
    Health,
    Interaction,
    InteractionDetail,
    Kpi,
    KpiReport,
    LearningSetup,
    ModelInfo,
    Readiness,
    Rollout,
    RolloutEvent,
    RolloutStatus,
    Usage,
)
from genesys.client._setup import Check, TrainingSystemStatus, setup_training_system

__all__ = [
    "DEFAULT_URL",
    "AbEvaluation",
    "Alert",
    "AlertAction",
    "Analysis",
    "ArmStats",
    "AuthenticationError",
    "BadRequestError",
    "ChatResult",
    "ChatStream",
    "Check",
    "ConflictError",
    "Cycle",
    "CycleDetail",
    "CycleList",
    "CycleMessage",
    "Feedback",
    "GenesysAPIError",
    "GenesysClient",
    "GenesysError",
    "Health",
    "Interaction",
    "InteractionDetail",
    "Kpi",
    "KpiReport",
    "LearningSetup",
    "ModelInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "Readiness",
    "Rollout",
    "RolloutEvent",
    "RolloutStatus",
    "ServerError",
    "TrainingSystemStatus",
    "UnavailableError",
    "Usage",
    "WaitTimeout",
    "setup_training_system",
]
