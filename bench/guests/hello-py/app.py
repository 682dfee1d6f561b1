"""The smallest Python function: answers "hello". Built against the plain
wasi:http/proxy world, so `wasmtime serve` runs it too."""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import Fields, OutgoingBody, OutgoingResponse, ResponseOutparam


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out) -> None:
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = body.write()
        stream.blocking_write_and_flush(b"hello")
        stream.__exit__(None, None, None)
        OutgoingBody.finish(body, None)
