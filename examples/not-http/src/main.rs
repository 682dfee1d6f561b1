//! A valid WASI component that exports `wasi:cli/run` instead of the HTTP
//! handler. Nimbus refuses to deploy it, with an error that says why.

fn main() {
    println!("I am a command, not an HTTP handler");
}
