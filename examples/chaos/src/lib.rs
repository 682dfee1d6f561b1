//! A deliberately badly behaved function, for testing the platform's limits.
//! The last path segment picks the behaviour:
//!
//! * `loop`: spins forever (stopped by the timeout)
//! * `alloc?mb=N`: allocates and touches N MiB (default: without end)
//! * `panic`: panics (a trap), after writing to stderr
//! * `parse`: reads the body; panics unless it starts with `{`
//! * `sleep?ms=N`: sleeps, then answers (a slow but well-behaved function)
//! * `slowhead?ms=N`: sleeps before sending the response head
//! * `slowbody?ms=N`: sends the head at once, then sleeps before the body
//! * `noresponse`: returns without sending a response
//! * `count`: increments a global counter and returns it; with a fresh
//!   instance per request it is always 1
//! * `env?name=X`: the value of environment variable X
//! * `dump`: prints its whole request body to stdout, then answers 500 (a
//!   careless handler that logs its input)
//! * `hoard?n=N`: creates N header sets (`wasi:http` `fields`, host
//!   resources held outside the guest's memory), keeps them all, answers
//!   `held N`
//!
//! `ACTION` in the environment picks the behaviour instead of the path.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Chaos;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn query<'a>(path: &'a str, key: &str) -> Option<&'a str> {
    let q = path.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        if k == key { Some(v) } else { None }
    })
}

fn num(path: &str, key: &str, default: u64) -> u64 {
    query(path, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let resp = OutgoingResponse::new(Fields::new());
    resp.set_status_code(status).unwrap();
    let body = resp.body().unwrap();
    ResponseOutparam::set(out, Ok(resp));
    let mut w = body.write().unwrap();
    w.write_all(text.as_bytes()).unwrap();
    drop(w);
    OutgoingBody::finish(body, None).unwrap();
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

impl wasi::exports::http::incoming_handler::Guest for Chaos {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        // `ACTION` in the environment overrides the path's last segment (a
        // function called on a fixed path, like a password-reset hook).
        let action = std::env::var("ACTION").unwrap_or_else(|_| {
            path.split('?')
                .next()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        });
        match action.as_str() {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "alloc" => {
                let mb = num(&path, "mb", u64::MAX);
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                let mut done = 0;
                while done < mb {
                    blocks.push(vec![1u8; 1 << 20]);
                    done += 1;
                }
                respond(out, 200, &format!("allocated {} MiB", blocks.len()));
            }
            "panic" => {
                eprintln!("chaos: about to panic");
                panic!("chaos asked to panic");
            }
            "dump" => {
                // A careless handler: prints its whole input, then fails.
                let body = request.consume().unwrap();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut body.stream().unwrap(), &mut text).unwrap();
                println!("chaos: got {text}");
                respond(out, 500, "chaos: dumped the input and failed");
            }
            "parse" => {
                // A handler with an input bug: it reads the body and
                // panics unless it starts with '{'.
                let body = request.consume().unwrap();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut body.stream().unwrap(), &mut text).unwrap();
                if !text.starts_with('{') {
                    eprintln!("chaos: cannot parse {} bytes", text.len());
                    panic!("chaos cannot parse the body");
                }
                respond(out, 200, "parsed");
            }
            "sleep" => {
                sleep_ms(num(&path, "ms", 1000));
                respond(out, 200, "slept");
            }
            "slowhead" => {
                sleep_ms(num(&path, "ms", 1000));
                respond(out, 200, "late head");
            }
            "slowbody" => {
                let resp = OutgoingResponse::new(Fields::new());
                let body = resp.body().unwrap();
                ResponseOutparam::set(out, Ok(resp));
                let mut w = body.write().unwrap();
                w.write_all(b"head sent\n").unwrap();
                w.flush().unwrap();
                sleep_ms(num(&path, "ms", 1000));
                w.write_all(b"body done\n").unwrap();
                drop(w);
                OutgoingBody::finish(body, None).unwrap();
            }
            "noresponse" => {
                drop(out);
            }
            "count" => {
                let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
                respond(out, 200, &n.to_string());
            }
            "hoard" => {
                let n = num(&path, "n", 1000);
                let mut held = Vec::new();
                for i in 0..n {
                    let f = Fields::new();
                    let _ = f.append("x-hoard", format!("{i:0>64}").as_bytes());
                    held.push(f);
                }
                respond(out, 200, &format!("held {}", held.len()));
            }
            "env" => {
                let name = query(&path, "name").unwrap_or("GREETING");
                respond(out, 200, &std::env::var(name).unwrap_or_default());
            }
            other => respond(out, 404, &format!("chaos: unknown action {other:?}")),
        }
    }
}

wasi::http::proxy::export!(Chaos);
