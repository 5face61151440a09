//! The PostgreSQL backend: connections to each node over its published port, queries, and the
//! conversion of rows into Rhai values.
//!
//! One connection per node is kept open for the whole run (a failover's checks then cost a round
//! trip, not a SCRAM handshake). A connection found closed is opened again before the next query;
//! a query that fails half way is never retried, because it may have written.
//!
//! The sync `postgres` client runs its own Tokio runtime: never call into this file from inside
//! the Docker backend's `block_on`.

use crate::cancel::Cancel;
use crate::config::Config;
use crate::error::{Class, Failure};
use anyhow::{anyhow, Result};
use postgres::types::{FromSql, Kind, ToSql, Type};
use postgres::{CancelToken, Client, NoTls, Row};
use rhai::{Array, Dynamic, Map};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Mutex;
use std::time::Duration;

/// What a call on a connection fails with: the server or the connection, or a parameter that
/// pgrunbook refused to send (see `bind`), kept apart so that each gets its own class.
enum CallError {
    Pg(postgres::Error),
    Param(ParamError),
}

impl From<postgres::Error> for CallError {
    fn from(e: postgres::Error) -> Self {
        CallError::Pg(e)
    }
}

impl From<ParamError> for CallError {
    fn from(e: ParamError) -> Self {
        CallError::Param(e)
    }
}

pub struct Postgres {
    config: Config,
    conns: Mutex<HashMap<String, Client>>,
    /// The cancel token of the query running now, for Ctrl-C.
    inflight: Mutex<Option<CancelToken>>,
}

/// Turns a postgres error into a message with SQLSTATE and detail.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(&format!("; detail: {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(&format!(": {t}"));
        }
        src = inner.source();
    }
    s
}

impl Postgres {
    pub fn new(config: Config) -> Postgres {
        Postgres {
            config,
            conns: Mutex::new(HashMap::new()),
            inflight: Mutex::new(None),
        }
    }

    fn connect(&self, node: &str, database: &str) -> Result<Client> {
        let n = self
            .config
            .node(node)
            .map_err(|e| anyhow!(Failure::new(Class::Runbook, e.to_string())))?;
        let mut cfg = postgres::Config::new();
        cfg.host(&n.host)
            .port(n.port)
            .user(&self.config.cluster.superuser)
            .password(&self.config.cluster.password)
            .dbname(database)
            .application_name("pgrunbook")
            .connect_timeout(Duration::from_millis(
                self.config.cluster.connect_timeout_ms,
            ));
        cfg.connect(NoTls).map_err(|e| {
            let why = describe(&e);
            let class = Class::Infrastructure;
            anyhow!(Failure::new(
                class,
                format!(
                    "PostgreSQL on node {node} ({}:{}) is unreachable: {why}",
                    n.host, n.port
                )
            ))
        })
    }

    /// Runs `f` with the node's connection, opening it when needed.
    fn with_client<T, E: Into<CallError>>(
        &self,
        node: &str,
        database: Option<&str>,
        f: impl FnOnce(&mut Client) -> std::result::Result<T, E>,
    ) -> Result<T> {
        let db = database
            .unwrap_or(&self.config.cluster.database)
            .to_string();
        let key = format!("{node}/{db}");
        let mut client = {
            let mut conns = self.conns.lock().unwrap();
            match conns.remove(&key) {
                Some(c) if !c.is_closed() => c,
                _ => {
                    drop(conns);
                    self.connect(node, &db)?
                }
            }
        };
        *self.inflight.lock().unwrap() = Some(client.cancel_token());
        let r = f(&mut client).map_err(Into::into);
        *self.inflight.lock().unwrap() = None;
        if !client.is_closed() {
            self.conns.lock().unwrap().insert(key, client);
        }
        r.map_err(|e| {
            let e = match e {
                // Refused before anything was sent: the runbook's mistake, whatever the server.
                CallError::Param(p) => return anyhow!(Failure::new(Class::Runbook, p.to_string())),
                CallError::Pg(e) => e,
            };
            let closed = e.is_closed() || e.as_db_error().is_none() && e.code().is_none();
            let msg = describe(&e);
            if e.code() == Some(&postgres::error::SqlState::QUERY_CANCELED) {
                anyhow!(Failure::new(
                    Class::Interrupted,
                    format!("query cancelled on {node}: {msg}")
                ))
            } else if closed && e.as_db_error().is_none() {
                anyhow!(Failure::new(
                    Class::Infrastructure,
                    format!("connection to node {node} failed: {msg}")
                ))
            } else {
                anyhow!(Failure::new(
                    Class::Runbook,
                    format!("SQL error on {node}: {msg}")
                ))
            }
        })
    }

    /// Cancels the query running now (called from the Ctrl-C handler's thread).
    pub fn cancel_inflight(&self) {
        let token = self.inflight.lock().unwrap().clone();
        if let Some(t) = token {
            let _ = t.cancel_query(NoTls);
        }
    }

    /// Drops every cached connection (after a node restarts, say).
    pub fn forget(&self, node: &str) {
        self.conns
            .lock()
            .unwrap()
            .retain(|k, _| !k.starts_with(&format!("{node}/")));
    }

    /// Whether the node accepts a connection and a trivial query.
    pub fn ping(&self, node: &str) -> bool {
        self.probe(node).unwrap_or(false)
    }

    /// Like `ping`, but a refused login (wrong password or role: SQLSTATE class 28) is an error,
    /// not "down": no amount of waiting fixes a wrong password, and calling that node down would
    /// send a failover the wrong way.
    pub fn probe(&self, node: &str) -> Result<bool> {
        match self.with_client(node, None, |c| c.simple_query("SELECT 1").map(|_| ())) {
            Ok(()) => Ok(true),
            Err(e) if format!("{e:#}").contains("(SQLSTATE 28") => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// The cluster's system identifier (the same on a primary and the standbys cloned from it;
    /// another `initdb` gives another), as text.
    pub fn system_identifier(&self, node: &str) -> Result<String> {
        self.with_client(node, None, |c| {
            c.query_one(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .map(|r| r.get(0))
        })
    }

    /// Runs a query with parameters; rows come back as maps of typed values.
    /// `read_only` runs it in a read-only transaction that is rolled back (dry runs): a statement
    /// that writes then fails with SQLSTATE 25006.
    pub fn query(
        &self,
        node: &str,
        sql: &str,
        params: &[Dynamic],
        read_only: bool,
        cancel: &Cancel,
    ) -> Result<Array> {
        if cancel.is_cancelled() {
            return Err(anyhow!(Failure::new(Class::Interrupted, "cancelled")));
        }
        let run = move |c: &mut Client| -> std::result::Result<Array, CallError> {
            if read_only {
                let mut tx = c.build_transaction().read_only(true).start()?;
                let stmt = tx.prepare(sql)?;
                let owned = bind(stmt.params(), params)?;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    owned.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = tx.query(&stmt, &refs)?;
                tx.rollback()?;
                return Ok(rows.iter().map(row_to_map).map(Dynamic::from).collect());
            }
            let stmt = c.prepare(sql)?;
            let owned = bind(stmt.params(), params)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                owned.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let rows = c.query(&stmt, &refs)?;
            Ok(rows.iter().map(row_to_map).map(Dynamic::from).collect())
        };
        self.with_client(node, None, run).and_then(|rows: Array| {
            // Conversion errors travel as a marker map; surface them.
            for r in &rows {
                if let Some(m) = r.read_lock::<Map>() {
                    if let Some(e) = m.get("__pgrunbook_error") {
                        return Err(anyhow!(Failure::new(Class::Runbook, e.to_string())));
                    }
                }
            }
            Ok(rows)
        })
    }

    /// Runs statements with no result (several may be separated by `;`).
    pub fn execute_batch(&self, node: &str, sql: &str, database: Option<&str>) -> Result<()> {
        self.with_client(node, database, |c| c.batch_execute(sql))
    }
}

/// The parameters of a prepared statement (`types`, as the server inferred them), each converted
/// to the type the server expects; missing ones are NULL.
///
/// Every check is made here, before anything is sent: a value that does not fit is the
/// runbook's mistake, reported as a [`ParamError`] naming `$n`. Left to the client library, it
/// would fail while serializing, as an error that looks like a broken connection.
fn bind(types: &[Type], params: &[Dynamic]) -> std::result::Result<Vec<Param>, ParamError> {
    types
        .iter()
        .zip(params.iter().chain(std::iter::repeat(&Dynamic::UNIT)))
        .enumerate()
        .map(|(i, (t, v))| {
            Param::from_dynamic(v, t).map_err(|why| ParamError {
                number: i + 1,
                value: shown(v),
                kind: kind_of(v),
                expected: t.name().to_string(),
                why,
            })
        })
        .collect()
}

/// A value as the error shows it, as Rhai writes it (`"three"`, `70000`), cut when long.
fn shown(v: &Dynamic) -> String {
    let s = format!("{v:?}");
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// What kind of Rhai value it is, in words.
fn kind_of(v: &Dynamic) -> String {
    if v.is_string() {
        "a string".into()
    } else if v.is_int() {
        "an integer".into()
    } else if v.is_float() {
        "a float".into()
    } else if v.is_bool() {
        "a boolean".into()
    } else if v.is_array() {
        "an array".into()
    } else if v.is_map() {
        "a map".into()
    } else {
        format!("a {}", v.type_name())
    }
}

/// Why a value cannot be sent as the type the server expects.
#[derive(Debug, Clone, PartialEq)]
enum Mismatch {
    /// Another kind of value is needed (`"an integer"`).
    Needs(&'static str),
    /// An integer outside the range of the server's integer type.
    OutOfRange,
    /// A string that is not an LSN.
    NotAnLsn,
    /// A type pgrunbook does not convert: the SQL must cast text to it.
    CastInSql,
}

/// A parameter pgrunbook refused to send: a runbook error (exit 3), named as the SQL text
/// writes it (`$3`), with the value and the type the server expects.
#[derive(Debug)]
struct ParamError {
    /// The parameter's number, from 1 like `$1`.
    number: usize,
    value: String,
    kind: String,
    /// The type the server expects (`int4`).
    expected: String,
    why: Mismatch,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ParamError {
            number: n,
            value,
            kind,
            expected,
            why,
        } = self;
        write!(
            f,
            "parameter ${n} is {value} ({kind}), but the server expects {expected} there"
        )?;
        match why {
            Mismatch::Needs(what) => write!(f, ": give {what}"),
            Mismatch::OutOfRange => write!(f, ", and it is out of the range of {expected}"),
            Mismatch::NotAnLsn => write!(f, ": give an LSN like 0/3000060"),
            Mismatch::CastInSql => write!(
                f,
                ": pgrunbook sends it as text, so cast it in SQL (${n}::text::{expected})"
            ),
        }
    }
}

/// A parameter converted to the type the server expects.
#[derive(Debug)]
enum Param {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Lsn(postgres::types::PgLsn),
    Text(String),
}

impl Param {
    /// Converts a Rhai value to the server's type `t`, or says why it does not fit. An integer
    /// is never truncated to fit a smaller type: 70000 is not an int2.
    fn from_dynamic(v: &Dynamic, t: &Type) -> std::result::Result<Param, Mismatch> {
        if v.is_unit() {
            return Ok(Param::Null);
        }
        let int = || v.as_int().map_err(|_| Mismatch::Needs("an integer"));
        let number = || {
            v.as_float()
                .or_else(|_| v.as_int().map(|i| i as f64))
                .map_err(|_| Mismatch::Needs("a number"))
        };
        let text = || {
            if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
                s.to_string()
            } else {
                v.to_string()
            }
        };
        Ok(match *t {
            Type::BOOL => Param::Bool(v.as_bool().map_err(|_| Mismatch::Needs("true or false"))?),
            Type::INT2 => Param::I16(int()?.try_into().map_err(|_| Mismatch::OutOfRange)?),
            Type::INT4 => Param::I32(int()?.try_into().map_err(|_| Mismatch::OutOfRange)?),
            Type::INT8 => Param::I64(int()?),
            Type::FLOAT4 => Param::F32(number()? as f32),
            Type::FLOAT8 => Param::F64(number()?),
            Type::PG_LSN => Param::Lsn(text().parse().map_err(|_| Mismatch::NotAnLsn)?),
            _ if <String as ToSql>::accepts(t) => Param::Text(text()),
            _ => return Err(Mismatch::CastInSql),
        })
    }
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn StdError + Sync + Send>> {
        // `from_dynamic` chose each variant for `ty`: these cannot refuse it.
        match self {
            Param::Null => Ok(postgres::types::IsNull::Yes),
            Param::Bool(b) => b.to_sql(ty, out),
            Param::I16(i) => i.to_sql(ty, out),
            Param::I32(i) => i.to_sql(ty, out),
            Param::I64(i) => i.to_sql(ty, out),
            Param::F32(f) => f.to_sql(ty, out),
            Param::F64(f) => f.to_sql(ty, out),
            Param::Lsn(l) => l.to_sql(ty, out),
            Param::Text(s) => s.to_sql(ty, out),
        }
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
    postgres::types::to_sql_checked!();
}

/// PostgreSQL `numeric` in binary form, decoded to an integer or a float.
struct Numeric(Dynamic);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn StdError + Sync + Send>> {
        if raw.len() < 8 {
            return Err("short numeric".into());
        }
        let rd = |i: usize| i16::from_be_bytes([raw[i], raw[i + 1]]);
        let ndigits = rd(0) as usize;
        let weight = rd(2) as i32;
        let sign = u16::from_be_bytes([raw[4], raw[5]]);
        let dscale = rd(6);
        if sign == 0xC000 {
            return Ok(Numeric(Dynamic::from_float(f64::NAN)));
        }
        let mut int_part: i128 = 0;
        let mut value: f64 = 0.0;
        let mut fractional = false;
        for i in 0..ndigits {
            let d = rd(8 + 2 * i) as i128;
            let exp = weight - i as i32;
            value += d as f64 * 10000f64.powi(exp);
            if exp >= 0 {
                int_part += d * 10000i128.pow(exp as u32);
            } else if d != 0 {
                fractional = true;
            }
        }
        let neg = sign == 0x4000;
        if dscale == 0 && !fractional && int_part <= i64::MAX as i128 {
            let v = int_part as i64;
            return Ok(Numeric(Dynamic::from_int(if neg { -v } else { v })));
        }
        Ok(Numeric(Dynamic::from_float(if neg {
            -value
        } else {
            value
        })))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

fn cell<'a, T: FromSql<'a>>(
    row: &'a Row,
    i: usize,
    f: impl Fn(T) -> Dynamic,
) -> std::result::Result<Dynamic, String> {
    row.try_get::<_, Option<T>>(i)
        .map(|o| o.map(f).unwrap_or(Dynamic::UNIT))
        .map_err(|e| e.to_string())
}

/// Converts one value of a row to a Rhai value: NULL is `()`, integers are INT, floats and
/// numerics FLOAT (INT when whole), text STRING, timestamps ISO 8601 strings, json a map.
pub fn value_to_dynamic(row: &Row, i: usize) -> std::result::Result<Dynamic, String> {
    let t = row.columns()[i].type_().clone();
    match t {
        Type::BOOL => cell(row, i, Dynamic::from_bool),
        Type::INT2 => cell(row, i, |v: i16| Dynamic::from_int(v as i64)),
        Type::INT4 => cell(row, i, |v: i32| Dynamic::from_int(v as i64)),
        Type::INT8 => cell(row, i, Dynamic::from_int),
        Type::OID => cell(row, i, |v: u32| Dynamic::from_int(v as i64)),
        Type::FLOAT4 => cell(row, i, |v: f32| Dynamic::from_float(v as f64)),
        Type::FLOAT8 => cell(row, i, Dynamic::from_float),
        Type::NUMERIC => cell(row, i, |v: Numeric| v.0),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
            cell(row, i, |v: String| Dynamic::from(v))
        }
        Type::CHAR => cell(row, i, |v: i8| Dynamic::from((v as u8 as char).to_string())),
        Type::PG_LSN => cell(row, i, |v: postgres::types::PgLsn| {
            Dynamic::from(v.to_string())
        }),
        Type::TIMESTAMPTZ => cell(row, i, |v: chrono::DateTime<chrono::Utc>| {
            Dynamic::from(v.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        }),
        Type::TIMESTAMP => cell(row, i, |v: chrono::NaiveDateTime| {
            Dynamic::from(v.to_string())
        }),
        Type::DATE => cell(row, i, |v: chrono::NaiveDate| Dynamic::from(v.to_string())),
        Type::JSON | Type::JSONB => cell(row, i, |v: serde_json::Value| {
            rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
        }),
        Type::BYTEA => cell(row, i, |v: Vec<u8>| Dynamic::from_blob(v)),
        Type::TEXT_ARRAY | Type::NAME_ARRAY | Type::VARCHAR_ARRAY => {
            cell(row, i, |v: Vec<Option<String>>| {
                Dynamic::from_array(
                    v.into_iter()
                        .map(|s| s.map(Dynamic::from).unwrap_or(Dynamic::UNIT))
                        .collect(),
                )
            })
        }
        Type::INT4_ARRAY => cell(row, i, |v: Vec<Option<i32>>| {
            Dynamic::from_array(
                v.into_iter()
                    .map(|s| {
                        s.map(|x| Dynamic::from_int(x as i64))
                            .unwrap_or(Dynamic::UNIT)
                    })
                    .collect(),
            )
        }),
        Type::INT8_ARRAY => cell(row, i, |v: Vec<Option<i64>>| {
            Dynamic::from_array(
                v.into_iter()
                    .map(|s| s.map(Dynamic::from_int).unwrap_or(Dynamic::UNIT))
                    .collect(),
            )
        }),
        Type::VOID => Ok(Dynamic::UNIT),
        ref other => {
            if let Kind::Enum(_) = other.kind() {
                return cell(row, i, |v: String| Dynamic::from(v));
            }
            Err(format!(
                "column '{}' has type {} that pgrunbook cannot convert; cast it in SQL ({}::text)",
                row.columns()[i].name(),
                other.name(),
                row.columns()[i].name()
            ))
        }
    }
}

fn row_to_map(row: &Row) -> Map {
    let mut m = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        match value_to_dynamic(row, i) {
            Ok(v) => {
                m.insert(col.name().into(), v);
            }
            Err(e) => {
                let mut err = Map::new();
                err.insert("__pgrunbook_error".into(), Dynamic::from(e));
                return err;
            }
        }
    }
    m
}

/// Quotes an SQL identifier (a slot name, a role): `"` doubled, the whole in `"`.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes an SQL string literal: `'` doubled, backslashes kept literal with E'' avoided.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = vec![];
        v.extend(ndigits.to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend(sign.to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numeric_whole_becomes_int() {
        // 123456789 = 1 2345 6789 in base 10000
        let raw = numeric_bytes(3, 2, 0, 0, &[1, 2345, 6789]);
        let n = Numeric::from_sql(&Type::NUMERIC, &raw).unwrap();
        assert_eq!(n.0.as_int().unwrap(), 123456789);
        let raw = numeric_bytes(1, 0, 0x4000, 0, &[42]);
        assert_eq!(
            Numeric::from_sql(&Type::NUMERIC, &raw)
                .unwrap()
                .0
                .as_int()
                .unwrap(),
            -42
        );
        let raw = numeric_bytes(0, 0, 0, 0, &[]);
        assert_eq!(
            Numeric::from_sql(&Type::NUMERIC, &raw)
                .unwrap()
                .0
                .as_int()
                .unwrap(),
            0
        );
    }

    #[test]
    fn numeric_fraction_becomes_float() {
        // 1.5 = 1 . 5000
        let raw = numeric_bytes(2, 0, 0, 1, &[1, 5000]);
        let n = Numeric::from_sql(&Type::NUMERIC, &raw).unwrap();
        assert!((n.0.as_float().unwrap() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn params_follow_the_servers_types() {
        let p = |v: Dynamic, t: &Type| Param::from_dynamic(&v, t).unwrap();
        assert!(matches!(
            p(Dynamic::from_int(7), &Type::INT4),
            Param::I32(7)
        ));
        assert!(matches!(
            p(Dynamic::from_int(7), &Type::INT8),
            Param::I64(7)
        ));
        assert!(matches!(
            p(Dynamic::from_int(7), &Type::FLOAT8),
            Param::F64(_)
        ));
        assert!(matches!(p(Dynamic::UNIT, &Type::TEXT), Param::Null));
        assert!(matches!(
            p(Dynamic::from("0/3000060"), &Type::PG_LSN),
            Param::Lsn(_)
        ));
        match p(Dynamic::from("x'y"), &Type::TEXT) {
            Param::Text(s) => assert_eq!(s, "x'y"),
            p => panic!("{p:?}"),
        }
        match p(Dynamic::from_int(5), &Type::TEXT) {
            Param::Text(s) => assert_eq!(s, "5"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn a_value_that_does_not_fit_is_refused_naming_its_parameter() {
        let values = [
            Dynamic::from_int(1),
            Dynamic::from_int(2),
            Dynamic::from("three"),
        ];
        let e = bind(&[Type::INT4, Type::INT4, Type::INT4], &values).unwrap_err();
        assert_eq!((e.number, &e.why), (3, &Mismatch::Needs("an integer")));
        let msg = e.to_string();
        assert_eq!(
            msg,
            "parameter $3 is \"three\" (a string), but the server expects int4 there: give an integer"
        );
        // The same values bind where the types fit; a missing value is NULL.
        let ok = bind(&[Type::INT4, Type::INT8, Type::TEXT, Type::TEXT], &values).unwrap();
        assert!(matches!(
            ok[..],
            [Param::I32(1), Param::I64(2), Param::Text(_), Param::Null]
        ));

        let refused = |t: Type, v: Dynamic| bind(&[t], &[v]).unwrap_err().why;
        // Never truncated to fit: 70000 is not an int2.
        assert_eq!(
            refused(Type::INT2, Dynamic::from_int(70000)),
            Mismatch::OutOfRange
        );
        assert_eq!(
            refused(Type::INT4, Dynamic::from_int(1 << 40)),
            Mismatch::OutOfRange
        );
        assert_eq!(
            refused(Type::INT4, Dynamic::from_float(1.5)),
            Mismatch::Needs("an integer")
        );
        assert_eq!(
            refused(Type::BOOL, Dynamic::from("yes")),
            Mismatch::Needs("true or false")
        );
        assert_eq!(
            refused(Type::FLOAT8, Dynamic::from("1.5")),
            Mismatch::Needs("a number")
        );
        assert_eq!(
            refused(Type::PG_LSN, Dynamic::from("zz")),
            Mismatch::NotAnLsn
        );
        let e = bind(
            &[Type::TEXT, Type::TIMESTAMPTZ],
            &[Dynamic::UNIT, Dynamic::from("now")],
        )
        .unwrap_err();
        assert_eq!(e.why, Mismatch::CastInSql);
        assert!(e.to_string().contains("($2::text::timestamptz)"), "{e}");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("replica1"), "\"replica1\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(
            quote_literal("x'); DROP TABLE t; --"),
            "'x''); DROP TABLE t; --'"
        );
    }
}
