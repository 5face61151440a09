//! Testing a replication login the way a standby makes it: from the standby's container, to the
//! primary's container name and port, as the configured replication role with the configured
//! password, over a replication connection. What `diagnose` and `repair-replication-login` use to
//! tell a wrong password from a missing pg_hba.conf rule from a host that does not resolve.

use super::R;
use crate::error::Class;
use crate::primitives::{def, node};
use crate::runtime::host::Host;
use rhai::{Dynamic, Map, Module};
use std::sync::Arc;

/// The result of a replication login test, as the Rhai map the primitive returns.
fn login_map(ok: bool, error: &str, from: &str, system: &str) -> Map {
    let mut m = Map::new();
    m.insert("ok".into(), Dynamic::from_bool(ok));
    m.insert("error".into(), error.to_string().into());
    m.insert("from".into(), from.to_string().into());
    m.insert("system_identifier".into(), system.to_string().into());
    m
}

/// The text of psql's error without its "psql: error: " prefix, on one line.
fn psql_error(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("psql: error: ")
        .to_string()
}

pub fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    def!(
        m,
        "replication_login",
        ["standby: &str", "primary: &str", "Map"],
        "Tests the replication login `standby` makes to `primary`: from the standby's container
        (a one-off container of its image and network when it is stopped), to the primary's
        container name and port, as the configured replication role with the configured password
        (passed in the environment, never on a command line), over a replication connection
        (IDENTIFY_SYSTEM). Returns #{ok, error, from, system_identifier}: `error` is the server's
        answer (\"password authentication failed for user ...\", \"no pg_hba.conf entry for
        replication connection ...\", \"could not translate host name ...\"). A read: it runs in a
        dry run too. Fails (exit code 5) only when the standby's container does not exist.",
        move |standby: &str, primary: &str| -> R<Map> {
            let c = &h.config.cluster;
            let from = h.container("replication_login", standby)?;
            let to = h.container("replication_login", primary)?;
            // The port inside the primary's container, as its server says; the configured one
            // when it does not answer (then the login fails anyway, and says why).
            let port = node::server_facts(&h, "replication_login", primary)
                .map(|f| f.port)
                .unwrap_or(5432);
            let conninfo = format!(
                "host={} port={port} user={} dbname=replication replication=true \
                 application_name=pgrunbook-login-test connect_timeout=5",
                super::clone::conninfo_quote(&to),
                super::clone::conninfo_quote(&c.replication_user),
            );
            let script = format!("psql {} -Atc IDENTIFY_SYSTEM", node::sh_quote(&conninfo));
            let out = node::run_script(
                &h,
                "replication_login",
                standby,
                &script,
                vec![format!("PGPASSWORD={}", c.replication_password)],
            )?;
            if out.exit_code == 0 {
                let system = out
                    .stdout
                    .split('|')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                return Ok(login_map(true, "", &from, &system));
            }
            let error = psql_error(&out.stderr);
            if error.contains("psql: not found") || error.contains("executable file not found") {
                return Err(h.error(
                    Class::Refused,
                    format!(
                        "replication_login from {standby}: psql is not installed in {from}'s image"
                    ),
                ));
            }
            Ok(login_map(false, &error, &from, ""))
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_errors_read_as_the_servers_answer() {
        let e = psql_error(
            "psql: error: connection to server at \"pg-bases2\" (172.18.0.2), port 5432 failed: FATAL:  password authentication failed for user \"replicator\"\n",
        );
        assert!(e.starts_with("connection to server at"));
        assert!(e.ends_with("password authentication failed for user \"replicator\""));
    }
}
