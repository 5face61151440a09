//! The PostgreSQL client: connections to each node over its published port, queries, and the
//! conversion of rows into Rust values ([`Rows`] of [`Value`]s).
//!
//! It knows nothing of Rhai: a caller gives parameters through [`SqlParam`] and gets typed
//! [`Rows`] back, or a [`PgError`] that carries its class and the server's SQLSTATE. Turning
//! these into script values is the primitives' work (`src/primitives/postgres/values.rs`).
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
use anyhow::anyhow;
use postgres::types::{FromSql, Kind, ToSql, Type};
use postgres::{CancelToken, Client, NoTls, Row};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Mutex;
use std::time::Duration;

pub use postgres::error::SqlState;
pub use postgres::types::PgLsn;

type Result<T> = std::result::Result<T, PgError>;

/// A call that failed: the class it counts as (which decides the exit code), the message, and
/// the server's SQLSTATE when the server answered with an error (or refused the login). Callers
/// decide on [`PgError::code`], never on the message's text.
#[derive(Debug, Clone)]
pub struct PgError {
    class: Class,
    message: String,
    code: Option<SqlState>,
}

impl PgError {
    fn new(class: Class, message: impl Into<String>) -> PgError {
        PgError {
            class,
            message: message.into(),
            code: None,
        }
    }

    /// The server's SQLSTATE (`SqlState::READ_ONLY_SQL_TRANSACTION`), if it sent one.
    pub fn code(&self) -> Option<&SqlState> {
        self.code.as_ref()
    }

    /// Whether the server refused the login (SQLSTATE class 28: a wrong password or role).
    /// No amount of waiting fixes that, so it never counts as a node that is down.
    pub fn login_refused(&self) -> bool {
        self.code
            .as_ref()
            .is_some_and(|c| c.code().starts_with("28"))
    }

    pub fn class(&self) -> Class {
        self.class
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Into the error type of the layers above: a [`Failure`] of the same class and message.
impl From<PgError> for anyhow::Error {
    fn from(e: PgError) -> anyhow::Error {
        anyhow!(Failure::new(e.class, e.message))
    }
}

/// What a call on a connection fails with: the server or the connection, a parameter that
/// pgrunbook refused to send (see `bind`), or a value it cannot convert, kept apart so that
/// each gets its own class.
enum CallError {
    Pg(postgres::Error),
    Param(ParamError),
    Convert(ConvertError),
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

impl From<ConvertError> for CallError {
    fn from(e: ConvertError) -> Self {
        CallError::Convert(e)
    }
}

/// The rows of a query: the column names in the query's order, and each row's values in the
/// same order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// The first column of the first row, if there is a row.
    pub fn first_value(&self) -> Option<&Value> {
        self.rows.first().and_then(|r| r.first())
    }

    /// The value of the column named `column` in row `row`.
    pub fn get(&self, row: usize, column: &str) -> Option<&Value> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row).and_then(|r| r.get(i))
    }
}

/// One value of a row, typed after its column: NULL is `Null` whatever the type; integers
/// (`int2`, `int4`, `int8`, `oid`) are `Int`; `float4`, `float8` are `Float`; a `numeric` is
/// `Int` when whole and fits, else `Float`; text types, `"char"` and enums are `Text`; arrays
/// of text and integers are `Array`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Lsn(PgLsn),
    /// `timestamptz`.
    TimestampTz(chrono::DateTime<chrono::Utc>),
    /// `timestamp` (without time zone).
    Timestamp(chrono::NaiveDateTime),
    Date(chrono::NaiveDate),
    /// `json` and `jsonb`.
    Json(serde_json::Value),
    /// `bytea`.
    Bytes(Vec<u8>),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_lsn(&self) -> Option<PgLsn> {
        match self {
            Value::Lsn(l) => Some(*l),
            _ => None,
        }
    }
}

/// A column whose value pgrunbook cannot convert: its type has no [`Value`], or the server sent
/// what the type's decoder refused. A runbook error: the query must cast it (`col::text`).
#[derive(Debug, Clone, PartialEq)]
pub enum ConvertError {
    UnknownType { column: String, type_name: String },
    Decode { column: String, why: String },
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvertError::UnknownType { column, type_name } => write!(
                f,
                "column '{column}' has type {type_name} that pgrunbook cannot convert; cast it in SQL ({column}::text)"
            ),
            ConvertError::Decode { why, .. } => f.write_str(why),
        }
    }
}

pub struct Postgres {
    config: Config,
    /// Open connections by node and database, with when each was last used.
    conns: Mutex<HashMap<String, (Client, std::time::Instant)>>,
    /// The cancel token of the query running now, for Ctrl-C.
    inflight: Mutex<Option<CancelToken>>,
}

/// Turns a postgres error into a message with SQLSTATE and detail.
/// A connection unused this long is checked (an empty query) before its next use: shorter than
/// any restart of a server (a shutdown checkpoint, a start and its recovery), so that a
/// connection to the server before it is never used after it.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_millis(200);
/// How long that check may take before the connection counts as dead.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
            .map_err(|e| PgError::new(Class::Runbook, e.to_string()))?;
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
        cfg.connect(NoTls).map_err(|e| PgError {
            class: Class::Infrastructure,
            message: format!(
                "PostgreSQL on node {node} ({}:{}) is unreachable: {}",
                n.host,
                n.port,
                describe(&e)
            ),
            code: e.code().cloned(),
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
            let cached = conns.remove(&key);
            drop(conns);
            // A connection idle for a while may be to a server that has restarted since (a REPL
            // left open across a lab restart): an empty query tells, and a dead one is replaced
            // before the caller's query is sent, so nothing runs twice.
            let alive = |(mut c, used): (Client, std::time::Instant)| {
                let ok = !c.is_closed()
                    && (used.elapsed() < IDLE_CHECK || c.is_valid(IDLE_TIMEOUT).is_ok());
                ok.then_some(c)
            };
            match cached.and_then(alive) {
                Some(c) => c,
                None => self.connect(node, &db)?,
            }
        };
        *self.inflight.lock().unwrap() = Some(client.cancel_token());
        let r = f(&mut client).map_err(Into::into);
        *self.inflight.lock().unwrap() = None;
        if !client.is_closed() {
            self.conns
                .lock()
                .unwrap()
                .insert(key, (client, std::time::Instant::now()));
        }
        r.map_err(|e| {
            let e = match e {
                // Refused before anything was sent: the runbook's mistake, whatever the server.
                CallError::Param(p) => return PgError::new(Class::Runbook, p.to_string()),
                // The query ran; its result does not convert: the query must cast.
                CallError::Convert(c) => return PgError::new(Class::Runbook, c.to_string()),
                CallError::Pg(e) => e,
            };
            let closed = e.is_closed() || e.as_db_error().is_none() && e.code().is_none();
            let msg = describe(&e);
            let code = e.code().cloned();
            let (class, message) = if code == Some(SqlState::QUERY_CANCELED) {
                (
                    Class::Interrupted,
                    format!("query cancelled on {node}: {msg}"),
                )
            } else if closed && e.as_db_error().is_none() {
                (
                    Class::Infrastructure,
                    format!("connection to node {node} failed: {msg}"),
                )
            } else {
                (Class::Runbook, format!("SQL error on {node}: {msg}"))
            };
            PgError {
                class,
                message,
                code,
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
            Err(e) if e.login_refused() => Err(e),
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

    /// Runs a query with parameters; rows come back typed, columns in the query's order.
    /// `read_only` runs it in a read-only transaction that is rolled back (dry runs): a statement
    /// that writes then fails with SQLSTATE 25006 (`SqlState::READ_ONLY_SQL_TRANSACTION`).
    pub fn query(
        &self,
        node: &str,
        sql: &str,
        params: &[&dyn SqlParam],
        read_only: bool,
        cancel: &Cancel,
    ) -> Result<Rows> {
        if cancel.is_cancelled() {
            return Err(PgError::new(Class::Interrupted, "cancelled"));
        }
        let run = move |c: &mut Client| -> std::result::Result<Rows, CallError> {
            let (stmt, rows) = if read_only {
                let mut tx = c.build_transaction().read_only(true).start()?;
                let stmt = tx.prepare(sql)?;
                let owned = bind(stmt.params(), params)?;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    owned.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = tx.query(&stmt, &refs)?;
                tx.rollback()?;
                (stmt, rows)
            } else {
                let stmt = c.prepare(sql)?;
                let owned = bind(stmt.params(), params)?;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    owned.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = c.query(&stmt, &refs)?;
                (stmt, rows)
            };
            Ok(Rows {
                columns: stmt
                    .columns()
                    .iter()
                    .map(|c| c.name().to_string())
                    .collect(),
                rows: rows
                    .iter()
                    .map(row_values)
                    .collect::<std::result::Result<_, _>>()?,
            })
        };
        self.with_client(node, None, run)
    }

    /// Runs statements with no result (several may be separated by `;`).
    pub fn execute_batch(&self, node: &str, sql: &str, database: Option<&str>) -> Result<()> {
        self.with_client(node, database, |c| c.batch_execute(sql))
    }
}

/// A value given for a parameter `$n`: what the client needs to know of it to send it as the
/// type the server expects, or to say why it cannot. The caller's language (Rhai, for the
/// primitives) implements it; the client never sees that language's values.
pub trait SqlParam {
    /// Whether it stands for NULL.
    fn is_null(&self) -> bool;
    /// A boolean; none by default (text values are parsed by the server, not here).
    fn to_bool(&self) -> Option<bool> {
        None
    }
    /// An integer; none by default.
    fn to_int(&self) -> Option<i64> {
        None
    }
    /// A float (an integer is not: the client widens integers itself where a float fits); none
    /// by default.
    fn to_float(&self) -> Option<f64> {
        None
    }
    /// The value as text, for a parameter the server takes as text (or parses, like `pg_lsn`).
    fn to_text(&self) -> String;
    /// The value as the caller's language writes it, for errors (`"three"`, `70000`).
    fn shown(&self) -> String;
    /// What kind of value it is, in words, for errors (`a string`).
    fn kind(&self) -> String;
}

/// The parameters of a prepared statement (`types`, as the server inferred them), each converted
/// to the type the server expects; missing ones are NULL.
///
/// Every check is made here, before anything is sent: a value that does not fit is the
/// runbook's mistake, reported as a [`ParamError`] naming `$n`. Left to the client library, it
/// would fail while serializing, as an error that looks like a broken connection.
fn bind(types: &[Type], params: &[&dyn SqlParam]) -> std::result::Result<Vec<Bound>, ParamError> {
    let null: &dyn SqlParam = &Null;
    types
        .iter()
        .zip(params.iter().copied().chain(std::iter::repeat(null)))
        .enumerate()
        .map(|(i, (t, v))| {
            Bound::from_param(v, t).map_err(|why| ParamError {
                number: i + 1,
                value: cut(v.shown()),
                kind: v.kind(),
                expected: t.name().to_string(),
                why,
            })
        })
        .collect()
}

/// Text from Rust code (a file name, a setting): sent as text, or parsed where the server
/// expects another type (`pg_lsn`).
impl SqlParam for &str {
    fn is_null(&self) -> bool {
        false
    }
    fn to_text(&self) -> String {
        self.to_string()
    }
    fn shown(&self) -> String {
        format!("{self:?}")
    }
    fn kind(&self) -> String {
        "a string".into()
    }
}

/// The value of a parameter the caller did not give.
struct Null;

impl SqlParam for Null {
    fn is_null(&self) -> bool {
        true
    }
    fn to_text(&self) -> String {
        String::new()
    }
    fn shown(&self) -> String {
        "()".into()
    }
    fn kind(&self) -> String {
        "nothing".into()
    }
}

/// A value as the error shows it, cut when long.
fn cut(s: String) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
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
enum Bound {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Lsn(PgLsn),
    Text(String),
}

impl Bound {
    /// Converts a parameter to the server's type `t`, or says why it does not fit. An integer
    /// is never truncated to fit a smaller type: 70000 is not an int2.
    fn from_param(v: &dyn SqlParam, t: &Type) -> std::result::Result<Bound, Mismatch> {
        if v.is_null() {
            return Ok(Bound::Null);
        }
        let int = || v.to_int().ok_or(Mismatch::Needs("an integer"));
        let number = || {
            v.to_float()
                .or_else(|| v.to_int().map(|i| i as f64))
                .ok_or(Mismatch::Needs("a number"))
        };
        Ok(match *t {
            Type::BOOL => Bound::Bool(v.to_bool().ok_or(Mismatch::Needs("true or false"))?),
            Type::INT2 => Bound::I16(int()?.try_into().map_err(|_| Mismatch::OutOfRange)?),
            Type::INT4 => Bound::I32(int()?.try_into().map_err(|_| Mismatch::OutOfRange)?),
            Type::INT8 => Bound::I64(int()?),
            Type::FLOAT4 => Bound::F32(number()? as f32),
            Type::FLOAT8 => Bound::F64(number()?),
            Type::PG_LSN => Bound::Lsn(v.to_text().parse().map_err(|_| Mismatch::NotAnLsn)?),
            _ if <String as ToSql>::accepts(t) => Bound::Text(v.to_text()),
            _ => return Err(Mismatch::CastInSql),
        })
    }
}

impl ToSql for Bound {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn StdError + Sync + Send>> {
        // `from_param` chose each variant for `ty`: these cannot refuse it.
        match self {
            Bound::Null => Ok(postgres::types::IsNull::Yes),
            Bound::Bool(b) => b.to_sql(ty, out),
            Bound::I16(i) => i.to_sql(ty, out),
            Bound::I32(i) => i.to_sql(ty, out),
            Bound::I64(i) => i.to_sql(ty, out),
            Bound::F32(f) => f.to_sql(ty, out),
            Bound::F64(f) => f.to_sql(ty, out),
            Bound::Lsn(l) => l.to_sql(ty, out),
            Bound::Text(s) => s.to_sql(ty, out),
        }
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
    postgres::types::to_sql_checked!();
}

/// PostgreSQL `numeric` in binary form, decoded to an integer (when whole and within i64) or a
/// float.
struct Numeric(Value);

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
            return Ok(Numeric(Value::Float(f64::NAN)));
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
            return Ok(Numeric(Value::Int(if neg { -v } else { v })));
        }
        Ok(Numeric(Value::Float(if neg { -value } else { value })))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// Column `i` of `row` decoded as `T` (NULL as `Value::Null`), then made a [`Value`] by `f`.
fn cell<'a, T: FromSql<'a>>(
    row: &'a Row,
    i: usize,
    f: impl Fn(T) -> Value,
) -> std::result::Result<Value, ConvertError> {
    row.try_get::<_, Option<T>>(i)
        .map(|o| o.map(f).unwrap_or(Value::Null))
        .map_err(|e| ConvertError::Decode {
            column: row.columns()[i].name().to_string(),
            why: e.to_string(),
        })
}

/// The elements of an array column, NULL elements as `Value::Null`.
fn elements<T>(v: Vec<Option<T>>, f: impl Fn(T) -> Value) -> Value {
    Value::Array(
        v.into_iter()
            .map(|x| x.map(&f).unwrap_or(Value::Null))
            .collect(),
    )
}

/// Converts one value of a row to a [`Value`], after the column's type.
pub fn value_of(row: &Row, i: usize) -> std::result::Result<Value, ConvertError> {
    let t = row.columns()[i].type_().clone();
    match t {
        Type::BOOL => cell(row, i, Value::Bool),
        Type::INT2 => cell(row, i, |v: i16| Value::Int(v as i64)),
        Type::INT4 => cell(row, i, |v: i32| Value::Int(v as i64)),
        Type::INT8 => cell(row, i, Value::Int),
        Type::OID => cell(row, i, |v: u32| Value::Int(v as i64)),
        Type::FLOAT4 => cell(row, i, |v: f32| Value::Float(v as f64)),
        Type::FLOAT8 => cell(row, i, Value::Float),
        Type::NUMERIC => cell(row, i, |v: Numeric| v.0),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
            cell(row, i, Value::Text)
        }
        Type::CHAR => cell(row, i, |v: i8| Value::Text((v as u8 as char).to_string())),
        Type::PG_LSN => cell(row, i, Value::Lsn),
        Type::TIMESTAMPTZ => cell(row, i, Value::TimestampTz),
        Type::TIMESTAMP => cell(row, i, Value::Timestamp),
        Type::DATE => cell(row, i, Value::Date),
        Type::JSON | Type::JSONB => cell(row, i, Value::Json),
        Type::BYTEA => cell(row, i, Value::Bytes),
        Type::TEXT_ARRAY | Type::NAME_ARRAY | Type::VARCHAR_ARRAY => {
            cell(row, i, |v: Vec<Option<String>>| elements(v, Value::Text))
        }
        Type::INT4_ARRAY => cell(row, i, |v: Vec<Option<i32>>| {
            elements(v, |x| Value::Int(x as i64))
        }),
        Type::INT8_ARRAY => cell(row, i, |v: Vec<Option<i64>>| elements(v, Value::Int)),
        Type::VOID => Ok(Value::Null),
        ref other => {
            if let Kind::Enum(_) = other.kind() {
                return cell(row, i, Value::Text);
            }
            Err(ConvertError::UnknownType {
                column: row.columns()[i].name().to_string(),
                type_name: other.name().to_string(),
            })
        }
    }
}

/// The values of a row, in the order of its columns.
fn row_values(row: &Row) -> std::result::Result<Vec<Value>, ConvertError> {
    (0..row.len()).map(|i| value_of(row, i)).collect()
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

    fn numeric(raw: &[u8]) -> Value {
        Numeric::from_sql(&Type::NUMERIC, raw).unwrap().0
    }

    #[test]
    fn numeric_whole_becomes_int() {
        // 123456789 = 1 2345 6789 in base 10000
        let raw = numeric_bytes(3, 2, 0, 0, &[1, 2345, 6789]);
        assert_eq!(numeric(&raw), Value::Int(123456789));
        let raw = numeric_bytes(1, 0, 0x4000, 0, &[42]);
        assert_eq!(numeric(&raw), Value::Int(-42));
        let raw = numeric_bytes(0, 0, 0, 0, &[]);
        assert_eq!(numeric(&raw), Value::Int(0));
    }

    #[test]
    fn numeric_fraction_becomes_float() {
        // 1.5 = 1 . 5000
        let raw = numeric_bytes(2, 0, 0, 1, &[1, 5000]);
        match numeric(&raw) {
            Value::Float(f) => assert!((f - 1.5).abs() < 1e-9),
            v => panic!("{v:?}"),
        }
    }

    /// A parameter as a caller's language might give it.
    #[derive(Debug)]
    enum P {
        Unit,
        Int(i64),
        Float(f64),
        Bool(bool),
        Str(&'static str),
    }

    impl SqlParam for P {
        fn is_null(&self) -> bool {
            matches!(self, P::Unit)
        }
        fn to_bool(&self) -> Option<bool> {
            match self {
                P::Bool(b) => Some(*b),
                _ => None,
            }
        }
        fn to_int(&self) -> Option<i64> {
            match self {
                P::Int(i) => Some(*i),
                _ => None,
            }
        }
        fn to_float(&self) -> Option<f64> {
            match self {
                P::Float(f) => Some(*f),
                _ => None,
            }
        }
        fn to_text(&self) -> String {
            match self {
                P::Unit => String::new(),
                P::Int(i) => i.to_string(),
                P::Float(f) => f.to_string(),
                P::Bool(b) => b.to_string(),
                P::Str(s) => s.to_string(),
            }
        }
        fn shown(&self) -> String {
            match self {
                P::Str(s) => format!("{s:?}"),
                _ => self.to_text(),
            }
        }
        fn kind(&self) -> String {
            match self {
                P::Str(_) => "a string".into(),
                _ => "something else".into(),
            }
        }
    }

    fn bind_p(types: &[Type], values: &[P]) -> std::result::Result<Vec<Bound>, ParamError> {
        let refs: Vec<&dyn SqlParam> = values.iter().map(|v| v as &dyn SqlParam).collect();
        bind(types, &refs)
    }

    #[test]
    fn params_follow_the_servers_types() {
        let p = |v: P, t: &Type| Bound::from_param(&v, t).unwrap();
        assert!(matches!(p(P::Int(7), &Type::INT4), Bound::I32(7)));
        assert!(matches!(p(P::Int(7), &Type::INT8), Bound::I64(7)));
        assert!(matches!(p(P::Int(7), &Type::FLOAT8), Bound::F64(_)));
        assert!(matches!(p(P::Unit, &Type::TEXT), Bound::Null));
        assert!(matches!(p(P::Bool(true), &Type::BOOL), Bound::Bool(true)));
        assert!(matches!(
            p(P::Str("0/3000060"), &Type::PG_LSN),
            Bound::Lsn(_)
        ));
        match p(P::Str("x'y"), &Type::TEXT) {
            Bound::Text(s) => assert_eq!(s, "x'y"),
            p => panic!("{p:?}"),
        }
        match p(P::Int(5), &Type::TEXT) {
            Bound::Text(s) => assert_eq!(s, "5"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn a_value_that_does_not_fit_is_refused_naming_its_parameter() {
        let values = [P::Int(1), P::Int(2), P::Str("three")];
        let e = bind_p(&[Type::INT4, Type::INT4, Type::INT4], &values).unwrap_err();
        assert_eq!((e.number, &e.why), (3, &Mismatch::Needs("an integer")));
        let msg = e.to_string();
        assert_eq!(
            msg,
            "parameter $3 is \"three\" (a string), but the server expects int4 there: give an integer"
        );
        // The same values bind where the types fit; a missing value is NULL.
        let ok = bind_p(&[Type::INT4, Type::INT8, Type::TEXT, Type::TEXT], &values).unwrap();
        assert!(matches!(
            ok[..],
            [Bound::I32(1), Bound::I64(2), Bound::Text(_), Bound::Null]
        ));

        let refused = |t: Type, v: P| bind_p(&[t], &[v]).unwrap_err().why;
        // Never truncated to fit: 70000 is not an int2.
        assert_eq!(refused(Type::INT2, P::Int(70000)), Mismatch::OutOfRange);
        assert_eq!(refused(Type::INT4, P::Int(1 << 40)), Mismatch::OutOfRange);
        assert_eq!(
            refused(Type::INT4, P::Float(1.5)),
            Mismatch::Needs("an integer")
        );
        assert_eq!(
            refused(Type::BOOL, P::Str("yes")),
            Mismatch::Needs("true or false")
        );
        assert_eq!(
            refused(Type::FLOAT8, P::Str("1.5")),
            Mismatch::Needs("a number")
        );
        assert_eq!(refused(Type::PG_LSN, P::Str("zz")), Mismatch::NotAnLsn);
        let e = bind_p(&[Type::TEXT, Type::TIMESTAMPTZ], &[P::Unit, P::Str("now")]).unwrap_err();
        assert_eq!(e.why, Mismatch::CastInSql);
        assert!(e.to_string().contains("($2::text::timestamptz)"), "{e}");
        // A long value is cut in the message.
        let long = bind_p(
            &[Type::INT4],
            &[P::Str(Box::leak("x".repeat(100).into_boxed_str()))],
        )
        .unwrap_err();
        assert!(long.value.ends_with("..."), "{}", long.value);
        assert_eq!(long.value.chars().count(), 63);
    }

    #[test]
    fn rows_keep_the_querys_column_order() {
        let rows = Rows {
            columns: vec!["c".into(), "a".into(), "b".into()],
            rows: vec![vec![Value::Int(3), Value::Int(1), Value::Int(2)]],
        };
        assert_eq!(rows.first_value(), Some(&Value::Int(3)));
        assert_eq!(rows.get(0, "b"), Some(&Value::Int(2)));
        assert_eq!(rows.get(1, "b"), None);
        assert_eq!(Rows::default().first_value(), None);
    }

    #[test]
    fn conversion_errors_say_how_to_cast() {
        let e = ConvertError::UnknownType {
            column: "at".into(),
            type_name: "tsrange".into(),
        };
        assert_eq!(
            e.to_string(),
            "column 'at' has type tsrange that pgrunbook cannot convert; cast it in SQL (at::text)"
        );
    }

    #[test]
    fn errors_keep_class_and_sqlstate() {
        let e = PgError {
            class: Class::Runbook,
            message: "SQL error on p: x (SQLSTATE 25006)".into(),
            code: Some(SqlState::READ_ONLY_SQL_TRANSACTION),
        };
        assert_eq!(e.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
        let any: anyhow::Error = e.into();
        assert_eq!(crate::error::class_of(&any, Class::Usage), Class::Runbook);
        assert!(format!("{any:#}").contains("SQL error on p: x (SQLSTATE 25006)"));
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
