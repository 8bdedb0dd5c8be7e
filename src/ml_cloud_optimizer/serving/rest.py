"""The v1 and v2 REST inference handlers, on KServe's own DataPlane, with the work on the worker pool.

KServe's handler lets FastAPI decode a JSON body with the standard library's ``json``,
re-validates its own answer through pydantic, and leaves FastAPI's ``jsonable_encoder`` to
walk every element of it. Profiled on 100 feature rows (154 KiB of JSON), that was three
quarters of the request time, and what put the server four times behind MLServer. The v2
handler takes the same steps on the same ``DataPlane`` (model lookup, decode, the model
call, encode) and only parses and writes the JSON with orjson. Bodies in KServe's binary
tensor extension (``inference-header-content-length``) go to KServe's own decoder, and a
malformed one is a 400 rather than the ``KeyError`` 500 it would otherwise be.

Both handlers decode a large body and encode its answer on the worker pool (``serving.pool``),
not on the event loop as KServe's do (``kserve/protocol/rest/v1_endpoints.py``,
``v2_endpoints.py``): decoding a 5 MB body blocks for tens of milliseconds, and health probes
share the loop. The request takes its place in the pool once its body is read (a slow upload
holds no place; ``limits.RequestGuard`` bounds it) and keeps it through the model's stages.
"""

from __future__ import annotations

import orjson
from fastapi import Request
from fastapi.responses import Response
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER, PredictorProtocol
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError

from ml_cloud_optimizer.serving.pool import INLINE_BODY_BYTES, WorkerPool

__all__ = ["V1PredictHandler", "V2InferHandler"]

_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY  # FastAPI's ORJSONResponse


class V2InferHandler:
    """``POST /v2/models/{model_name}/infer`` on ``dataplane``, its work on ``pool``."""

    def __init__(self, dataplane: DataPlane, pool: WorkerPool):
        self.dataplane = dataplane
        self.pool = pool

    async def __call__(self, model_name: str, request: Request) -> Response:
        if not await self.dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        headers = dict(request.headers)
        body = await request.body()
        small = len(body) <= INLINE_BODY_BYTES
        with self.pool.admitted():
            infer_request = await self.pool.run(self._decode, body, headers, model_name, inline=small)
            response, response_headers = await self.dataplane.infer(model_name, infer_request, headers)
            return await self.pool.run(self._answer, model_name, response, response_headers, headers, inline=small)

    def _decode(self, body: bytes, headers: dict, model_name: str):
        try:
            infer_request, _ = self.dataplane.decode(
                _parse(body, headers), headers, protocol_version=PredictorProtocol.REST_V2.value, model_name=model_name
            )
        except InvalidInput:
            raise
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            # Decoding reads only the client's body: whatever breaks there is the client's mistake.
            raise InvalidInput(f"body: cannot decode the inference request: {type(exc).__name__}: {exc}") from None
        return infer_request

    def _answer(self, model_name: str, response, response_headers: dict, headers: dict) -> Response:
        response, encode_headers = self.dataplane.encode(model_name, response, headers, req_attributes={})
        response_headers.update(encode_headers)
        for name in ("content-length", "content-type"):
            response_headers.pop(name, None)
        if isinstance(response, bytes):
            return Response(content=response, headers=response_headers, media_type="application/octet-stream")
        return _json_response(response, response_headers)


class V1PredictHandler:
    """``POST /v1/models/{model_name}:predict``: KServe's steps (``v1_endpoints.py``), its work on ``pool``."""

    def __init__(self, dataplane: DataPlane, pool: WorkerPool):
        self.dataplane = dataplane
        self.pool = pool

    async def __call__(self, model_name: str, request: Request) -> Response:
        if not await self.dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        headers = dict(request.headers.items())
        body = await request.body()
        small = len(body) <= INLINE_BODY_BYTES
        with self.pool.admitted():
            infer_request, attributes = await self.pool.run(
                self.dataplane.decode, body=body, headers=headers, inline=small
            )
            response, response_headers = await self.dataplane.infer(
                model_name=model_name, request=infer_request, headers=headers
            )
            return await self.pool.run(
                self._answer, model_name, response, response_headers, headers, attributes, inline=small
            )

    def _answer(self, model_name: str, response, response_headers: dict, headers: dict, attributes: dict) -> Response:
        response, encode_headers = self.dataplane.encode(
            model_name=model_name, response=response, headers=headers, req_attributes=attributes
        )
        response_headers.update(encode_headers)
        response_headers.pop("content-length", None)
        if isinstance(response, bytes | str):
            return Response(content=response, headers=response_headers)
        return _json_response(response, response_headers)


def _json_response(content, headers: dict) -> Response:
    return Response(
        content=orjson.dumps(content, option=_ORJSON_OPTIONS), headers=headers, media_type="application/json"
    )


def _parse(body: bytes, headers: dict) -> InferenceRequest | bytes:
    """A JSON body as KServe's ``InferenceRequest``; a binary-extension body stays bytes for KServe."""
    if INFERENCE_CONTENT_LENGTH_HEADER in headers:
        return _checked_binary(body, headers[INFERENCE_CONTENT_LENGTH_HEADER])
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: not JSON: {exc}") from None
    try:
        return InferenceRequest.model_validate(document)
    except ValidationError as exc:
        raise InvalidInput(_first_error(exc)) from None


def _checked_binary(body: bytes, length: str) -> bytes:
    """Check the JSON header of a binary-extension body, which KServe's decoder indexes without checking."""
    if not length.isdigit() or int(length) > len(body):
        raise InvalidInput(f"{INFERENCE_CONTENT_LENGTH_HEADER}: {length[:20]!r} is not a length within the body")
    try:
        header = orjson.loads(body[: int(length)])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: the JSON header is not JSON: {exc}") from None
    inputs = header.get("inputs") if isinstance(header, dict) else None
    if not isinstance(inputs, list):
        raise InvalidInput("inputs: missing; expected a list of tensors")
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not {"name", "shape", "datatype"} <= set(tensor):
            raise InvalidInput(f"inputs[{i}]: expected an object with name, shape and datatype")
        parameters = tensor.get("parameters")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if tensor.get("data") is None and not isinstance(size, int):
            raise InvalidInput(f"inputs[{i}]: neither data nor parameters.binary_data_size")
    outputs = header.get("outputs")
    named = isinstance(outputs, list) and all(isinstance(o, dict) and "name" in o for o in outputs)
    if outputs is not None and not named:
        raise InvalidInput("outputs: expected a list of objects with a name")
    return body


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    field = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".") or "body"
    return f"{field}: {first.get('msg', 'invalid')}"
