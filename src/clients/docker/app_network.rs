//! The applications' network (`[clients] network`): who is on it under which alias, and moving
//! a node's alias. Docker cannot change a connected container's aliases: a move is a disconnect,
//! then a connect with the new alias, on this network only (replication's network is untouched).

use super::{Docker, Expected};
use anyhow::{Context, Result};
use bollard::models::{EndpointSettings, NetworkConnectRequest, NetworkDisconnectRequest};
use bollard::query_parameters as qp;

impl Docker {
    /// The network's driver (`bridge`, `overlay`...), `None` when it does not exist.
    pub fn network_driver(&self, name: &str) -> Result<Option<String>> {
        let c = self.client()?;
        let found = self
            .block_on(c.inspect_network(name, None::<qp::InspectNetworkOptions>))
            .ok_if_not_found()
            .with_context(|| format!("cannot inspect network '{name}'"))?;
        Ok(found.map(|n| n.driver.unwrap_or_default()))
    }

    /// Every container on `network`, by name, with the aliases it was connected with.
    pub fn network_members(&self, network: &str) -> Result<Vec<(String, Vec<String>)>> {
        let c = self.client()?;
        let Some(net) = self
            .block_on(c.inspect_network(network, None::<qp::InspectNetworkOptions>))
            .ok_if_not_found()
            .with_context(|| format!("cannot inspect network '{network}'"))?
        else {
            return Ok(vec![]);
        };
        let mut out = vec![];
        for (id, _) in net.containers.unwrap_or_default() {
            let Some(info) = self.inspect(&id)? else {
                continue;
            };
            let name = info
                .name
                .clone()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string();
            out.push((name, self.aliases_on(&info, network)));
        }
        Ok(out)
    }

    fn aliases_on(
        &self,
        info: &bollard::models::ContainerInspectResponse,
        network: &str,
    ) -> Vec<String> {
        info.network_settings
            .as_ref()
            .and_then(|s| s.networks.as_ref())
            .and_then(|n| n.get(network))
            .and_then(|e| e.aliases.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|a| !automatic_alias(a, info))
            .collect()
    }

    /// The aliases `container` has on `network`; `None` when it is not connected to it.
    pub fn aliases_of(&self, container: &str, network: &str) -> Result<Option<Vec<String>>> {
        let Some(info) = self.inspect(container)? else {
            return Ok(None);
        };
        let on = info
            .network_settings
            .as_ref()
            .and_then(|s| s.networks.as_ref())
            .is_some_and(|n| n.contains_key(network));
        Ok(on.then(|| self.aliases_on(&info, network)))
    }

    /// Connects `container` to `network` under `alias`.
    pub fn connect_alias(&self, network: &str, container: &str, alias: &str) -> Result<()> {
        let c = self.client()?;
        let req = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(vec![alias.to_string()]),
                ..Default::default()
            }),
        };
        self.block_on(c.connect_network(network, req))
            .with_context(|| {
                format!("cannot connect container '{container}' to network '{network}' as {alias}")
            })
    }

    /// Disconnects `container` from `network` (forced: a stopped container too).
    pub fn disconnect(&self, network: &str, container: &str) -> Result<()> {
        let c = self.client()?;
        let req = NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(true),
        };
        self.block_on(c.disconnect_network(network, req))
            .with_context(|| {
                format!("cannot disconnect container '{container}' from network '{network}'")
            })
    }
}

/// Docker (before API 1.45) lists among a container's aliases its own name and short id, which
/// it adds by itself: they are not aliases anyone gave.
fn automatic_alias(alias: &str, info: &bollard::models::ContainerInspectResponse) -> bool {
    let name = info
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/');
    let id = info.id.as_deref().unwrap_or_default();
    alias == name || (alias.len() >= 12 && id.starts_with(alias))
}
