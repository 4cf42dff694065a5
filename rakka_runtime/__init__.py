"""rakka-runtime: OpenAI / Azure OpenAI chat completions through config-driven policies.

The public API is re-exported here. Hydra, watchdog and the providers are imported only
when a runtime is built, so ``import rakka_runtime`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from rakka_runtime.errors import (
    Backpressure,
    BadRequest,
    BudgetExceeded,
    Cancelled,
    CircuitOpen,
    ConfigError,
    ContentFiltered,
    ContextLengthExceeded,
    Forbidden,
    InferenceError,
    InvalidRequest,
    NetworkError,
    NotFound,
    PluginError,
    ProtocolError,
    QuotaExceeded,
    RateLimited,
    ServerError,
    StreamInterrupted,
    Timeout,
    Unauthorized,
)
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.types import (
    Attempt,
    ChatRequest,
    ChatResult,
    ExecuteBatch,
    SamplingParams,
    TokenChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from rakka_runtime.aio import AsyncRuntime
    from rakka_runtime.batch import execute_batch
    from rakka_runtime.runtime import Runtime

__all__ = [
    "AsyncRuntime",
    "Attempt",
    "Backpressure",
    "BadRequest",
    "BudgetExceeded",
    "Cancelled",
    "ChatRequest",
    "ChatResult",
    "CircuitOpen",
    "ConfigError",
    "ContentFiltered",
    "ContextLengthExceeded",
    "ExecuteBatch",
    "Forbidden",
    "InferenceError",
    "InvalidRequest",
    "NetworkError",
    "NotFound",
    "PluginError",
    "ProtocolError",
    "QuotaExceeded",
    "RateLimited",
    "Runtime",
    "SamplingParams",
    "ServerError",
    "StreamInterrupted",
    "Timeout",
    "TokenChunk",
    "ToolCall",
    "ToolCallDelta",
    "Unauthorized",
    "Usage",
    "__version__",
    "execute_batch",
    "hookimpl",
]


def __getattr__(name: str) -> object:
    # These pull in urllib3 and pydantic: load them on first use, not on import.
    if name == "Runtime":
        from rakka_runtime.runtime import Runtime

        return Runtime
    if name == "AsyncRuntime":
        from rakka_runtime.aio import AsyncRuntime

        return AsyncRuntime
    if name == "execute_batch":
        from rakka_runtime.batch import execute_batch

        return execute_batch
    raise AttributeError(f"module 'rakka_runtime' has no attribute {name!r}")
