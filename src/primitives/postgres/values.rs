//! Between Rhai and the PostgreSQL client: Rhai values as query parameters, and the client's
//! typed rows as Rhai values (an array of maps).

use crate::clients::postgres::{Rows, SqlParam, Value};
use rhai::{Array, Dynamic, ImmutableString, Map};

/// A Rhai value as a parameter `$n`: the client binds it to the type the server expects, and
/// names it as Rhai writes it when it does not fit.
impl SqlParam for Dynamic {
    fn is_null(&self) -> bool {
        self.is_unit()
    }
    fn to_bool(&self) -> Option<bool> {
        self.as_bool().ok()
    }
    fn to_int(&self) -> Option<i64> {
        self.as_int().ok()
    }
    fn to_float(&self) -> Option<f64> {
        self.as_float().ok()
    }
    fn to_text(&self) -> String {
        match self.read_lock::<ImmutableString>() {
            Some(s) => s.to_string(),
            None => self.to_string(),
        }
    }
    fn shown(&self) -> String {
        format!("{self:?}")
    }
    fn kind(&self) -> String {
        if self.is_string() {
            "a string".into()
        } else if self.is_int() {
            "an integer".into()
        } else if self.is_float() {
            "a float".into()
        } else if self.is_bool() {
            "a boolean".into()
        } else if self.is_array() {
            "an array".into()
        } else if self.is_map() {
            "a map".into()
        } else {
            format!("a {}", self.type_name())
        }
    }
}

/// Rhai values as the client's parameters.
pub(super) fn params_of(params: &[Dynamic]) -> Vec<&dyn SqlParam> {
    params.iter().map(|p| p as &dyn SqlParam).collect()
}

/// A value of a row as Rhai sees it: NULL is `()`, integers INT, floats and numerics FLOAT (INT
/// when whole), text STRING, LSNs, timestamps (ISO 8601) and dates strings, json a map, bytea a
/// blob, arrays arrays.
pub fn to_dynamic(v: Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(b),
        Value::Int(i) => Dynamic::from_int(i),
        Value::Float(f) => Dynamic::from_float(f),
        Value::Text(s) => Dynamic::from(s),
        Value::Lsn(l) => Dynamic::from(l.to_string()),
        Value::TimestampTz(t) => {
            Dynamic::from(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        }
        Value::Timestamp(t) => Dynamic::from(t.to_string()),
        Value::Date(d) => Dynamic::from(d.to_string()),
        Value::Json(j) => rhai::serde::to_dynamic(j).unwrap_or(Dynamic::UNIT),
        Value::Bytes(b) => Dynamic::from_blob(b),
        Value::Array(a) => Dynamic::from_array(a.into_iter().map(to_dynamic).collect()),
    }
}

/// Rows as Rhai sees them: an array of maps, column name to value.
pub fn to_array(rows: Rows) -> Array {
    let Rows { columns, rows } = rows;
    rows.into_iter()
        .map(|values| {
            let mut m = Map::new();
            for (c, v) in columns.iter().zip(values) {
                m.insert(c.as_str().into(), to_dynamic(v));
            }
            Dynamic::from_map(m)
        })
        .collect()
}

/// The first column of the first row, or `()`.
pub fn first_value(rows: Rows) -> Dynamic {
    rows.rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .map(to_dynamic)
        .unwrap_or(Dynamic::UNIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rhai_values_as_parameters() {
        let three = Dynamic::from("three");
        assert_eq!(
            (three.shown(), three.kind(), three.to_text()),
            (
                "\"three\"".to_string(),
                "a string".to_string(),
                "three".to_string()
            )
        );
        let n = Dynamic::from_int(70000);
        assert_eq!(
            (n.shown(), n.kind(), n.to_int()),
            ("70000".into(), "an integer".into(), Some(70000))
        );
        assert_eq!(Dynamic::from_float(1.5).to_float(), Some(1.5));
        assert_eq!(Dynamic::from_int(1).to_float(), None);
        assert_eq!(Dynamic::from_bool(true).kind(), "a boolean");
        assert_eq!(Dynamic::from_array(vec![]).kind(), "an array");
        assert_eq!(Dynamic::from_map(Map::new()).kind(), "a map");
        assert!(Dynamic::UNIT.is_null());
    }

    #[test]
    fn rows_become_maps_of_rhai_values() {
        let rows = Rows {
            columns: vec![
                "n".into(),
                "lsn".into(),
                "j".into(),
                "none".into(),
                "a".into(),
            ],
            rows: vec![vec![
                Value::Int(7),
                Value::Lsn(crate::clients::postgres::PgLsn::from(0x1_0300_0060)),
                Value::Json(serde_json::json!({"k": [1, "x"]})),
                Value::Null,
                Value::Array(vec![Value::Text("x".into()), Value::Null]),
            ]],
        };
        let a = to_array(rows.clone());
        let m = a[0].read_lock::<Map>().unwrap();
        assert_eq!(m["n"].as_int().unwrap(), 7);
        assert_eq!(m["lsn"].to_string(), "1/3000060");
        assert_eq!(
            m["j"].read_lock::<Map>().unwrap()["k"].to_string(),
            "[1, \"x\"]"
        );
        assert!(m["none"].is_unit());
        assert_eq!(m["a"].to_string(), "[\"x\", ()]");
        assert_eq!(first_value(rows).as_int().unwrap(), 7);
        assert!(first_value(Rows::default()).is_unit());
    }
}
