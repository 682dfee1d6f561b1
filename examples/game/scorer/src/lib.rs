//! Consumes the `game-ended` topic: for each finished game, adds the result
//! to both players' rows of the `leaderboard` collection (public-read:
//! clients read it straight from the data API) and writes each player's
//! entry in `results` (owner rule: a user reads only their own).
//!
//! Delivery is at least once, so counting is idempotent: a player's result
//! document is written last, and a side whose result exists is skipped; a
//! leaderboard row also lists the last games it counted (for a delivery
//! that stopped between the two writes), and is written only through the
//! version it was read at (a concurrent update of the same row is retried).
//! A failure answers 500, so the event is delivered again later.

mod bindings {
    wit_bindgen::generate!({
        inline: "
            package nimbus:scorer;
            world scorer {
                import nimbus:data/documents@0.1.0;
            }
        ",
        path: ["../../../wit/data"],
        generate_all,
    });
}

use bindings::nimbus::data::documents;
use game_shared::{Reply, read_body};
use serde_json::{Value, json};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

/// How many game ids a leaderboard row remembers (for idempotency).
const COUNTED: usize = 50;
/// Attempts at a leaderboard row before giving up (the event is retried).
const ATTEMPTS: usize = 20;

struct Scorer;

fn points(row: &Value) -> i64 {
    3 * row["wins"].as_i64().unwrap_or(0) + row["draws"].as_i64().unwrap_or(0)
}

/// Adds `outcome` of `game` to `player`'s row, once.
fn count(player: &str, name: &str, game: &str, outcome: &str) -> Result<(), String> {
    for _ in 0..ATTEMPTS {
        let current = documents::get("leaderboard", player).map_err(|e| format!("{e:?}"))?;
        let (mut row, version) = match &current {
            Some(d) => (serde_json::from_str(&d.json).map_err(|e| e.to_string())?, d.version),
            None => (json!({ "player": player, "wins": 0, "losses": 0, "draws": 0, "games": 0, "counted": [] }), 0),
        };
        let counted = row["counted"].as_array().cloned().unwrap_or_default();
        if counted.iter().any(|g| g == game) {
            return Ok(()); // a redelivery: already counted
        }
        let field = match outcome {
            "won" => "wins",
            "lost" => "losses",
            _ => "draws",
        };
        row[field] = json!(row[field].as_i64().unwrap_or(0) + 1);
        row["games"] = json!(row["games"].as_i64().unwrap_or(0) + 1);
        row["name"] = json!(name);
        row["points"] = json!(points(&row));
        let mut counted = counted;
        counted.push(json!(game));
        let excess = counted.len().saturating_sub(COUNTED);
        row["counted"] = json!(counted[excess..]);
        match documents::put("leaderboard", player, &row.to_string(), Some(version)) {
            Ok(_) => return Ok(()),
            Err(documents::Error::Conflict(_)) => continue, // another game of theirs ended at once
            Err(e) => return Err(format!("{e:?}")),
        }
    }
    Err(format!("the leaderboard row of {player} kept changing; retry"))
}

fn score(event: &Value) -> Result<(), String> {
    let game = event["game"].as_str().ok_or("the event has no game id")?;
    let winner = event["winner"].as_str();
    for (side, other) in [("red", "yellow"), ("yellow", "red")] {
        let Some(player) = event[side].as_str() else { continue };
        let outcome = match winner {
            Some(w) if w == player => "won",
            Some(_) => "lost",
            None => "draw",
        };
        let name = event[format!("{side}_name")].as_str().unwrap_or("player");
        let result_id = format!("{game}-{side}");
        // Written last, so its presence means this side was fully scored
        // (however long ago: a redriven dead letter, a late republish).
        if documents::get("results", &result_id).map_err(|e| format!("{e:?}"))?.is_some() {
            continue;
        }
        count(player, name, game, outcome)?;
        let result = json!({
            "player": player,
            "game": game,
            "side": side,
            "outcome": outcome,
            "reason": event["result"],
            "opponent": event[other],
            "opponent_name": event[format!("{other}_name")],
            "moves": event["moves"],
            "finished_at": event["finished_at"],
        });
        documents::put("results", &result_id, &result.to_string(), None)
            .map_err(|e| format!("{e:?}"))?;
    }
    println!("scored game {game}: winner {}", winner.unwrap_or("none (draw)"));
    Ok(())
}

fn handle(req: &IncomingRequest) -> Reply {
    let body = match read_body(req, 64 * 1024) {
        Ok(b) => b,
        Err(e) => return Reply::error(400, e),
    };
    let event: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        // A malformed event will never parse: retrying cannot help, so it
        // fails and ends in the dead-letter queue for a human to look at.
        Err(e) => return Reply::error(400, format!("the game-ended event is not JSON: {e}")),
    };
    match score(&event) {
        Ok(()) => Reply::json(200, &json!({ "scored": event["game"] })),
        Err(e) => {
            eprintln!("scoring failed, the event will be retried: {e}");
            Reply::error(500, e)
        }
    }
}

impl wasi::exports::http::incoming_handler::Guest for Scorer {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        handle(&request).send(out);
    }
}

wasi::http::proxy::export!(Scorer);
