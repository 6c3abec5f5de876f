"""``omnikit serve``: many users talking to one model over a websocket, and a browser page to talk with.

:func:`create_app` builds the FastAPI app over one :class:`~omnikit.inference.dialogue_model.DialogueModel`;
:mod:`omnikit.serving.protocol` is the wire format; :mod:`omnikit.serving.scheduler` runs every session's model
work on one worker thread. FastAPI is imported only when this package's submodules are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omnikit.serving.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from omnikit.serving import app

        return getattr(app, name)
    raise AttributeError(name)
