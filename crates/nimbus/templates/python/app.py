"""{{name}}: a Nimbus function in Python, built with componentize-py against
wit/ (every Nimbus interface: wasi:keyvalue, wasi:config, nimbus:data,
nimbus:events). `nimbus deploy` builds it (build.sh)."""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports import wasi_config_store
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        greeting = wasi_config_store.get("greeting") or "Hello"
        text = f"{greeting} from {{name}} (Python)! You asked for {path}\n".encode()
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = body.write()
        for i in range(0, len(text), 4096):  # at most 4096 bytes per blocking write
            stream.blocking_write_and_flush(text[i : i + 4096])
        stream.__exit__(None, None, None)
        OutgoingBody.finish(body, None)
