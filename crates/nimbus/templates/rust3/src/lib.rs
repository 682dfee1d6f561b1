//! {{name}}: a Nimbus function (a WASI 0.3 `wasi:http/handler@0.3.0`
//! component, built for the wasm32-wasip2 target). `nimbus deploy` builds
//! it and deploys it.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(App);

struct App;

impl wasip3::exports::http::handler::Guest for App {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let text = format!("Hello from {{name}} (Rust, WASI 0.3)! You asked for {path}\n");
        let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
            .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
        let (mut body, contents) = wit_stream::new();
        let (trailers_tx, trailers) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(contents), trailers);
        drop(trailers_tx);
        // The body is written after the response is returned.
        wit_bindgen::spawn_local(async move {
            body.write_all(text.into_bytes()).await;
        });
        Ok(response)
    }
}
