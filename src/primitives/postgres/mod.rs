//! PostgreSQL primitives. Connections go to each node's published port (see
//! `src/clients/postgres.rs`); identifiers and literals are always passed as parameters or quoted
//! by the host, never pasted into SQL. One file per concept:
//!
//! | file         | what                                                  | primitives                                                        |
//! |--------------|-------------------------------------------------------|-------------------------------------------------------------------|
//! | `sql.rs`     | queries, and the helpers the other files query with   | `sql`, `sql_value`, `setting`                                     |
//! | `server.rs`  | the server's state                                    | `pg_ping`, `server_info`, `is_in_recovery`, `wait_ready`, `promote` |
//! | `slots.rs`   | replication slots                                     | `slots`, `create_slot`, `drop_slot`                               |
//! | `objects.rs` | the role and table pgrunbook creates for itself       | `ensure_replication_role`, `reset_replication_password`, `load_replication_password`, `verify_table` |
//! | `replication.rs` | a standby's replication connection: its login, tested as it makes it, and where it points | `replication_login`, `set_primary_conninfo` |
//! | `control.rs` | how a server ended: its final (shutdown) checkpoint  | `final_checkpoint`                                                |
//! | `waldump.rs` | WAL a crashed primary never shipped (pg_waldump)      | `unshipped_wal`                                                   |
//! | `clone.rs`   | cloning a standby in a one-off container              | `rewind`, `basebackup`                                            |
//! | `settings.rs`| server parameters, checked as PostgreSQL checks them  | `set_setting`, `reset_setting`, `settings_in_force`              |
//! | `readonly.rs`| which statements a dry run may run                    |                                                                   |
//! | `values.rs`  | Rhai values to parameters, typed rows to Rhai values  |                                                                   |
//!
//! Each file registers its primitives, doc comments included, in its `register`; this file
//! gathers them into the backend's module.

mod clone;
mod control;
mod objects;
mod readonly;
mod replication;
mod server;
mod settings;
mod slots;
mod sql;
mod values;
mod waldump;

use crate::runtime::host::Host;
use crate::table::ColumnOrders;
use rhai::{EvalAltResult, Module};
use std::sync::Arc;

type R<T> = Result<T, Box<EvalAltResult>>;

/// The backend's module; `orders` is where the rows' column orders go for `print_table`.
pub fn create_module(host: Arc<Host>, orders: Arc<ColumnOrders>) -> Module {
    let mut m = Module::new();
    sql::register(&mut m, &host, &orders);
    server::register(&mut m, &host);
    slots::register(&mut m, &host, &orders);
    objects::register(&mut m, &host);
    waldump::register(&mut m, &host);
    clone::register(&mut m, &host);
    replication::register(&mut m, &host);
    control::register(&mut m, &host);
    settings::register(&mut m, &host);
    m
}
