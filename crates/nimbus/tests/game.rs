//! The reference app (`examples/game`, Connect Four) end to end over HTTP:
//! users from the app's pool, gameplay through JWT routes, optimistic
//! concurrency on the game document, the leaderboard and results written by
//! the topic consumer and read by clients straight from the data API, and
//! the schedule that abandons idle games. The browser tests are in
//! `browser.rs`.

mod common;

use common::{Server, guests};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

fn game_dir() -> PathBuf {
    common::repo().join("examples/game")
}

/// The game's manifest with absolute component paths and no build
/// commands, edited by `edit`, in a temporary app dir.
fn game_variant(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let text = std::fs::read_to_string(game_dir().join("nimbus.toml")).unwrap();
    let text = text
        .replace(
            "../target/wasm32-wasip2/release/",
            &format!("{}/", guests().display()),
        )
        .lines()
        .filter(|l| !l.starts_with("build ="))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nimbus.toml"), edit(text)).unwrap();
    dir
}

struct Player {
    id: String,
    token: String,
}

async fn sign_up(s: &Server, email: &str) -> Player {
    let r = s
        .http
        .post(format!("{}/v1/apps/game/auth/signup", s.url))
        .json(&json!({ "email": email, "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "signup {email}");
    let v: Value = r.json().await.unwrap();
    Player {
        id: v["user"]["id"].as_str().unwrap().to_string(),
        token: v["access_token"].as_str().unwrap().to_string(),
    }
}

/// A call to the game API as `p`: (status, JSON body).
async fn call(
    s: &Server,
    p: &Player,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = s
        .http
        .request(method.parse().unwrap(), format!("{}{path}", s.url))
        .bearer_auth(&p.token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn play(s: &Server, p: &Player, game: &str, column: u64) -> (u16, Value) {
    let path = format!("/api/games/{game}/moves");
    call(s, p, "POST", &path, Some(json!({ "column": column }))).await
}

/// A query on the data API, with a user's token or none.
async fn query(s: &Server, coll: &str, token: Option<&str>, q: Value) -> (u16, Value) {
    let mut rb = s
        .http
        .post(format!("{}/v1/apps/game/docs/{coll}/_query", s.url))
        .json(&q);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Polls the public leaderboard until `player` has played `games` games.
async fn leaderboard_row(s: &Server, player: &str, games: i64) -> Value {
    for _ in 0..200 {
        let (status, v) = query(s, "leaderboard", None, json!({ "limit": 100 })).await;
        assert_eq!(status, 200, "{v}");
        let row = v["documents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == player)
            .map(|d| d["body"].clone());
        if let Some(row) = row
            && row["games"] == games
        {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{player} never reached {games} games on the leaderboard");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_players_play_connect_four_to_a_win() {
    let s = Server::start(&[]);
    // The real manifest, with its build commands, as `scripts/demo` deploys it.
    let out = s.deploy(&game_dir());
    assert!(out.contains("deployed game revision 1"), "{out}");
    let (status, page) = s.get_text("/game/").await;
    assert_eq!(status, 200);
    assert!(page.contains("Connect Four"), "{page}");
    let js = s.get("/game/app.js").await;
    assert_eq!(js.status(), 200);
    // A browser's cached copy is revalidated by its ETag.
    let etag = js.headers()["etag"].clone();
    let r = s
        .http
        .get(format!("{}/game/app.js", s.url))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, status) in [("/", 302), ("/game", 301)] {
        let r = no_redirects
            .get(format!("{}{path}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(
            (
                r.status().as_u16(),
                r.headers()["location"].to_str().unwrap()
            ),
            (status, "/game/"),
            "{path}"
        );
    }
    // A HEAD request (or a 304) sends no body: the guest still finishes
    // writing the one it made, and that is no client going away.
    let r = s
        .http
        .head(format!("{}/game/app.js", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = common::invocation_id(&r);
    let record = s
        .api_wait("/v1/apps/game/invocations?function=web", 10, |v| {
            v.as_array().unwrap().iter().any(|r| r["id"] == id.as_str())
        })
        .await;
    let record = record
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (record["method"].as_str(), record["outcome"].as_str()),
        (Some("HEAD"), Some("ok")),
        "{record}"
    );

    let alice = sign_up(&s, "alice@example.com").await;
    let bob = sign_up(&s, "bob@example.com").await;
    // Gameplay routes need a user token.
    let r = s
        .http
        .post(format!("{}/api/games", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let (status, game) = call(&s, &alice, "POST", "/api/games", None).await;
    assert_eq!(status, 201, "{game}");
    let id = game["id"].as_str().unwrap().to_string();
    assert_eq!(
        (game["status"].as_str(), game["you"].as_str()),
        (Some("open"), Some("red"))
    );
    let (_, lists) = call(&s, &bob, "GET", "/api/games", None).await;
    assert!(
        lists["open"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == id.as_str()),
        "{lists}"
    );
    let (status, v) = play(&s, &alice, &id, 3).await;
    assert_eq!(status, 409, "a move before anyone joined: {v}");
    let (status, v) = call(&s, &alice, "POST", &format!("/api/games/{id}/join"), None).await;
    assert_eq!(status, 409);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("you created this game"),
        "{v}"
    );
    let (status, v) = call(&s, &bob, "POST", &format!("/api/games/{id}/join"), None).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("playing")),
        "{v}"
    );

    // Two moves at once from red, read at the same version: one is stored,
    // the other is refused with a conflict (or, if it read the new state,
    // because it is no longer red's turn). Never both.
    let path = format!("/api/games/{id}/moves");
    let (a, b) = tokio::join!(
        call(
            &s,
            &alice,
            "POST",
            &path,
            Some(json!({ "column": 0, "version": 2 }))
        ),
        call(
            &s,
            &alice,
            "POST",
            &path,
            Some(json!({ "column": 0, "version": 2 }))
        ),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let refused = if a.0 == 409 { &a.1 } else { &b.1 };
    assert!(
        refused["error"].as_str().unwrap().contains("reload"),
        "{refused}"
    );
    let (_, now) = call(&s, &bob, "GET", &format!("/api/games/{id}"), None).await;
    assert_eq!(
        now["moves"],
        json!([0]),
        "exactly one of the two moves was played"
    );
    // A stale board is refused, and so is playing out of turn.
    let (status, v) = call(
        &s,
        &bob,
        "POST",
        &path,
        Some(json!({ "column": 1, "version": 2 })),
    )
    .await;
    assert_eq!(status, 409);
    assert!(v["error"].as_str().unwrap().contains("out of date"), "{v}");
    let (status, v) = play(&s, &alice, &id, 1).await;
    assert_eq!(status, 409);
    assert!(
        v["error"].as_str().unwrap().contains("not your turn"),
        "{v}"
    );

    // Fill column 0 (R Y R Y R Y: no line), then an illegal move into it.
    for (p, col) in [(&bob, 0), (&alice, 0), (&bob, 0), (&alice, 0), (&bob, 0)] {
        let (status, v) = play(&s, p, &id, col).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, v) = play(&s, &alice, &id, 0).await;
    assert_eq!(status, 422);
    assert_eq!(
        v["error"],
        "illegal move: column 0 is full: choose another column"
    );
    let (status, v) = play(&s, &alice, &id, 9).await;
    assert_eq!(status, 422, "{v}");
    // Red stacks four in column 1 while yellow plays column 2.
    for (p, col) in [
        (&alice, 1),
        (&bob, 2),
        (&alice, 1),
        (&bob, 2),
        (&alice, 1),
        (&bob, 2),
    ] {
        let (status, v) = play(&s, p, &id, col).await;
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("playing")),
            "{v}"
        );
    }
    // Bob waits for alice's winning move through the long poll.
    let watch = format!("/api/games/{id}/next?after={}", 14);
    let (waited, won) = tokio::join!(
        call(&s, &bob, "GET", &watch, None),
        play(&s, &alice, &id, 1)
    );
    assert_eq!(won.0, 200);
    assert_eq!(
        (won.1["status"].as_str(), won.1["result"].as_str()),
        (Some("finished"), Some("connect-four"))
    );
    assert_eq!(won.1["winner"], alice.id.as_str());
    assert_eq!(won.1["line"], json!([[2, 1], [3, 1], [4, 1], [5, 1]]));
    assert_eq!(waited.0, 200);
    assert_eq!(
        waited.1["moves"].as_array().unwrap().len(),
        13,
        "{}",
        waited.1
    );
    let (status, _) = play(&s, &bob, &id, 3).await;
    assert_eq!(status, 409, "no move after the end");

    // The scorer (topic consumer) updates the leaderboard, which anyone
    // reads straight from the data API ...
    let row = leaderboard_row(&s, &alice.id, 1).await;
    assert_eq!(
        (
            row["wins"].as_i64(),
            row["points"].as_i64(),
            row["name"].as_str()
        ),
        (Some(1), Some(3), Some("alice"))
    );
    let row = leaderboard_row(&s, &bob.id, 1).await;
    assert_eq!(
        (row["losses"].as_i64(), row["points"].as_i64()),
        (Some(1), Some(0))
    );
    let (status, v) = query(
        &s,
        "leaderboard",
        None,
        json!({ "order_by": [["points", "desc"]], "limit": 1 }),
    )
    .await;
    assert_eq!(
        (status, v["documents"][0]["id"].as_str()),
        (200, Some(alice.id.as_str()))
    );
    // ... but nobody writes it.
    let r = s
        .http
        .put(format!(
            "{}/v1/apps/game/docs/leaderboard/{}",
            s.url, bob.id
        ))
        .bearer_auth(&bob.token)
        .json(&json!({ "wins": 100 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Each player reads their own results, and only theirs. The scorer
    // writes a side's result just after its leaderboard row: poll.
    let mut mine = Value::Null;
    for _ in 0..200 {
        let (status, v) = query(
            &s,
            "results",
            Some(&bob.token),
            json!({ "order_by": [["finished_at", "desc"]] }),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        mine = v;
        if !mine["documents"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let docs = mine["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 1, "{mine}");
    assert_eq!(
        (
            docs[0]["body"]["outcome"].as_str(),
            docs[0]["body"]["opponent_name"].as_str()
        ),
        (Some("lost"), Some("alice"))
    );
    let r = s
        .http
        .get(format!("{}/v1/apps/game/docs/results/{id}-red", s.url))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(r.status().as_u16(), 403 | 404),
        "bob read alice's result: {}",
        r.status()
    );
    let (status, _) = query(&s, "results", None, json!({})).await;
    assert_eq!(status, 401, "results need a user token");
    // Results are owner-read: nobody writes their own, not even to flatter it.
    let r = s
        .http
        .put(format!("{}/v1/apps/game/docs/results/{id}-yellow", s.url))
        .bearer_auth(&bob.token)
        .json(&json!({ "player": bob.id, "outcome": "won" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("owner-read"));

    // A second game: bob opens, alice joins and resigns; bob wins it.
    let (_, second) = call(&s, &bob, "POST", "/api/games", None).await;
    let second = second["id"].as_str().unwrap().to_string();
    call(
        &s,
        &alice,
        "POST",
        &format!("/api/games/{second}/join"),
        None,
    )
    .await;
    let (status, v) = call(
        &s,
        &alice,
        "POST",
        &format!("/api/games/{second}/resign"),
        None,
    )
    .await;
    assert_eq!(
        (status, v["result"].as_str(), v["winner_side"].as_str()),
        (200, Some("resigned"), Some("red")),
        "{v}"
    );
    let (status, _) = call(
        &s,
        &alice,
        "POST",
        &format!("/api/games/{second}/resign"),
        None,
    )
    .await;
    assert_eq!(status, 409, "a finished game cannot be resigned again");
    let row = leaderboard_row(&s, &bob.id, 2).await;
    assert_eq!(
        (row["wins"].as_i64(), row["losses"].as_i64()),
        (Some(1), Some(1))
    );
    // An open game is cancelled by its creator, and counts for nobody.
    let (_, third) = call(&s, &alice, "POST", "/api/games", None).await;
    let (status, v) = call(
        &s,
        &alice,
        "POST",
        &format!("/api/games/{}/resign", third["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(
        (status, v["result"].as_str()),
        (200, Some("cancelled")),
        "{v}"
    );

    // The event was delivered once per subscriber and counted once.
    let events = s.api("/v1/apps/game/events?state=succeeded").await;
    assert!(
        events.to_string().contains("dev.nimbus.game.ended"),
        "{events}"
    );
}

/// Polls a game (for up to 10 s) until it is finished; the last answer.
async fn finished_game(s: &Server, p: &Player, path: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = call(s, p, "GET", path, None).await.1;
        if last["status"] == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schedule_abandons_idle_games() {
    let s = Server::start(&[]);
    let dir = game_variant(|m| {
        m.replace(r#"every = "1m""#, r#"every = "1s""#)
            .replace(r#"idle_timeout_secs = "600""#, r#"idle_timeout_secs = "1""#)
    });
    s.deploy(dir.path());
    let red = sign_up(&s, "red@example.com").await;
    let yellow = sign_up(&s, "yellow@example.com").await;
    let (_, game) = call(&s, &red, "POST", "/api/games", None).await;
    let id = game["id"].as_str().unwrap().to_string();
    call(&s, &yellow, "POST", &format!("/api/games/{id}/join"), None).await;
    assert_eq!(play(&s, &red, &id, 3).await.0, 200);
    let (_, open) = call(&s, &red, "POST", "/api/games", None).await;

    // Yellow had to move and walked away: after the idle time the janitor
    // ends the game, yellow loses, and the leaderboard counts it.
    let last = finished_game(&s, &red, &format!("/api/games/{id}")).await;
    assert_eq!(
        (last["result"].as_str(), last["winner_side"].as_str()),
        (Some("abandoned"), Some("red")),
        "{last}"
    );
    let row = leaderboard_row(&s, &yellow.id, 1).await;
    assert_eq!(row["losses"], 1);
    // An open game nobody joined is closed, and counts for nobody (it was
    // created a moment later, so it may be a tick behind).
    let open_path = format!("/api/games/{}", open["id"].as_str().unwrap());
    let closed = finished_game(&s, &red, &open_path).await;
    assert_eq!(
        (closed["status"].as_str(), closed["result"].as_str()),
        (Some("finished"), Some("abandoned")),
        "{closed}"
    );
    let row = leaderboard_row(&s, &red.id, 1).await;
    assert_eq!(row["wins"], 1);
    s.wait_for_log("game", &["janitor"], "idle games abandoned")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_served_from_the_binary() {
    let s = Server::start(&[]);
    let r = s
        .http
        .get(format!("{}/console/", s.control))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    // Cut off from app pages of the same origin that might open it.
    assert_eq!(r.headers()["cross-origin-opener-policy"], "same-origin");
    let page = r.text().await.unwrap();
    assert!(page.contains("Nimbus console"), "{page}");
    // Everything it loads is its own: no CDN, nothing outside this server.
    for file in ["/console/", "/console/console.js", "/console/console.css"] {
        let r = s
            .http
            .get(format!("{}{file}", s.control))
            .send()
            .await
            .unwrap();
        let (status, text) = (r.status().as_u16(), r.text().await.unwrap());
        assert_eq!(status, 200, "{file}");
        // (The SVG namespace is a name, not a download.)
        let text = text.replace("http://www.w3.org/2000/svg", "");
        for external in ["https://", "http://", "//cdn"] {
            assert!(!text.contains(external), "{file} refers to {external}");
        }
    }
    let r = s
        .http
        .get(format!("{}/console/nope.js", s.control))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Apps cannot take the console's paths.
    let dir = common::app_dir(
        r#"
[app]
name = "squatter"
[functions.hello]
component = "@WASM@/hello.wasm"
[[triggers.http]]
route = "/console/{*rest}"
function = "hello"
"#,
    );
    let err = s.cli_err(&["deploy", dir.path().to_str().unwrap()]);
    assert!(err.contains("reserves"), "{err}");
}
