//! The realtime capability's guest side: `nimbus:realtime/connections`
//! (see `wit/realtime.wit`), through which functions send to their app's
//! WebSocket connections, close them, subscribe them to channels and
//! publish to channels, with no network hop. A guest reaches only its own
//! app's connections: its instance state names the app, not the guest.
//!
//! The runtime is built before the registry (whose connections invoke
//! functions through it), so the [`Sockets`] handed to `Runtime::new` is
//! connected by [`Sockets::connect`]; until then, and once the registry is
//! gone, a call fails with `unavailable`. WASI 0.3 guests get the same
//! operations as `async func`s (`nimbus:realtime@0.2.0`, `guest3.rs`),
//! both bindings running a [`Call`].

use crate::{Outgoing, Realtime, SendError, short};
use bytes::Bytes;
use nimbus_core::Service;
use nimbus_runtime::{GuestCapability, GuestCx, HasCx, Host, HostCall, InstanceCx, Op};
use std::any::Any;
use std::sync::{Arc, OnceLock, Weak};
use wasmtime::component::Linker;

wasmtime::component::bindgen!({
    path: "../../wit/realtime.wit",
    world: "host",
    imports: { default: async },
});

use nimbus::realtime::connections as wit;
pub(crate) use wit::{Error as WitError, Message as WitMessage};

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

pub(crate) type Cx<'a> = GuestCx<'a, SocketsState>;

impl GuestCapability for Sockets {
    fn name(&self) -> &'static str {
        "realtime"
    }

    fn link(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()> {
        wit::add_to_linker::<Host, HasCx<SocketsState>>(linker, Host::capability::<SocketsState>)?;
        crate::guest3::link(linker)
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

    /// The call `op` on `target` (a connection or a channel), with what
    /// it needs cloned out of the instance: the WASI 0.2 binding awaits it
    /// in place, the WASI 0.3 one after leaving the store.
    pub(crate) fn call(cx: &Cx<'_>, op: &'static str, target: &str) -> Call {
        Call {
            op: cx.op(Service::Realtime, op, short(target)),
            realtime: cx.state.realtime(),
            app: cx.state.app.clone(),
        }
    }
}

/// One operation of a guest (see [`SocketsState::call`]), metered as its
/// `op` when it ends.
pub(crate) struct Call {
    op: Op,
    realtime: Result<Arc<Realtime>, WitError>,
    app: Arc<str>,
}

impl Call {
    /// Holds `room` (an async call's place among its instance's) until
    /// the call ends.
    pub(crate) fn holding(mut self, room: HostCall) -> Self {
        self.op.hold(room);
        self
    }

    pub(crate) async fn send(self, connection: &str, m: Outgoing) -> Result<(), WitError> {
        let rt = self.realtime?;
        let r = rt.send(&self.app, connection, m).await;
        self.op.result(r.map_err(wit_error))
    }

    pub(crate) async fn close(
        self,
        connection: &str,
        code: u16,
        reason: &str,
    ) -> Result<(), WitError> {
        let rt = self.realtime?;
        let r = rt.close(&self.app, connection, code, reason).await;
        self.op.result(r.map_err(wit_error))
    }

    pub(crate) async fn subscribe(self, connection: &str, channel: &str) -> Result<(), WitError> {
        let rt = self.realtime?;
        let r = rt.subscribe(&self.app, connection, channel).await;
        self.op.result(r.map_err(wit_error))
    }

    pub(crate) async fn unsubscribe(self, connection: &str, channel: &str) -> Result<(), WitError> {
        let rt = self.realtime?;
        let r = rt.unsubscribe(&self.app, connection, channel).await;
        self.op.result(r.map_err(wit_error))
    }

    pub(crate) async fn publish(self, channel: &str, m: Outgoing) -> Result<(), WitError> {
        let rt = self.realtime?;
        let r = rt.publish(&self.app, channel, m).await;
        self.op.result(r.map_err(wit_error))
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

pub(crate) fn outgoing(m: WitMessage) -> Outgoing {
    match m {
        WitMessage::Text(t) => Outgoing::text(t),
        WitMessage::Binary(b) => Outgoing::Binary(Bytes::from(b)),
    }
}

impl wit::Host for Cx<'_> {
    async fn send(&mut self, connection: String, message: WitMessage) -> Result<(), WitError> {
        let c = SocketsState::call(self, "send", &connection);
        c.send(&connection, outgoing(message)).await
    }

    async fn close(
        &mut self,
        connection: String,
        code: u16,
        reason: String,
    ) -> Result<(), WitError> {
        let c = SocketsState::call(self, "close", &connection);
        c.close(&connection, code, &reason).await
    }

    async fn subscribe(&mut self, connection: String, channel: String) -> Result<(), WitError> {
        let c = SocketsState::call(self, "subscribe", &channel);
        c.subscribe(&connection, &channel).await
    }

    async fn unsubscribe(&mut self, connection: String, channel: String) -> Result<(), WitError> {
        let c = SocketsState::call(self, "unsubscribe", &channel);
        c.unsubscribe(&connection, &channel).await
    }

    async fn publish(&mut self, channel: String, message: WitMessage) -> Result<(), WitError> {
        let c = SocketsState::call(self, "publish", &channel);
        c.publish(&channel, outgoing(message)).await
    }
}
