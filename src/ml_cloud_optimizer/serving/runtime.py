"""KServe's ModelServer with the repository extension off, honest readiness and a chosen address.

Three things KServe 0.21 does that this server must not:

* ``POST /v2/repository/models/NAME/unload`` (and load), and their gRPC twins
  ``RepositoryModelLoad``/``RepositoryModelUnload``, are open to any client
  (``kserve/protocol/rest/v2_endpoints.py``, ``kserve/protocol/grpc/servicer.py``, both calling
  ``kserve/protocol/model_repository_extension.py``). One unauthenticated request removed the
  model and every inference then answered 404. ``ClosedRepository`` refuses both: REST 403,
  gRPC ``PERMISSION_DENIED``.
* ``DataPlane.ready`` answers true whatever the models' state (``kserve/protocol/dataplane.py``):
  the pod stayed in the Service with no model. ``ServingDataPlane.ready`` is true only while
  every model the server was started with is registered and ready. Its v2 model metadata
  also fills ``platform``, which KServe leaves empty, with the model's own (``ForecastModel.platform``
  names the resource it forecasts), over REST and gRPC alike.
* REST binds ``0.0.0.0`` and gRPC ``[::]``, fixed in ``kserve/protocol/rest/server.py`` and
  ``kserve/protocol/grpc/server.py``. ``ForecastServer.start`` builds both servers itself
  (the single-process branch of ``kserve/model_server.py``, ``ModelServer.start``) so that
  ``host`` chooses the address, and sets uvicorn's connection timeouts on the way.
"""

from __future__ import annotations

import asyncio
from concurrent import futures

import kserve
from grpc import aio
from grpc_interceptor.exceptions import PermissionDenied
from kserve import model_server
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer

from ml_cloud_optimizer.serving.connections import with_header_timeout

__all__ = ["ALL_INTERFACES", "ClosedRepository", "ForecastServer", "RepositoryDisabled", "ServingDataPlane"]

ALL_INTERFACES = "0.0.0.0"


class RepositoryDisabled(PermissionDenied):
    """Loading and unloading models over the network is off. gRPC ``PERMISSION_DENIED``; REST 403."""

    def __init__(self, action: str, model_name: str):
        super().__init__(details=f"model repository {action} of {model_name!r} is disabled on this server")


class ClosedRepository(ModelRepositoryExtension):
    """KServe's repository extension with ``load`` and ``unload`` refused; ``index`` still lists."""

    async def load(self, model_name: str) -> None:
        raise RepositoryDisabled("load", model_name)

    async def unload(self, model_name: str) -> None:
        raise RepositoryDisabled("unload", model_name)


class ServingDataPlane(DataPlane):
    """KServe's data plane, ready only while every one of ``required`` models is registered and ready."""

    def __init__(self, model_registry, required: tuple[str, ...]):
        super().__init__(model_registry=model_registry)
        self.required = tuple(required)

    async def ready(self) -> bool:
        for name in self.required:
            if not await self._model_registry.is_model_ready(name):
                return False
        return await super().ready()

    def metadata(self) -> dict:
        return {**super().metadata(), "extensions": []}  # no repository extension to offer

    async def model_metadata(self, model_name: str) -> dict:
        metadata = await super().model_metadata(model_name)
        platform = getattr(self.get_model_from_registry(model_name), "platform", None)
        return {**metadata, "platform": platform} if isinstance(platform, str) else metadata


def _grpc_address(host: str, port: int) -> str:
    if host in (ALL_INTERFACES, "::", ""):
        return f"[::]:{port}"  # KServe's own: every interface, IPv6 and IPv4
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _GRPCServer(GRPCServer):
    """KServe's gRPC server (``kserve/protocol/grpc/server.py``) on ``host`` instead of ``[::]``."""

    def __init__(self, host: str, max_receive_bytes: int, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._host, self._max_receive_bytes = host, max_receive_bytes

    async def start(self, max_workers):
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                # KServe's --grpc_max_receive_message_length (8 MiB by default), never above the body limit.
                (
                    "grpc.max_receive_message_length",
                    min(self._max_receive_bytes, self._kwargs.get("grpc_max_receive_message_length") or 2**31 - 1),
                ),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(_grpc_address(self._host, self._port))
        await self._server.start()
        await self._server.wait_for_termination()


class ForecastServer(kserve.ModelServer):
    """``kserve.ModelServer`` with ``ClosedRepository``, ``ServingDataPlane``, a host and connection timeouts.

    Args:
        model_names: the models that must be ready for the server to be.
        host: the address REST and gRPC listen on (``0.0.0.0``: every interface).
        header_timeout_s: request headers must be complete this long after a connection or a
            request starts (``connections.with_header_timeout``).
        max_grpc_receive_bytes: largest gRPC message accepted, at most (the REST body limit).
        **kwargs: ``kserve.ModelServer``'s own.
    """

    def __init__(
        self,
        *,
        model_names: tuple[str, ...],
        host: str = ALL_INTERFACES,
        header_timeout_s: float = 30.0,
        max_grpc_receive_bytes: int = 64 * 2**20,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.host = host
        self.header_timeout_s = header_timeout_s
        self.max_grpc_receive_bytes = max_grpc_receive_bytes
        self.model_repository_extension = ClosedRepository(model_registry=self.registered_models)
        self.dataplane = ServingDataPlane(self.registered_models, required=model_names)

    def start(self, models) -> None:
        """``kserve.ModelServer.start`` for one worker process, with this server's address and timeouts."""
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = RESTServer(
            "kserve.model_server:app",
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            access_log_format=self.access_log_format,
            workers=1,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
        )
        # uvicorn reads these when the server starts (Config.load), after RESTServer fixed them.
        self._rest_server.config.host = self.host
        self._rest_server.config.http = with_header_timeout(self.header_timeout_s)
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = _GRPCServer(
                self.host,
                self.max_grpc_receive_bytes,
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=vars(model_server.args),
                grace_period=self.grace_period,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())
