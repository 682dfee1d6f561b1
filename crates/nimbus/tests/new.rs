//! `nimbus new` for each language: the app it writes is built by `nimbus
//! deploy` with the language's real toolchain, deployed as it is, and
//! answers. (JavaScript reuses `examples/greet-js`'s installed
//! componentize-js, the same pinned version, instead of fetching it again;
//! Python finds componentize-py in `target/pyenv`, which `scripts/test`
//! installs.)

mod common;

use common::{Server, repo};
use std::ffi::OsString;

/// Runs `nimbus new ARGS --dir DIR` (no server involved); the app's directory.
fn created(dir: &std::path::Path, args: &[&str]) -> std::path::PathBuf {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .arg("new")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("created") && text.contains("nimbus deploy"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join(args[0])
}

fn deploy(server: &Server, app: &std::path::Path) -> String {
    let path: OsString =
        std::env::join_paths(std::iter::once(repo().join("target/pyenv/bin")).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
    let out = server.cli_env(&[("PATH", &path)], &["deploy", app.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "deploying {} failed:\n{text}",
        app.display()
    );
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn new_apps_in_every_language_deploy_and_answer() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for (args, wasi, says) in [
        (
            &["rs3", "--lang", "rust"][..],
            "WASI 0.3",
            "Hello from rs3 (Rust, WASI 0.3)! You asked for /rs3/x?y=1\n",
        ),
        (
            &["rs2", "--lang", "rust", "--wasi", "0.2"][..],
            "WASI 0.2",
            "Hello from rs2 (Rust, WASI 0.2)! You asked for /rs2/x?y=1\n",
        ),
        (
            &["js-app", "--lang", "js"][..],
            "WASI 0.2",
            "Hello from js-app (JavaScript)! You asked for /js-app/x\n",
        ),
        (
            &["py-app", "--lang", "python"][..],
            "WASI 0.2",
            "Hello from py-app (Python)! You asked for /py-app/x?y=1\n",
        ),
    ] {
        let app = created(dir.path(), args);
        if args[2] == "js" {
            std::os::unix::fs::symlink(
                repo().join("examples/greet-js/node_modules"),
                app.join("node_modules"),
            )
            .unwrap();
        }
        let out = deploy(&server, &app);
        assert!(
            out.contains(&format!("deployed {} revision 1", args[0])) && out.contains(wasi),
            "{out}"
        );
        let (status, body) = server.get_text(&format!("/{}/x?y=1", args[0])).await;
        assert_eq!((status, body.as_str()), (200, says), "{}", args[0]);
    }
    // Its configuration is Nimbus's: the greeting is a variable.
    server.cli_ok(&["config", "set", "py-app", "greeting", "Hej"]);
    assert_eq!(
        server.get_text("/py-app").await,
        (
            200,
            "Hej from py-app (Python)! You asked for /py-app\n".to_string()
        )
    );
}
