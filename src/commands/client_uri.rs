//! The connection strings applications use, as `pg_autoctl show uri` prints them: every node's
//! published address in one multi-host URI with `target_session_attrs=read-write` (libpq, JDBC
//! and most drivers try each host and keep the one that accepts writes), the user and no
//! password. With `[clients] network`, also the alias form that containers on that network use
//! (`pg-primary`, which follows the primary; see docs/clients.md).

use crate::config::Config;

/// Percent-encodes what a URI's user or database name cannot carry as it is.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A host as a URI writes it (an IPv6 address in brackets).
fn host(h: &str) -> String {
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

/// The multi-host URI of the nodes' published addresses, in the configuration's order.
pub fn published(config: &Config) -> String {
    let hosts: Vec<String> = config
        .nodes
        .values()
        .map(|n| format!("{}:{}", host(&n.host), n.port))
        .collect();
    format!(
        "postgresql://{}@{}/{}?target_session_attrs=read-write",
        enc(&config.cluster.superuser),
        hosts.join(","),
        enc(&config.cluster.database)
    )
}

/// The URIs for containers on `[clients] network`: writes through the primary's alias, reads
/// through the standbys'. `port`: PostgreSQL's port inside the containers. `None` without
/// `[clients] network`.
pub fn aliases(config: &Config, port: u16) -> Option<(String, String)> {
    let c = &config.clients;
    if c.network.is_empty() {
        return None;
    }
    let uri = |alias: &str, attrs: &str| {
        format!(
            "postgresql://{}@{}:{port}/{}?target_session_attrs={attrs}",
            enc(&config.cluster.superuser),
            alias,
            enc(&config.cluster.database)
        )
    };
    Some((
        uri(&c.primary_alias, "read-write"),
        uri(&c.replica_alias, "any"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_names_every_node_the_user_and_no_password() {
        let mut c = Config::defaults();
        assert_eq!(
            published(&c),
            "postgresql://postgres@127.0.0.1:5432,127.0.0.1:5433/bases2_proyectos?target_session_attrs=read-write"
        );
        assert!(!published(&c).contains(&c.cluster.password));
        assert_eq!(aliases(&c, 5432), None);
        c.cluster.superuser = "app user".into();
        c.nodes.get_mut("pg-bases2").unwrap().host = "::1".into();
        c.clients.network = "app-net".into();
        assert_eq!(
            published(&c),
            "postgresql://app%20user@[::1]:5432,127.0.0.1:5433/bases2_proyectos?target_session_attrs=read-write"
        );
        assert_eq!(
            aliases(&c, 5544).unwrap().0,
            "postgresql://app%20user@pg-primary:5544/bases2_proyectos?target_session_attrs=read-write"
        );
        assert_eq!(
            aliases(&c, 5544).unwrap().1,
            "postgresql://app%20user@pg-replicas:5544/bases2_proyectos?target_session_attrs=any"
        );
    }
}
