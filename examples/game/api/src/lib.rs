//! The game's API: Connect Four games as documents of the `games`
//! collection, behind routes only signed-in users reach (the gateway checks
//! their token and passes the user in `nimbus-auth-*` headers).
//!
//! * `POST /api/games` — a new open game, the caller playing red
//! * `GET /api/games` — open games to join, and the caller's own
//! * `GET /api/games/{id}` — one game
//! * `GET /api/games/{id}/next?after=VERSION` — waits (up to 10 s) until the
//!   game's version differs from VERSION, then answers it: how an opponent's
//!   move reaches a player without reloading (the host's `documents.watch`
//!   wakes it when the game is written)
//! * `GET /api/games/{id}/live` (a WebSocket route) — the connect function
//!   subscribes the connection to the game's channel (`game:ID`) and sends
//!   it the game; every write of the game is published there, so moves
//!   reach both players (and anyone watching) as they are stored. The long
//!   poll above is the fallback for clients without WebSockets.
//! * `POST /api/games/{id}/join` — take the yellow side of an open game
//! * `POST /api/games/{id}/moves` — `{"column": 0-6, "version": V}`
//! * `POST /api/games/{id}/resign` — give up (or cancel an open game)
//!
//! Every write goes through the version the caller's read returned
//! (optimistic concurrency): of two moves at once, one is stored and the
//! other is answered `409` with what to do. A finished game is published to
//! the `game-ended` topic; the `scorer` function updates the leaderboard and
//! both players' results from it.
//!
//! On a schedule (`nimbus-trigger: schedule`) the same component is the
//! janitor: open or playing games idle for longer than the `idle_timeout_secs`
//! variable are abandoned (the player who had to move loses), and finished
//! games whose event was not yet published are published again.

mod rules;

mod bindings {
    wit_bindgen::generate!({
        inline: "
            package nimbus:game;
            world api {
                import nimbus:data/documents@0.1.0;
                import wasi:config/store@0.2.0-rc.1;
                import nimbus:events/producer@0.1.0;
                import nimbus:realtime/connections@0.1.0;
            }
        ",
        path: ["../../../wit/data", "../../../wit/events.wit", "../../../wit/realtime.wit"],
        generate_all,
    });
}

use bindings::nimbus::data::documents;
use bindings::nimbus::events::producer;
use bindings::nimbus::realtime::connections as realtime;
use bindings::wasi::config::store as config;
use game_shared::{Reply, header, now_ms, query_param, read_body};
use rules::{Board, RED, YELLOW};
use serde_json::{Value, json};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

const GAMES: &str = "games";
const ENDED_TOPIC: &str = "game-ended";
/// Default idle time before the janitor abandons a game.
const DEFAULT_IDLE_SECS: i64 = 600;
/// How long `next` waits for a change.
const WAIT_MS: u32 = 10_000;

struct Api;

/// The signed-in caller, from the gateway's verified headers.
struct Caller {
    id: String,
    name: String,
}

fn caller(req: &IncomingRequest) -> Result<Caller, Reply> {
    let id = header(req, "nimbus-auth-subject")
        .ok_or_else(|| Reply::error(401, "sign in first: this route needs a user token"))?;
    let claims: Value = header(req, "nimbus-auth-claims")
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or(Value::Null);
    let email = claims["email"].as_str().unwrap_or("player");
    let name = email.split('@').next().unwrap_or(email).to_string();
    Ok(Caller { id, name })
}

fn doc_error(e: documents::Error) -> Reply {
    match e {
        documents::Error::Conflict(_) => Reply::error(
            409,
            "the game changed while your request ran (another move or join came first): reload the game and try again",
        ),
        documents::Error::NoSuchCollection(m) | documents::Error::Invalid(m) => {
            Reply::error(500, format!("the games collection refused the request: {m}"))
        }
        documents::Error::Other(m) => {
            Reply::error(503, format!("the game store is unavailable, try again: {m}"))
        }
    }
}

/// A stored game: its id, version and body.
struct Game {
    id: String,
    version: u64,
    doc: Value,
}

impl From<documents::Document> for Game {
    fn from(d: documents::Document) -> Game {
        Game {
            id: d.id,
            version: d.version,
            doc: serde_json::from_str(&d.json).unwrap_or(Value::Null),
        }
    }
}

impl Game {
    fn load(id: &str) -> Result<Game, Reply> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Reply::error(404, format!("no game {id:?}")));
        }
        match documents::get(GAMES, id).map_err(doc_error)? {
            Some(d) => Ok(Game::from(d)),
            None => Err(Reply::error(404, format!("no game {id:?}: it may have been deleted"))),
        }
    }

    /// Stores `doc` if the game is still at the version it was read at,
    /// and pushes it to the game's channel.
    fn save(&mut self, doc: Value) -> Result<(), Reply> {
        let stored = documents::put(GAMES, &self.id, &doc.to_string(), Some(self.version))
            .map_err(doc_error)?;
        self.version = stored.version;
        self.doc = doc;
        self.push();
        Ok(())
    }

    /// The game's channel: its players' (and watchers') connections.
    fn channel(id: &str) -> String {
        format!("game:{id}")
    }

    /// Publishes the game as it is now to its channel. A failure only
    /// delays the players, whose clients catch up by polling.
    fn push(&self) {
        let message = realtime::Message::Text(self.view_for_all().to_string());
        if let Err(e) = realtime::publish(&Game::channel(&self.id), &message) {
            eprintln!("game {}: pushing it to its players failed: {e:?}", self.id);
        }
    }

    /// The game as every client sees it (without `you`, which each client
    /// knows of itself).
    fn view_for_all(&self) -> Value {
        let mut v = self.doc.clone();
        v["id"] = json!(self.id);
        v["version"] = json!(self.version);
        v
    }

    fn status(&self) -> &str {
        self.doc["status"].as_str().unwrap_or("")
    }

    /// Which side `user` plays, if any.
    fn side_of(&self, user: &str) -> Option<&'static str> {
        if self.doc["red"].as_str() == Some(user) {
            Some("red")
        } else if self.doc["yellow"].as_str() == Some(user) {
            Some("yellow")
        } else {
            None
        }
    }

    /// The game as a client sees it.
    fn view(&self, user: &str) -> Value {
        let mut v = self.doc.clone();
        v["id"] = json!(self.id);
        v["version"] = json!(self.version);
        v["you"] = json!(self.side_of(user));
        v
    }

    /// The event published when the game ends.
    fn ended_event(&self) -> Value {
        let d = &self.doc;
        json!({
            "game": self.id,
            "red": d["red"], "red_name": d["red_name"],
            "yellow": d["yellow"], "yellow_name": d["yellow_name"],
            "winner": d["winner"], "result": d["result"],
            "moves": d["moves"].as_array().map_or(0, |m| m.len()),
            "finished_at": d["updated_at"],
        })
    }

    /// Finishes the game (`winner`: a side or none), publishes its end, and
    /// marks it reported once the event is stored. A failed publish leaves
    /// `reported: false`, which the janitor retries.
    fn finish(&mut self, mut doc: Value, result: &str, winner: Option<&str>) -> Result<(), Reply> {
        doc["status"] = json!("finished");
        doc["result"] = json!(result);
        doc["winner"] = json!(winner.map(|side| doc[side].clone()));
        doc["winner_side"] = json!(winner);
        doc["reported"] = json!(false);
        doc["updated_at"] = json!(now_ms());
        self.save(doc)?;
        self.report();
        Ok(())
    }

    /// Publishes the game's end (idempotent for the scorer) and records it.
    fn report(&mut self) {
        let body = self.ended_event().to_string().into_bytes();
        let message = producer::Message {
            body,
            content_type: Some("application/json".into()),
            type_: Some("dev.nimbus.game.ended".into()),
            group: None,
            idempotency_key: Some(format!("ended-{}", self.id)),
        };
        match producer::publish(ENDED_TOPIC, &message) {
            Ok(_) => {
                let mut doc = self.doc.clone();
                doc["reported"] = json!(true);
                // A conflict here only means the janitor reports it again;
                // the scorer counts each game once.
                if let Err(e) = documents::put(GAMES, &self.id, &doc.to_string(), Some(self.version))
                {
                    eprintln!("game {}: marking it reported failed: {e:?}", self.id);
                } else {
                    self.version += 1;
                    self.doc = doc;
                }
            }
            Err(e) => eprintln!("game {}: publishing its end failed, the janitor retries: {e:?}", self.id),
        }
    }
}

fn new_id() -> String {
    let n = wasi::random::random::get_random_u64();
    format!("{n:016x}")[..12].to_string()
}

fn create(who: &Caller) -> Result<Reply, Reply> {
    let now = now_ms();
    let doc = json!({
        "status": "open",
        "red": who.id, "red_name": who.name,
        "yellow": null, "yellow_name": null,
        "turn": "red",
        "board": Board::default().rows(),
        "moves": [],
        "last": null, "line": null,
        "winner": null, "winner_side": null, "result": null,
        "created_at": now, "updated_at": now,
    });
    let id = new_id();
    let stored = documents::put(GAMES, &id, &doc.to_string(), Some(0)).map_err(doc_error)?;
    let game = Game { id, version: stored.version, doc };
    Ok(Reply::json(201, &game.view(&who.id)))
}

fn query(q: Value) -> Result<Vec<Game>, Reply> {
    let answer = documents::query(GAMES, &q.to_string()).map_err(doc_error)?;
    let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    Ok(answer["documents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| Game {
            id: d["id"].as_str().unwrap_or_default().to_string(),
            version: d["version"].as_u64().unwrap_or(0),
            doc: d["body"].clone(),
        })
        .collect())
}

fn list(who: &Caller) -> Result<Reply, Reply> {
    let open = query(json!({
        "where": [["status", "==", "open"]],
        "order_by": [["updated_at", "desc"]], "limit": 20,
    }))?;
    let mut mine = query(json!({
        "where": [["red", "==", who.id], ["status", "in", ["open", "playing"]]], "limit": 20,
    }))?;
    mine.extend(query(json!({
        "where": [["yellow", "==", who.id], ["status", "==", "playing"]], "limit": 20,
    }))?);
    let view = |games: Vec<Game>| -> Vec<Value> { games.iter().map(|g| g.view(&who.id)).collect() };
    let open: Vec<Game> = open.into_iter().filter(|g| g.side_of(&who.id).is_none()).collect();
    Ok(Reply::json(200, &json!({ "open": view(open), "mine": view(mine) })))
}

fn join(who: &Caller, mut game: Game) -> Result<Reply, Reply> {
    match game.status() {
        "open" => {}
        "playing" if game.side_of(&who.id).is_some() => return Ok(Reply::json(200, &game.view(&who.id))),
        _ => return Err(Reply::error(409, "this game already has two players: pick another open game or create one")),
    }
    if game.side_of(&who.id).is_some() {
        return Err(Reply::error(409, "you created this game: wait for an opponent to join it"));
    }
    let mut doc = game.doc.clone();
    doc["yellow"] = json!(who.id);
    doc["yellow_name"] = json!(who.name);
    doc["status"] = json!("playing");
    doc["updated_at"] = json!(now_ms());
    game.save(doc).map_err(|e| {
        if e.status == 409 {
            Reply::error(409, "someone else joined this game first: pick another open game")
        } else {
            e
        }
    })?;
    Ok(Reply::json(200, &game.view(&who.id)))
}

fn play(who: &Caller, mut game: Game, body: &[u8]) -> Result<Reply, Reply> {
    let input: Value = serde_json::from_slice(body).map_err(|e| {
        Reply::error(400, format!("send a JSON object like {{\"column\": 3, \"version\": 4}}: {e}"))
    })?;
    let column = input["column"]
        .as_u64()
        .ok_or_else(|| Reply::error(400, "\"column\" must be a number from 0 to 6"))?;
    let side = game
        .side_of(&who.id)
        .ok_or_else(|| Reply::error(403, "you do not play in this game"))?;
    match game.status() {
        "playing" => {}
        "open" => return Err(Reply::error(409, "the game has not started: wait for an opponent to join")),
        _ => return Err(Reply::error(409, "the game is over: start a new one")),
    }
    if let Some(v) = input["version"].as_u64()
        && v != game.version
    {
        return Err(Reply::error(
            409,
            "your board is out of date (the game changed since you loaded it): reload the game",
        ));
    }
    if game.doc["turn"].as_str() != Some(side) {
        return Err(Reply::error(409, "it is not your turn: wait for your opponent's move"));
    }
    let rows: Vec<String> = serde_json::from_value(game.doc["board"].clone()).unwrap_or_default();
    let mut board = Board::from_rows(&rows).map_err(|e| Reply::error(500, e))?;
    let disc = if side == "red" { RED } else { YELLOW };
    let played = board
        .play(column as usize, disc)
        .map_err(|e| Reply::error(422, format!("illegal move: {e}")))?;
    let mut doc = game.doc.clone();
    doc["board"] = json!(board.rows());
    if let Some(moves) = doc["moves"].as_array_mut() {
        moves.push(json!(column));
    }
    doc["last"] = json!({ "row": played.row, "column": column, "side": side });
    doc["turn"] = json!(if side == "red" { "yellow" } else { "red" });
    doc["updated_at"] = json!(now_ms());
    if let Some(line) = &played.line {
        doc["line"] = json!(line);
        game.finish(doc, "connect-four", Some(side))?;
    } else if played.full {
        game.finish(doc, "draw", None)?;
    } else {
        game.save(doc)?;
    }
    Ok(Reply::json(200, &game.view(&who.id)))
}

fn resign(who: &Caller, mut game: Game) -> Result<Reply, Reply> {
    let side = game
        .side_of(&who.id)
        .ok_or_else(|| Reply::error(403, "you do not play in this game"))?;
    match game.status() {
        "open" => {
            let mut doc = game.doc.clone();
            doc["status"] = json!("finished");
            doc["result"] = json!("cancelled");
            doc["updated_at"] = json!(now_ms());
            game.save(doc)?;
        }
        "playing" => {
            let other = if side == "red" { "yellow" } else { "red" };
            let doc = game.doc.clone();
            game.finish(doc, "resigned", Some(other))?;
        }
        _ => return Err(Reply::error(409, "the game is already over")),
    }
    Ok(Reply::json(200, &game.view(&who.id)))
}

/// Answers the game once its version is not `after` (or after `WAIT_MS`):
/// the host wakes the wait when the game is written, with no re-reads.
fn next(who: &Caller, id: &str, after: u64) -> Result<Reply, Reply> {
    let game = Game::load(id)?;
    if game.version != after || game.status() == "finished" {
        return Ok(Reply::json(200, &game.view(&who.id)));
    }
    let game = match documents::watch(GAMES, id, after, WAIT_MS).map_err(doc_error)? {
        Some(d) => Game::from(d),
        None => return Err(Reply::error(404, format!("no game {id:?}: it was deleted"))),
    };
    Ok(Reply::json(200, &game.view(&who.id)))
}

/// The connect function of `/api/games/{id}/live`: subscribes the
/// connection to the game's channel, then sends it the game (queued until
/// the connection opens), so a move stored in between is not missed.
fn live(connection: &str, id: &str) -> Result<Reply, Reply> {
    let game = Game::load(id)?;
    realtime::subscribe(connection, &Game::channel(id))
        .map_err(|e| Reply::error(503, format!("following the game failed: {e:?}; retry")))?;
    let now = realtime::Message::Text(game.view_for_all().to_string());
    realtime::send(connection, &now)
        .map_err(|e| Reply::error(503, format!("sending the game failed: {e:?}; retry")))?;
    Ok(Reply::json(200, &json!({ "following": id })))
}

/// The scheduled sweep: abandons idle games, re-publishes unreported ends.
fn janitor() -> Result<Reply, Reply> {
    let idle_secs = config::get("idle_timeout_secs")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(DEFAULT_IDLE_SECS);
    let now = now_ms();
    let idle = query(json!({
        "where": [["status", "in", ["open", "playing"]], ["updated_at", "<", now - idle_secs * 1000]],
        "limit": 200,
    }))?;
    let (mut abandoned, mut reported) = (0, 0);
    for mut game in idle {
        let doc = game.doc.clone();
        let outcome = if game.status() == "open" {
            let mut doc = doc;
            doc["status"] = json!("finished");
            doc["result"] = json!("abandoned");
            doc["updated_at"] = json!(now_ms());
            game.save(doc)
        } else {
            // The player who had to move walked away: the other one wins.
            let winner = if doc["turn"] == "red" { "yellow" } else { "red" };
            game.finish(doc, "abandoned", Some(winner))
        };
        match outcome {
            Ok(()) => abandoned += 1,
            Err(e) if e.status == 409 => {} // a move arrived meanwhile: not idle after all
            Err(e) => return Err(e),
        }
    }
    let unreported = query(json!({
        "where": [["status", "==", "finished"], ["reported", "==", false], ["updated_at", "<", now - 5_000]],
        "limit": 200,
    }))?;
    for mut game in unreported {
        game.report();
        reported += 1;
    }
    println!("janitor: {abandoned} idle games abandoned, {reported} game ends published again");
    Ok(Reply::json(200, &json!({ "abandoned": abandoned, "republished": reported })))
}

fn route(req: &IncomingRequest) -> Result<Reply, Reply> {
    if header(req, "nimbus-trigger").as_deref() == Some("schedule") {
        return janitor();
    }
    let who = caller(req)?;
    let pq = req.path_with_query().unwrap_or_default();
    let (path, query) = pq.split_once('?').unwrap_or((&pq, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method();
    // Set by Nimbus only on a WebSocket route's invocations.
    if let Some(connection) = header(req, "nimbus-connection-id") {
        return match (&method, parts.as_slice()) {
            (Method::Get, ["api", "games", id, "live"]) => live(&connection, id),
            // Clients send nothing the game needs (moves are POSTs, whose
            // answers say what went wrong); a message is answered with none.
            (Method::Post, ["api", "games", _, "live"]) => Ok(Reply::empty(204)),
            _ => Err(Reply::error(404, format!("no game WebSocket at {path}"))),
        };
    }
    match (&method, parts.as_slice()) {
        (Method::Post, ["api", "games"]) => create(&who),
        (Method::Get, ["api", "games"]) => list(&who),
        (Method::Get, ["api", "games", id]) => Ok(Reply::json(200, &Game::load(id)?.view(&who.id))),
        (Method::Get, ["api", "games", id, "next"]) => {
            let after = query_param(query, "after").and_then(|v| v.parse().ok()).unwrap_or(0);
            next(&who, id, after)
        }
        (Method::Post, ["api", "games", id, "join"]) => join(&who, Game::load(id)?),
        (Method::Post, ["api", "games", id, "moves"]) => {
            let body = read_body(req, 4096).map_err(|e| Reply::error(413, e))?;
            play(&who, Game::load(id)?, &body)
        }
        (Method::Post, ["api", "games", id, "resign"]) => resign(&who, Game::load(id)?),
        _ => Err(Reply::error(404, format!("no game API at {path}: see examples/game/README.md"))),
    }
}

impl wasi::exports::http::incoming_handler::Guest for Api {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match route(&request) {
            Ok(reply) | Err(reply) => reply.send(out),
        }
    }
}

wasi::http::proxy::export!(Api);
