//! The applications' network (`[clients]`): aliases that follow the primary. Runbooks use them
//! through `stdlib/clients.rhai` (`clients::follow(primary)`, `clients::leave(node)`).

use super::def;
use crate::error::Class;
use crate::runtime::host::Host;
use rhai::{Array, Dynamic, Map, Module};
use std::collections::HashMap;
use std::sync::Arc;

pub fn create_module(host: Arc<Host>) -> Module {
    let mut m = Module::new();

    let h = host.clone();
    def!(
        &mut m,
        "clients_settings",
        ["Map"],
        "`[clients]`: #{network (\"\" when none), primary_alias, replica_alias}.",
        move || -> Map {
            let c = &h.config.clients;
            let mut m = Map::new();
            m.insert("network".into(), c.network.clone().into());
            m.insert("primary_alias".into(), c.primary_alias.clone().into());
            m.insert("replica_alias".into(), c.replica_alias.clone().into());
            m
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "clients_check",
        ["()"],
        "Checks `[clients]` before anything moves: the network, when it exists, is a bridge
        network, and neither alias is held by a container that is not one of the nodes. Fails
        (refused, exit 4) naming the network and its driver, or the alias and the container.",
        move || -> Result<(), Box<rhai::EvalAltResult>> {
            let c = &h.config.clients;
            if c.network.is_empty() {
                return Ok(());
            }
            let driver = h
                .docker
                .network_driver(&c.network)
                .map_err(|e| h.fail("clients_check", "", e))?;
            if let Some(d) = driver.filter(|d| d != "bridge") {
                return Err(h.error(
                    Class::Refused,
                    format!(
                        "clients_check: network {} ([clients] network) exists with driver {d}, not bridge: its aliases would not follow the primary; choose another name or remove it",
                        c.network
                    ),
                ));
            }
            let ours: Vec<&String> = h.config.nodes.values().map(|n| &n.container).collect();
            for (container, aliases) in h
                .docker
                .network_members(&c.network)
                .map_err(|e| h.fail("clients_check", "", e))?
            {
                if ours.contains(&&container) {
                    continue;
                }
                for a in [&c.primary_alias, &c.replica_alias] {
                    if aliases.contains(a) {
                        return Err(h.error(
                            Class::Refused,
                            format!(
                                "clients_check: alias {a} on network {} is held by container {container}, which pgrunbook does not manage (not a node); disconnect it or choose another alias",
                                c.network
                            ),
                        ));
                    }
                }
            }
            Ok(())
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "clients_alias",
        ["node: &str", "alias: &str", "bool"],
        "Gives `node` the alias `alias` on the `[clients]` network, alone (\"\": takes it off the
        network). Docker cannot change a connected container's aliases: a disconnect, then a
        connect. The network is created (bridge) when missing. True when it changed something;
        false when it was already so, the node's container is missing, or there is no [clients]
        network.",
        move |node: &str, alias: &str| -> Result<bool, Box<rhai::EvalAltResult>> {
            let net = h.config.clients.network.clone();
            let container = h.container("clients_alias", node)?;
            if net.is_empty() {
                return Ok(false);
            }
            let fail = |e| h.fail("clients_alias", node, e);
            if h.docker.inspect(&container).map_err(fail)?.is_none() {
                return Ok(false);
            }
            let now = h.docker.aliases_of(&container, &net).map_err(fail)?;
            let want: Option<Vec<String>> = (!alias.is_empty()).then(|| vec![alias.to_string()]);
            if now
                .as_ref()
                .map(|a| a.iter().any(|x| x == alias) && a.len() == 1)
                .unwrap_or(false)
                && want.is_some()
                || now.is_none() && want.is_none()
            {
                return Ok(false);
            }
            let action = if alias.is_empty() {
                format!("disconnect from network {net}")
            } else {
                format!("connect to network {net} as {alias}")
            };
            if !h.change(node, &action) {
                return Ok(true);
            }
            if now.is_some() {
                h.docker.disconnect(&net, &container).map_err(fail)?;
            }
            if !alias.is_empty() {
                let labels = HashMap::from([(h.config.lab.label.clone(), "clients".to_string())]);
                h.docker.ensure_network(&net, &labels).map_err(fail)?;
                h.docker
                    .connect_alias(&net, &container, alias)
                    .map_err(fail)?;
            }
            // A container's networks changing can move its published port to another network
            // (Docker routes it through the network that provides the default gateway), which
            // ends the connections through it: pgrunbook's own opens again, once it answers.
            h.pg.forget(node);
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while h
                .docker
                .state(&container)
                .map(|s| s.is_running())
                .unwrap_or(false)
                && h.pg.query(node, "SELECT 1", &[], false, &h.cancel).is_err()
                && std::time::Instant::now() < until
            {
                h.pg.forget(node);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Ok(true)
        }
    );

    let h = host;
    def!(
        &mut m,
        "clients_holders",
        ["alias: &str", "Array"],
        "The containers that carry `alias` on the `[clients]` network (node names for the nodes,
        container names for others); empty without a [clients] network.",
        move |alias: &str| -> Result<Array, Box<rhai::EvalAltResult>> {
            let net = &h.config.clients.network;
            if net.is_empty() {
                return Ok(vec![]);
            }
            let members = h
                .docker
                .network_members(net)
                .map_err(|e| h.fail("clients_holders", "", e))?;
            Ok(members
                .into_iter()
                .filter(|(_, a)| a.iter().any(|x| x == alias))
                .map(|(c, _)| {
                    Dynamic::from(
                        h.config
                            .node_by_container(&c)
                            .map(|(n, _)| n.clone())
                            .unwrap_or(c),
                    )
                })
                .collect())
        }
    );

    m
}
