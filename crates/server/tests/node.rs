//! A node in process: it serves both listeners as `nimbus up` does, keeps
//! the data dir's contract (`server.json`, the admin token), and stopping
//! it lets go of everything (its ports, its file, its database).

use nimbus_server::{Config, Node};

fn config(data_dir: &std::path::Path) -> Config {
    let dir = data_dir.display().to_string();
    Config::from_args([
        "--listen",
        "127.0.0.1:0",
        "--control-listen",
        "127.0.0.1:0",
        "--data-dir",
        &dir,
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_both_listeners_and_stops_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(config(data.path())).await.unwrap();
    let http = reqwest::Client::new();
    // Health on both; the control API only on its own listener, with the
    // data dir's admin token.
    for base in [&node.url, &node.control_url] {
        let r = http.get(format!("{base}/v1/health")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{base}");
    }
    let apps = |base: &str| {
        http.get(format!("{base}/v1/apps"))
            .bearer_auth(&node.admin_token)
            .send()
    };
    assert_eq!(apps(&node.control_url).await.unwrap().status(), 200);
    assert_eq!(apps(&node.url).await.unwrap().status(), 404);
    let token = std::fs::read_to_string(data.path().join("admin-token")).unwrap();
    assert_eq!(token.trim(), node.admin_token);
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.path().join("server.json")).unwrap())
            .unwrap();
    assert_eq!(info["url"], node.url.as_str());
    assert_eq!(info["control_url"], node.control_url.as_str());

    let (url, control_url) = (node.url.clone(), node.control_url.clone());
    node.stop().await.unwrap();
    assert!(!data.path().join("server.json").exists());
    // The apps' listener is closed; a node on the same data dir starts
    // again (the embedded database was let go) with the same admin token.
    for base in [&url, &control_url] {
        let r = http.get(format!("{base}/v1/health")).send().await;
        assert!(r.is_err(), "{base} still answers after the node stopped");
    }
    let again = Node::start(config(data.path())).await.unwrap();
    assert_eq!(again.admin_token, token.trim());
    let r = http
        .get(format!("{}/v1/health", again.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    again.stop().await.unwrap();
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path());
    c.listen = addr.clone();
    let e = Node::start(c).await.err().expect("the port is taken");
    let message = format!("{e:#}");
    assert!(
        message.contains(&addr) && message.contains("--listen"),
        "{message}"
    );
}
