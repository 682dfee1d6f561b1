//! The guest side of a capability: the host interfaces it adds to the
//! linker, and the state each instance of a function holds for them.
//!
//! The runtime knows no capability by name. A node hands
//! [`crate::Runtime::new`] its list of [`GuestCapability`]s (KV,
//! documents and configuration from `nimbus-data`, blobs from
//! `nimbus-objects`); at every invocation each one builds its state
//! ([`GuestCapability::instance`]) from the function and its app's spec,
//! and the instance's host calls reach it through
//! [`Host::capability`](crate::Host::capability), beside the resource table
//! and the metering of calls ([`GuestCx::op`]).
//!
//! A capability's host functions get a [`GuestCx`] of its own state type,
//! found by type among the instance's states: no capability can reach
//! another's state.

use crate::ConfigSnapshot;
use crate::invoke::Function;
use crate::ops::{HostCall, HostCalls, Op, OpSink, TooManyCalls};
use nimbus_core::Service;
use std::any::Any;
use std::sync::Arc;
use wasmtime::component::{Linker, ResourceTable};

/// A capability's guest side.
pub trait GuestCapability: Send + Sync + 'static {
    /// Its name, in errors.
    fn name(&self) -> &'static str;

    /// Adds its interfaces to the linker, reaching its state with
    /// `Host::capability::<State>()`.
    fn link(&self, linker: &mut Linker<crate::Host>) -> wasmtime::Result<()>;

    /// The state of one instance of `cx.function`, dropped with it. It must
    /// be of the type `link` asks `Host::capability` for.
    fn instance(&self, cx: &InstanceCx<'_>) -> Box<dyn Any + Send>;
}

/// What a capability may build an instance's state from.
pub struct InstanceCx<'a> {
    /// The function invoked (its app's spec: [`Function::app_spec`]).
    pub function: &'a Function,
    /// The configuration this invocation sees from start to end.
    pub config: &'a Arc<ConfigSnapshot>,
    /// The invocation's own `traceparent` (`None` when tracing is off):
    /// what a capability that starts work elsewhere (a send) continues.
    pub traceparent: Option<&'a http::HeaderValue>,
}

/// What one host call of a capability reaches: its own state in this
/// instance, the instance's resource table, and the metering of calls.
pub struct GuestCx<'a, T> {
    /// The capability's state in this instance.
    pub state: &'a mut T,
    /// The instance's resources.
    pub table: &'a mut ResourceTable,
    /// The invocation the call counts for.
    pub(crate) ops: OpSink,
    /// The instance's room for async host calls.
    pub(crate) calls: &'a HostCalls,
}

/// The `HasData` of a capability whose instance state is a `T`: its
/// bindings' `add_to_linker::<Host, HasCx<T>>(linker, Host::capability::<T>)`
/// hand each host call a [`GuestCx`] of that state.
pub struct HasCx<T>(std::marker::PhantomData<fn() -> T>);

impl<T: Send + 'static> wasmtime::component::HasData for HasCx<T> {
    type Data<'a> = GuestCx<'a, T>;
}

impl<T> GuestCx<'_, T> {
    /// Starts timing one call to `service` on `target`: counted for
    /// metering and traced when the returned guard drops.
    pub fn op(&self, service: Service, op: &'static str, target: &str) -> Op {
        Op::start(&self.ops, service, op, target)
    }

    /// Room for one more async host call (a WASI 0.3 guest's `async
    /// func`), which its [`Op`] holds ([`Op::hold`]) until the call ends:
    /// an instance may have only so many in flight, as each holds host
    /// memory and perhaps a database connection. Refused, the call should
    /// answer the guest an error carrying this one's message.
    pub fn host_call(&self) -> Result<HostCall, TooManyCalls> {
        self.calls.take()
    }
}
