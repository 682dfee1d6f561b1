//! The realtime capability's guest side: `nimbus:realtime/connections`
//! (see `wit/realtime.wit`), through which functions send to their app's
//! WebSocket connections, close them, subscribe them to channels and
//! publish to channels, with no network hop. A guest reaches only its own
//! app's connections: its instance state names the app, not the guest.
//!
//! The runtime is built before the registry (whose connections invoke
//! functions through it), so the [`Sockets`] handed to `Runtime::new` is
//! connected by [`Sockets::connect`]; until then, and once the registry is
//! gone, a call fails with `unavailable`.

use crate::{Outgoing, Realtime, SendError, short};
use bytes::Bytes;
use nimbus_core::Service;
use nimbus_runtime::{GuestCapability, GuestCx, HasCx, Host, InstanceCx};
use std::any::Any;
use std::sync::{Arc, OnceLock, Weak};
use wasmtime::component::Linker;

wasmtime::component::bindgen!({
    path: "../../wit/realtime.wit",
    world: "host",
    imports: { default: async },
});

use nimbus::realtime::connections::{self as wit, Error as WitError, Message as WitMessage};

/// The realtime capability's guest side, connected to the node's registry
/// once it exists.
#[derive(Clone, Default)]
pub struct Sockets(Arc<OnceLock<Weak<Realtime>>>);

impl Sockets {
    /// Not connected yet.
    pub fn new() -> Sockets {
        Sockets::default()
    }

    /// Calls reach `realtime` from now on.
    pub fn connect(&self, realtime: &Arc<Realtime>) {
        let _ = self.0.set(Arc::downgrade(realtime));
    }
}

/// One instance's state: the registry and its app.
pub struct SocketsState {
    realtime: Arc<OnceLock<Weak<Realtime>>>,
    app: Arc<str>,
}

type Cx<'a> = GuestCx<'a, SocketsState>;

impl GuestCapability for Sockets {
    fn name(&self) -> &'static str {
        "realtime"
    }

    fn link(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()> {
        wit::add_to_linker::<Host, HasCx<SocketsState>>(linker, Host::capability::<SocketsState>)
    }

    fn instance(&self, cx: &InstanceCx<'_>) -> Box<dyn Any + Send> {
        Box::new(SocketsState {
            realtime: self.0.clone(),
            app: cx.function.app_name().clone(),
        })
    }
}

impl SocketsState {
    fn realtime(&self) -> Result<Arc<Realtime>, WitError> {
        self.realtime.get().and_then(Weak::upgrade).ok_or_else(|| {
            WitError::Unavailable("this node serves no WebSocket connections now".into())
        })
    }
}

fn wit_error(e: SendError) -> WitError {
    let text = e.to_string();
    match e {
        SendError::NotOpen { .. } => WitError::NotOpen(text),
        SendError::SlowConsumer { .. } => WitError::SlowConsumer(text),
        SendError::TooLarge { .. } => WitError::TooLarge(text),
        SendError::Invalid(_) => WitError::Invalid(text),
        SendError::Unavailable(_) => WitError::Unavailable(text),
    }
}

fn outgoing(m: WitMessage) -> Outgoing {
    match m {
        WitMessage::Text(t) => Outgoing::text(t),
        WitMessage::Binary(b) => Outgoing::Binary(Bytes::from(b)),
    }
}

impl wit::Host for Cx<'_> {
    async fn send(&mut self, connection: String, message: WitMessage) -> Result<(), WitError> {
        let op = self.op(Service::Realtime, "send", short(&connection));
        let (rt, app) = (self.state.realtime()?, self.state.app.clone());
        let r = rt.send(&app, &connection, outgoing(message)).await;
        op.result(r.map_err(wit_error))
    }

    async fn close(
        &mut self,
        connection: String,
        code: u16,
        reason: String,
    ) -> Result<(), WitError> {
        let op = self.op(Service::Realtime, "close", short(&connection));
        let (rt, app) = (self.state.realtime()?, self.state.app.clone());
        let r = rt.close(&app, &connection, code, &reason).await;
        op.result(r.map_err(wit_error))
    }

    async fn subscribe(&mut self, connection: String, channel: String) -> Result<(), WitError> {
        let op = self.op(Service::Realtime, "subscribe", short(&channel));
        let (rt, app) = (self.state.realtime()?, self.state.app.clone());
        let r = rt.subscribe(&app, &connection, &channel).await;
        op.result(r.map_err(wit_error))
    }

    async fn unsubscribe(&mut self, connection: String, channel: String) -> Result<(), WitError> {
        let op = self.op(Service::Realtime, "unsubscribe", short(&channel));
        let (rt, app) = (self.state.realtime()?, self.state.app.clone());
        let r = rt.unsubscribe(&app, &connection, &channel).await;
        op.result(r.map_err(wit_error))
    }

    async fn publish(&mut self, channel: String, message: WitMessage) -> Result<(), WitError> {
        let op = self.op(Service::Realtime, "publish", short(&channel));
        let (rt, app) = (self.state.realtime()?, self.state.app.clone());
        let r = rt.publish(&app, &channel, outgoing(message)).await;
        op.result(r.map_err(wit_error))
    }
}
