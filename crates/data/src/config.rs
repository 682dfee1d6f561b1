//! Configuration and secrets as guests read them: `wasi:config/store` on
//! the function's [`ConfigSnapshot`] (the app's `[variables]`, the
//! function's own, and secrets set over the API, opened). The snapshot is
//! the invocation's, fixed from its start to its end; the runtime redacts
//! its secret values from captured logs. Setting configuration is the
//! platform's (`nimbus_control::Platform::set_config`), which replaces the
//! snapshots of the functions concerned.

use nimbus_runtime::{ConfigSnapshot, GuestCapability, GuestCx, HasCx, Host, InstanceCx};
use std::any::Any;
use std::sync::Arc;
use wasmtime::component::Linker;

wasmtime::component::bindgen!({
    path: "../../wit/data",
    world: "nimbus:data/config-host",
    imports: { default: async | trappable },
});

use wasi::config::store as config_wit;

/// The configuration capability's guest side.
pub struct Config;

/// One instance's configuration.
pub struct ConfigState(Arc<ConfigSnapshot>);

type Cx<'a> = GuestCx<'a, ConfigState>;

impl GuestCapability for Config {
    fn name(&self) -> &'static str {
        "configuration"
    }

    fn link(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()> {
        config_wit::add_to_linker::<Host, HasCx<ConfigState>>(
            linker,
            Host::capability::<ConfigState>,
        )
    }

    fn instance(&self, cx: &InstanceCx<'_>) -> Box<dyn Any + Send> {
        Box::new(ConfigState(cx.config.clone()))
    }
}

impl config_wit::Host for Cx<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config_wit::Error>> {
        Ok(Ok(self.state.0.get(&key).map(str::to_string)))
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, config_wit::Error>> {
        Ok(Ok(self.state.0.vars.clone()))
    }
}
