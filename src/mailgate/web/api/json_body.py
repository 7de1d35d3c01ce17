"""Send bodies read by pydantic's own JSON reader, in one pass.

FastAPI reads a JSON body with Python's ``json`` module and then validates the objects with
pydantic; :class:`~mailgate.web.api.schemas.Strict` then walks every value once more for text
that cannot be kept (``json_values``). For the send endpoints, which take thousands of
messages a second, :class:`ParsedBodyRoute` lets pydantic parse and validate the raw bytes
at once (``model_validate_json``, in Rust), and tells the models that the strings are
already known to be keepable:

* pydantic's reader refuses a lone UTF-16 surrogate (escaped or as bytes) and invalid UTF-8;
* a body holding the escape ``\\u0000`` is never taken this way.

Numbers are still checked (``NaN``, ``Infinity`` and ``1e400`` are numbers to both readers).
Whenever the one-pass reading fails, for whatever reason, the body is read exactly as
before (Python's ``json``, then validation), so every refusal (400 or 422, and the field it
names) is the one it always was. FastAPI takes the already validated model as it is
(pydantic does not validate an instance of the model again).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope

#: Validation context meaning "the strings in this input come from checked JSON text".
TEXT_CHECKED: dict[str, bool] = {"json_text_checked": True}
_NUL_ESCAPE = b"\\u0000"


def text_checked(context: object) -> bool:
    """Whether a validation ``context`` is :data:`TEXT_CHECKED`."""
    return context is TEXT_CHECKED


class _ParsedJsonRequest(Request):
    """A request whose JSON body is read as ``model`` by pydantic when that succeeds."""

    def __init__(self, scope: Scope, receive: Receive, model: type[BaseModel]) -> None:
        super().__init__(scope, receive)
        self._model = model

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if _NUL_ESCAPE not in body:
                try:
                    self._json: Any = self._model.model_validate_json(body, context=TEXT_CHECKED)
                except ValidationError:
                    pass  # read again below, the usual way, for the usual answer
                else:
                    return self._json
        return await super().json()


class ParsedBodyRoute(APIRoute):
    """An API route whose JSON body model (when it has one) is read in one pass."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        field = self.body_field
        model = field.field_info.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return handler
        body_model: type[BaseModel] = model

        async def parse_body_first(request: Request) -> Response:
            return await handler(_ParsedJsonRequest(request.scope, request.receive, body_model))

        return parse_body_first
