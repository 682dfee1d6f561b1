//! `nimbus:realtime/connections@0.2.0` for WASI 0.3 guests: the same
//! operations as `async func`s, bound as concurrent host functions
//! (`&Accessor`), so a guest task waiting for one (a relay to another
//! node) does not hold its instance. What a call needs is cloned out of
//! the store (`Accessor::with`) before it is awaited; the operations are
//! the WASI 0.2 binding's ([`Call`]).

use crate::guest::{Call, Cx, SocketsState, WitError, WitMessage, outgoing};
use nimbus_runtime::{HasCx, Host};
use wasmtime::component::{Accessor, Linker};

wasmtime::component::bindgen!({
    path: "../../wit/realtime3",
    world: "nimbus:realtime/host",
    imports: { default: trappable },
});

use nimbus::realtime::connections as c3;

type D = HasCx<SocketsState>;

/// Adds `nimbus:realtime/connections@0.2.0` to the linker.
pub(crate) fn link(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    c3::add_to_linker::<Host, D>(linker, Host::capability::<SocketsState>)
}

/// The call `op` on `target`, taken out of the store with room among the
/// instance's calls in flight (else the guest's error).
fn start(acc: &Accessor<Host, D>, op: &'static str, target: &str) -> Result<Call, WitError> {
    acc.with(|mut a| {
        let cx = a.get();
        let room = cx
            .host_call()
            .map_err(|e| WitError::Unavailable(e.to_string()))?;
        Ok(SocketsState::call(&cx, op, target).holding(room))
    })
}

fn err(e: WitError) -> c3::Error {
    match e {
        WitError::NotOpen(m) => c3::Error::NotOpen(m),
        WitError::SlowConsumer(m) => c3::Error::SlowConsumer(m),
        WitError::TooLarge(m) => c3::Error::TooLarge(m),
        WitError::Invalid(m) => c3::Error::Invalid(m),
        WitError::Unavailable(m) => c3::Error::Unavailable(m),
    }
}

fn message(m: c3::Message) -> WitMessage {
    match m {
        c3::Message::Text(t) => WitMessage::Text(t),
        c3::Message::Binary(b) => WitMessage::Binary(b),
    }
}

type Answer = wasmtime::Result<Result<(), c3::Error>>;

impl c3::HostWithStore<Host> for D {
    async fn send(acc: &Accessor<Host, Self>, connection: String, m: c3::Message) -> Answer {
        let r = async {
            start(acc, "send", &connection)?
                .send(&connection, outgoing(message(m)))
                .await
        }
        .await;
        Ok(r.map_err(err))
    }

    async fn close(
        acc: &Accessor<Host, Self>,
        connection: String,
        code: u16,
        reason: String,
    ) -> Answer {
        let r = async {
            start(acc, "close", &connection)?
                .close(&connection, code, &reason)
                .await
        }
        .await;
        Ok(r.map_err(err))
    }

    async fn subscribe(acc: &Accessor<Host, Self>, connection: String, channel: String) -> Answer {
        let r = async {
            start(acc, "subscribe", &channel)?
                .subscribe(&connection, &channel)
                .await
        }
        .await;
        Ok(r.map_err(err))
    }

    async fn unsubscribe(
        acc: &Accessor<Host, Self>,
        connection: String,
        channel: String,
    ) -> Answer {
        let r = async {
            start(acc, "unsubscribe", &channel)?
                .unsubscribe(&connection, &channel)
                .await
        }
        .await;
        Ok(r.map_err(err))
    }

    async fn publish(acc: &Accessor<Host, Self>, channel: String, m: c3::Message) -> Answer {
        let r = async {
            start(acc, "publish", &channel)?
                .publish(&channel, outgoing(message(m)))
                .await
        }
        .await;
        Ok(r.map_err(err))
    }
}

// Every function of the interface is an `async func`: its synchronous
// half is empty.
impl c3::Host for Cx<'_> {}
