//! The smallest WASI 0.3 function (`wasi:http/handler@0.3.0`): answers
//! "hello". It imports nothing beyond WASI, so `wasmtime serve -Sp3=y
//! -Wcomponent-model-async=y` runs it too (bench/http.sh).

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Hello);

struct Hello;

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(_request: Request) -> Result<Response, ErrorCode> {
        let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
            .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
        let (mut body, contents) = wit_stream::new();
        let (trailers_tx, trailers) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(contents), trailers);
        drop(trailers_tx);
        wit_bindgen::spawn_local(async move {
            body.write_all(b"hello".to_vec()).await;
        });
        Ok(response)
    }
}
