//! WebSocket routes against a real server: the chat guest (`examples/chat`)
//! as connect, message and disconnect functions, driven by a real
//! WebSocket client (tokio-tungstenite) and the control API.

mod common;

use common::ws::{ask, closed_with, connect, connect_from, next_text, refused, refused_from};
use common::{Server, app_dir};
use futures::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const CHAT: &str = r#"
[app]
name = "chat"

[auth]

[functions.join]
component = "@WASM@/chat.wasm"
[functions.talk]
component = "@WASM@/chat.wasm"
[functions.leave]
component = "@WASM@/chat.wasm"

[policies.members]
auth = "api_key"

[policies.site]
cors = { origins = ["https://game.example"] }

[policies.players]
auth = "jwt"

[[triggers.websocket]]
route = "/rooms/{room}"
connect = "join"
message = "talk"
disconnect = "leave"
max_message_kb = 1

[[triggers.websocket]]
route = "/members"
message = "talk"
policy = "members"

[[triggers.websocket]]
route = "/site"
message = "talk"
policy = "site"

[[triggers.websocket]]
route = "/quiet"
message = "talk"
idle_timeout_s = 1

[[triggers.websocket]]
route = "/players/{room}"
connect = "join"
message = "talk"
policy = "players"
"#;

async fn control(s: &Server, method: reqwest::Method, path: &str, body: &str) -> (u16, String) {
    let r = s
        .http
        .request(method, format!("{}{path}", s.control))
        .bearer_auth(s.token())
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_route_invokes_its_functions_on_fresh_instances() {
    let s = Server::start(&[]);
    let app = app_dir(CHAT);
    s.deploy(app.path());

    // Refusals: the connect function's own answer, a request that is no
    // upgrade, and a policy's.
    let (status, body) = refused(&s, "/rooms/lobby").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("add ?name=YOUR_NAME"), "{body}");
    let (status, body) = s.get_text("/rooms/lobby?name=ann").await;
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("is a WebSocket route"), "{body}");
    assert_eq!(refused(&s, "/members").await.0, 401);

    // Messages reach the message function, one fresh instance each, and
    // its answer comes back on the connection.
    let mut ann = connect(&s, "/rooms/lobby?name=ann").await;
    assert_eq!(ask(&mut ann, "hello").await, "lobby ann (text): hello");
    assert_eq!(ask(&mut ann, "count").await, "served:1");
    assert_eq!(ask(&mut ann, "count").await, "served:1");
    ann.send(Message::binary(b"bin".to_vec())).await.unwrap();
    assert_eq!(next_text(&mut ann).await, "lobby ann (binary): bin");
    let id = ask(&mut ann, "whoami").await;
    let id = id.strip_prefix("id:").unwrap().to_string();
    let log = s
        .wait_for_log("chat", &["join"], &format!("connect {id} ann to lobby"))
        .await;
    assert!(log.contains(&id), "{log}");

    // The control API lists it, sends to it, and finds nothing of it
    // under another app.
    let list = s.api("/v1/apps/chat/connections").await;
    let listed = list.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["route"], "/rooms/{room}");
    assert_eq!(listed[0]["messages_in"], 5);
    let send = format!("/v1/apps/chat/connections/{id}/messages");
    assert_eq!(
        control(&s, reqwest::Method::POST, &send, "from the server")
            .await
            .0,
        202
    );
    assert_eq!(next_text(&mut ann).await, "from the server");
    let (status, body) = control(
        &s,
        reqwest::Method::POST,
        &format!("/v1/apps/other/connections/{id}/messages"),
        "x",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = control(
        &s,
        reqwest::Method::DELETE,
        &format!("/v1/apps/other/connections/{id}"),
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        s.api("/v1/apps/other/connections").await,
        serde_json::json!([])
    );

    // A message over the route's 1 KiB closes the connection with 1009;
    // the disconnect function hears of it, and a send fails clearly.
    ann.send(Message::text("x".repeat(2048))).await.unwrap();
    let (code, reason) = closed_with(&mut ann).await;
    assert_eq!(code, CloseCode::Size, "{reason}");
    s.wait_for_log("chat", &["leave"], &format!("disconnect {id} 1009"))
        .await;
    let (status, body) = control(&s, reqwest::Method::POST, &send, "late").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("is not open"), "{body}");

    // A client's close, and a close from the control API with its code.
    let mut bob = connect(&s, "/rooms/den?name=bob").await;
    let bob_id = ask(&mut bob, "whoami").await.replace("id:", "");
    bob.close(None).await.unwrap();
    s.wait_for_log("chat", &["leave"], &format!("disconnect {bob_id} 1005"))
        .await;
    let mut cy = connect(&s, "/rooms/den?name=cy").await;
    let cy_id = ask(&mut cy, "whoami").await.replace("id:", "");
    let (status, body) = control(
        &s,
        reqwest::Method::DELETE,
        &format!("/v1/apps/chat/connections/{cy_id}?code=4000&reason=bye"),
        "",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        closed_with(&mut cy).await,
        (CloseCode::from(4000), "bye".into())
    );
    s.wait_for_log("chat", &["leave"], &format!("disconnect {cy_id} 4000 bye"))
        .await;

    // The policy's API key, given as a browser must (a query parameter),
    // reaches neither the function nor the invocation records.
    let token = s.token();
    let mut member = connect(&s, &format!("/members?x=1&access_token={token}")).await;
    // No room parameter and no name on this route.
    assert_eq!(ask(&mut member, "hi").await, "  (text): hi");
    assert_eq!(ask(&mut member, "path").await, "/members?x=1");
    // Records are written in the background.
    let mut records = String::new();
    for _ in 0..100 {
        records = s
            .api("/v1/apps/chat/invocations?limit=1000")
            .await
            .to_string();
        if records.contains("/members?x=1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(records.contains("/members?x=1"), "{records}");
    assert!(
        !records.contains(&token),
        "the token is in the records: {records}"
    );

    // With CORS in its policy, a route takes pages of the listed origins
    // only (and clients that are no browser).
    let (status, body) = refused_from(&s, "/site", Some("https://evil.example")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("allows only https://game.example"), "{body}");
    let mut page = connect_from(&s, "/site", Some("https://game.example")).await;
    assert_eq!(ask(&mut page, "hi").await, "  (text): hi");
    connect(&s, "/site").await;

    // No message either way for idle_timeout_s closes with 1001.
    let mut quiet = connect(&s, "/quiet").await;
    let (code, reason) = closed_with(&mut quiet).await;
    assert_eq!(code, CloseCode::Away, "{reason}");
    assert!(reason.contains("idle for 1 s"), "{reason}");

    // A deploy moves the app to a new revision: its open connections
    // close with 1012, and new ones get the new revision.
    let mut dan = connect(&s, "/rooms/den?name=dan").await;
    let dan_id = ask(&mut dan, "whoami").await.replace("id:", "");
    let next = app_dir(&CHAT.replace(
        "[functions.leave]",
        "[functions.leave]\nenv = { REVISION = \"2\" }",
    ));
    s.deploy(next.path());
    let (code, reason) = closed_with(&mut dan).await;
    assert_eq!(code, CloseCode::Restart, "{reason}");
    s.wait_for_log("chat", &["leave"], &format!("disconnect {dan_id} 1012"))
        .await;
    let mut eve = connect(&s, "/rooms/den?name=eve").await;
    assert_eq!(ask(&mut eve, "hi").await, "den eve (text): hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_and_caps_refuse_the_next_connection() {
    let s = Server::start(&["--max-app-connections", "2"]);
    let app = app_dir(CHAT);
    s.deploy(app.path());
    let mut reader = connect(&s, "/rooms/a?name=reader").await;
    let reader_id = ask(&mut reader, "whoami").await.replace("id:", "");
    let mut sleeper = connect(&s, "/rooms/a?name=sleeper").await;
    let sleeper_id = ask(&mut sleeper, "whoami").await.replace("id:", "");

    // The app's cap: a third connection is refused with 503.
    let (status, body) = refused(&s, "/rooms/a?name=third").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("maximum of 2 WebSocket connections"),
        "{body}"
    );

    // The sleeper never reads: sends to it fill the socket, then its send
    // buffer, and it is cut off; the reader keeps receiving throughout.
    let chunk = "z".repeat(64 << 10);
    let send = format!("/v1/apps/chat/connections/{sleeper_id}/messages");
    let mut cut = None;
    for i in 0..2000 {
        let (status, body) = control(&s, reqwest::Method::POST, &send, &chunk).await;
        if status != 202 {
            cut = Some((i, status, body));
            break;
        }
    }
    let (sent, status, body) = cut.expect("2000 messages of 64 KiB never filled the buffer");
    assert_eq!(status, 410, "{body}");
    assert!(body.contains("reads too slowly"), "{body}");
    // The socket's kernel buffers take some MiB first, then the 256 KiB
    // the node keeps for it.
    assert!(
        (4..400).contains(&sent),
        "cut off after {sent} messages of 64 KiB"
    );
    let (status, _) = control(
        &s,
        reqwest::Method::POST,
        &format!("/v1/apps/chat/connections/{reader_id}/messages"),
        "still here",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(next_text(&mut reader).await, "still here");
    s.wait_for_log("chat", &["leave"], &format!("disconnect {sleeper_id} 1008"))
        .await;
    drop(sleeper);

    // Its place is free again.
    let mut third = connect(&s, "/rooms/a?name=third").await;
    assert_eq!(ask(&mut third, "hi").await, "a third (text): hi");
    let listed = s.api("/v1/apps/chat/connections").await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}

/// The app's usage report, by function.
async fn usage(s: &Server, app: &str) -> serde_json::Value {
    s.api(&format!("/v1/apps/{app}/usage?by=function")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_send_close_and_publish_to_channels_of_their_own_app() {
    let s = Server::start(&[]);
    let app = app_dir(CHAT);
    s.deploy(app.path());
    let rival = app_dir(
        r#"
[app]
name = "rival"

[auth]

[functions.talk]
component = "@WASM@/chat.wasm"

[[triggers.websocket]]
route = "/rival/{room}"
message = "talk"
"#,
    );
    s.deploy(rival.path());

    // The connect function subscribed each client to its room's channel;
    // a publish reaches the room (the sender too), and no other room.
    let mut ann = connect(&s, "/rooms/lobby?name=ann").await;
    let mut bob = connect(&s, "/rooms/lobby?name=bob").await;
    let mut cy = connect(&s, "/rooms/den?name=cy").await;
    let ann_id = ask(&mut ann, "whoami").await.replace("id:", "");
    let bob_id = ask(&mut bob, "whoami").await.replace("id:", "");
    let cy_id = ask(&mut cy, "whoami").await.replace("id:", "");
    ann.send(Message::text("say hi all")).await.unwrap();
    assert_eq!(next_text(&mut ann).await, "lobby ann: hi all");
    assert_eq!(next_text(&mut bob).await, "lobby ann: hi all");
    // What cy's queue holds comes in order: had the publish reached it,
    // it would come before this.
    let to_cy = format!("/v1/apps/chat/connections/{cy_id}/messages");
    assert_eq!(
        control(&s, reqwest::Method::POST, &to_cy, "sentinel")
            .await
            .0,
        202
    );
    assert_eq!(next_text(&mut cy).await, "sentinel");

    // The control API publishes too.
    let (status, body) = control(
        &s,
        reqwest::Method::POST,
        "/v1/apps/chat/channels/room:den/messages",
        "den news",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(next_text(&mut cy).await, "den news");

    // Subscribing from a message function; the listing shows it.
    assert_eq!(ask(&mut cy, "join news").await, "ok");
    let listed = s.api("/v1/apps/chat/connections").await;
    let cy_row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == cy_id.as_str())
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(cy_row["channels"], serde_json::json!(["room:den", "news"]));
    assert_eq!(ask(&mut ann, "shout news extra").await, "ok");
    assert_eq!(next_text(&mut cy).await, "extra");
    assert_eq!(ask(&mut cy, "leave news").await, "ok");
    assert_eq!(ask(&mut ann, "shout news again").await, "ok");
    control(&s, reqwest::Method::POST, &to_cy, "sentinel 2").await;
    assert_eq!(next_text(&mut cy).await, "sentinel 2");

    // Sending to and closing one connection from a function.
    assert_eq!(ask(&mut ann, &format!("tell {bob_id} psst")).await, "ok");
    assert_eq!(next_text(&mut bob).await, "psst");
    assert_eq!(ask(&mut ann, &format!("kick {cy_id}")).await, "ok");
    assert_eq!(
        closed_with(&mut cy).await,
        (CloseCode::from(4001), "kicked".into())
    );
    s.wait_for_log(
        "chat",
        &["leave"],
        &format!("disconnect {cy_id} 4001 kicked"),
    )
    .await;
    let gone = ask(&mut ann, &format!("tell {cy_id} late")).await;
    assert!(gone.contains("NotOpen("), "{gone}");

    // What the host refuses, it says why.
    let bad = ask(&mut ann, "join no spaces").await;
    assert!(
        bad.contains("Invalid(") && bad.contains("not a channel name"),
        "{bad}"
    );
    let bad = ask(&mut ann, "kick nobody").await;
    assert!(bad.contains("NotOpen("), "{bad}");

    // Another app's function reaches none of this app's connections or
    // channels, even knowing their ids and names; nor does its key.
    let mut rex = connect(&s, "/rival/lobby").await;
    for attempt in [format!("tell {ann_id} gotcha"), format!("kick {ann_id}")] {
        let answer = ask(&mut rex, &attempt).await;
        assert!(answer.contains("NotOpen("), "{attempt}: {answer}");
    }
    let answer = ask(&mut rex, &format!("add {ann_id} stolen")).await;
    assert!(answer.contains("NotOpen("), "{answer}");
    assert_eq!(ask(&mut rex, "shout room:lobby from rival").await, "ok");
    let (status, _) = control(
        &s,
        reqwest::Method::POST,
        "/v1/apps/rival/channels/room:lobby/messages",
        "from rival's control",
    )
    .await;
    assert_eq!(status, 202);
    // A key of the rival app (invoke and read-logs) is refused on chat's.
    let key = s.cli_ok(&[
        "keys",
        "create",
        "rival-ops",
        "--app",
        "rival",
        "--scope",
        "invoke",
        "--scope",
        "read-logs",
    ]);
    let key = key.lines().next().unwrap().trim().to_string();
    for (method, path) in [
        (
            reqwest::Method::GET,
            "/v1/apps/chat/connections".to_string(),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/apps/chat/connections/{ann_id}/messages"),
        ),
        (
            reqwest::Method::POST,
            "/v1/apps/chat/channels/room:lobby/messages".to_string(),
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/apps/chat/connections/{ann_id}"),
        ),
    ] {
        let r = s
            .http
            .request(method.clone(), format!("{}{path}", s.control))
            .bearer_auth(&key)
            .header("content-type", "text/plain")
            .body("gotcha")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
    }
    // Ids that are no connection id are refused before any lookup.
    let long = "x".repeat(900);
    let answer = ask(&mut ann, &format!("tell {long} hi")).await;
    assert!(
        answer.contains("NotOpen(") && answer.len() < 400,
        "{}",
        &answer[..200.min(answer.len())]
    );
    let to_ann = format!("/v1/apps/chat/connections/{ann_id}/messages");
    control(&s, reqwest::Method::POST, &to_ann, "sentinel 3").await;
    assert_eq!(next_text(&mut ann).await, "sentinel 3");

    // A JWT of the app's user pool, at the upgrade (as a browser gives
    // it): the verified subject reaches the functions; no token, or one
    // of another app's pool, is refused.
    let signup = |app: &'static str| {
        let s = &s;
        async move {
            let r = s
                .http
                .post(format!("{}/v1/apps/{app}/auth/signup", s.control))
                .json(&serde_json::json!({"email": "pat@example.com", "password": "correct horse"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let pat = signup("chat").await;
    let token = pat["access_token"].as_str().unwrap().to_string();
    let mut p = connect(&s, &format!("/players/arena?name=pat&access_token={token}")).await;
    assert_eq!(
        ask(&mut p, "whois").await,
        format!("sub:{}", pat["user"]["id"].as_str().unwrap())
    );
    assert_eq!(refused(&s, "/players/arena?name=pat").await.0, 401);
    let foreign = signup("rival").await;
    let foreign = foreign["access_token"].as_str().unwrap();
    let (status, body) = refused(
        &s,
        &format!("/players/arena?name=pat&access_token={foreign}"),
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // The CLI lists, sends, publishes (to a channel whose name has a
    // slash) and closes.
    let ls = s.cli_ok(&["connections", "ls", "chat"]);
    assert!(ls.contains(&ann_id) && ls.contains(&bob_id), "{ls}");
    assert!(ls.contains("channels: room:lobby"), "{ls}");
    s.cli_ok(&["connections", "send", "chat", &bob_id, "cli hello"]);
    assert_eq!(next_text(&mut bob).await, "cli hello");
    assert_eq!(ask(&mut ann, "join team/blue").await, "ok");
    s.cli_ok(&["connections", "publish", "chat", "team/blue", "cli all"]);
    assert_eq!(next_text(&mut ann).await, "cli all");
    let refused_code = s.cli_err(&["connections", "close", "chat", &bob_id, "--code", "1001"]);
    assert!(
        refused_code.contains("not one an app may send"),
        "{refused_code}"
    );
    s.cli_ok(&[
        "connections",
        "close",
        "chat",
        &bob_id,
        "--code",
        "4002",
        "--reason",
        "cli",
    ]);
    assert_eq!(
        closed_with(&mut bob).await,
        (CloseCode::from(4002), "cli".into())
    );
    let gone = s.cli_err(&["connections", "send", "chat", &bob_id, "late"]);
    assert!(
        gone.contains("is not open") && gone.contains("404"),
        "{gone}"
    );

    // Metering: the functions' realtime calls, and the connections' own
    // time and messages, once they closed.
    for ws in [&mut ann, &mut p, &mut rex] {
        ws.close(None).await.unwrap();
    }
    let mut report = serde_json::Value::Null;
    for _ in 0..100 {
        report = usage(&s, "chat").await;
        let sockets = report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == "chat/(websockets)")
            .cloned();
        if let Some(row) = sockets
            && row["websockets"]["messages_in"].as_i64().unwrap_or(0) >= 16
        {
            // ann 11, bob 1, cy 3, pat 1.
            let w = &row["websockets"];
            assert_eq!(w["messages_in"], 16, "{row}");
            assert!(w["messages_out"].as_i64().unwrap() >= 20, "{row}");
            assert!(w["connection_minutes"].as_f64().unwrap() > 0.0, "{row}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = report["rows"].as_array().unwrap();
    let sockets = rows.iter().find(|r| r["key"] == "chat/(websockets)");
    assert!(
        sockets.is_some_and(|r| r["websockets"]["messages_in"] == 16),
        "{report}"
    );
    let talk = rows.iter().find(|r| r["key"] == "chat/talk").unwrap();
    assert!(
        talk["operations"]["realtime"].as_i64().unwrap() >= 7,
        "{talk}"
    );
    let join = rows.iter().find(|r| r["key"] == "chat/join").unwrap();
    assert!(
        join["operations"]["realtime"].as_i64().unwrap() >= 3,
        "{join}"
    );
    let api = rows.iter().find(|r| r["key"] == "chat/(api)").unwrap();
    assert!(
        api["operations"]["realtime"].as_i64().unwrap() >= 4,
        "{api}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_fans_out_to_every_subscriber() {
    let s = Server::start(&[]);
    let app = app_dir(CHAT);
    s.deploy(app.path());
    let mut crowd = Vec::new();
    for i in 0..200 {
        crowd.push(connect(&s, &format!("/rooms/crowd?name=p{i}")).await);
    }
    let mut outsider = connect(&s, "/rooms/elsewhere?name=out").await;

    // From a function (one member says it), then from the control API:
    // each of the 200 gets both, in that order; the outsider neither.
    crowd[0]
        .send(Message::text("say hello crowd"))
        .await
        .unwrap();
    for ws in crowd.iter_mut() {
        assert_eq!(next_text(ws).await, "crowd p0: hello crowd");
    }
    let (status, body) = control(
        &s,
        reqwest::Method::POST,
        "/v1/apps/chat/channels/room:crowd/messages",
        "from outside",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    for ws in crowd.iter_mut() {
        assert_eq!(next_text(ws).await, "from outside");
    }
    assert_eq!(
        ask(&mut outsider, "whoami").await.len(),
        35,
        "its own answer, nothing else first"
    );
    let listed = s.api("/v1/apps/chat/connections?limit=1000").await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        201,
        "every connection is listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi3_function_sends_and_publishes_asynchronously() {
    let s = Server::start(&[]);
    let manifest = format!(
        "{CHAT}\n[functions.w3]\ncomponent = \"@WASM@/wasi3.wasm\"\n\n[[triggers.http]]\nroute = \"/w3/{{action}}\"\nfunction = \"w3\"\n"
    );
    let app = app_dir(&manifest);
    s.deploy(app.path());
    let mut ann = connect(&s, "/rooms/lobby?name=ann").await;
    let ann_id = ask(&mut ann, "whoami").await.replace("id:", "");
    let post = |path: String, body: &'static str| {
        let s = &s;
        async move {
            let r = s
                .http
                .post(format!("{}{path}", s.url))
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // nimbus:realtime@0.2.0 from a WASI 0.3 guest: a send, a publish to
    // the room the connect function subscribed ann to, a clear refusal.
    let (status, body) = post(format!("/w3/tell3?to={ann_id}"), "from 0.3").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(next_text(&mut ann).await, "from 0.3");
    let (status, body) = post("/w3/publish3?channel=room:lobby".into(), "to the room").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(next_text(&mut ann).await, "to the room");
    let (status, body) = post(format!("/w3/tell3?to={}", "0".repeat(32)), "nobody").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("NotOpen(") && body.contains("is not open"),
        "{body}"
    );
}
