//! `nimbus:events/producer@0.2.0` for WASI 0.3 guests: `send` and
//! `publish` as `async func`s, bound as concurrent host functions
//! (`&Accessor`), so a guest task waiting for its message to be stored
//! does not hold its instance. What a call needs is cloned out of the
//! store (`Accessor::with`) before it is awaited; the operations are the
//! WASI 0.2 binding's ([`SendCall`]).

use crate::guest::{Cx, ProducerState, SendCall, WitError, WitMessage};
use nimbus_runtime::{HasCx, Host};
use wasmtime::component::{Accessor, Linker};

wasmtime::component::bindgen!({
    path: "../../wit/events3",
    world: "nimbus:events/host",
    imports: { default: trappable },
});

use nimbus::events::producer as producer3;

type D = HasCx<ProducerState>;

/// Adds `nimbus:events/producer@0.2.0` to the linker.
pub(crate) fn link(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    producer3::add_to_linker::<Host, D>(linker, Host::capability::<ProducerState>)
}

/// The call `op` to `target`, taken out of the store with room among the
/// instance's calls in flight (else the guest's error).
fn start(acc: &Accessor<Host, D>, op: &'static str, target: &str) -> Result<SendCall, WitError> {
    acc.with(|mut a| {
        let cx = a.get();
        let room = cx
            .host_call()
            .map_err(|e| WitError::Unavailable(e.to_string()))?;
        Ok(ProducerState::call(&cx, op, target).holding(room))
    })
}

fn err(e: WitError) -> producer3::Error {
    match e {
        WitError::UnknownTarget(m) => producer3::Error::UnknownTarget(m),
        WitError::TooLarge(m) => producer3::Error::TooLarge(m),
        WitError::Invalid(m) => producer3::Error::Invalid(m),
        WitError::Unavailable(m) => producer3::Error::Unavailable(m),
    }
}

fn message(m: producer3::Message) -> WitMessage {
    WitMessage {
        body: m.body,
        content_type: m.content_type,
        type_: m.type_,
        group: m.group,
        idempotency_key: m.idempotency_key,
    }
}

type Answer<T> = wasmtime::Result<Result<T, producer3::Error>>;

impl producer3::HostWithStore<Host> for D {
    async fn send(
        acc: &Accessor<Host, Self>,
        queue: String,
        m: producer3::Message,
    ) -> Answer<String> {
        let r = async { start(acc, "send", &queue)?.send(&queue, message(m)).await }.await;
        Ok(r.map_err(err))
    }

    async fn publish(
        acc: &Accessor<Host, Self>,
        topic: String,
        m: producer3::Message,
    ) -> Answer<Vec<String>> {
        let r = async {
            start(acc, "publish", &topic)?
                .publish(&topic, message(m))
                .await
        }
        .await;
        Ok(r.map_err(err))
    }
}

// Every function of the interface is an `async func`: its synchronous
// half is empty.
impl producer3::Host for Cx<'_> {}
