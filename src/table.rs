//! Rows (arrays of maps) as a plain text table.

use rhai::{Array, Dynamic, Map};
use std::collections::VecDeque;
use std::sync::Mutex;

pub fn cell(v: &Dynamic) -> String {
    if v.is_unit() {
        return "".into();
    }
    v.to_string()
}

/// Renders rows with the columns of the first row, in its order.
pub fn render(rows: &Array) -> String {
    let maps: Vec<Map> = rows
        .iter()
        .filter_map(|r| r.read_lock::<Map>().map(|m| m.clone()))
        .collect();
    let cols: Vec<String> = maps
        .first()
        .map(|m| m.keys().map(|k| k.to_string()).collect())
        .unwrap_or_default();
    render_maps(&maps, cols)
}

/// Renders maps with `cols` first, then any key a later map adds.
fn render_maps(maps: &[Map], mut cols: Vec<String>) -> String {
    if maps.is_empty() {
        return "(no rows)\n".into();
    }
    for m in &maps[1..] {
        for k in m.keys() {
            if !cols.iter().any(|c| c == k.as_str()) {
                cols.push(k.to_string());
            }
        }
    }
    let cells: Vec<Vec<String>> = maps
        .iter()
        .map(|m| {
            cols.iter()
                .map(|c| m.get(c.as_str()).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    render_cells(&cols, &cells)
}

/// The column orders of recent query results. A Rhai map keeps its keys sorted, so rows that
/// reach a table as maps have lost the order of the query's columns; the primitive that made
/// them (`sql`) remembers that order here, and `render_ordered` puts it back for rows whose keys
/// are exactly the columns of a remembered result (the most recent such result decides). Rows
/// built by hand, or changed to other keys, show their keys sorted, as before.
#[derive(Debug, Default)]
pub struct ColumnOrders {
    recent: Mutex<VecDeque<Vec<String>>>,
}

impl ColumnOrders {
    /// How many results are remembered: a runbook prints a table of one of its last queries.
    const KEEP: usize = 64;

    /// Remembers a result's columns, in the query's order (a name given twice counts once, at
    /// its first place; a map keeps one value per key).
    pub fn remember(&self, columns: &[String]) {
        let mut order: Vec<String> = Vec::with_capacity(columns.len());
        for c in columns {
            if !order.contains(c) {
                order.push(c.clone());
            }
        }
        if order.len() < 2 {
            return;
        }
        let mut recent = self.recent.lock().unwrap();
        recent.retain(|o| !same_names(o, &order));
        recent.push_front(order);
        recent.truncate(Self::KEEP);
    }

    /// The remembered order of exactly these column names, if any.
    pub fn order_of(&self, names: &[String]) -> Option<Vec<String>> {
        let recent = self.recent.lock().unwrap();
        recent.iter().find(|o| same_names(o, names)).cloned()
    }
}

/// Whether two lists hold the same names (each list without repeats).
fn same_names(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// Like `render`, with the columns in a remembered query order when the first row's keys are
/// exactly a remembered result's columns (keys that later rows add come after them).
pub fn render_ordered(rows: &Array, orders: &ColumnOrders) -> String {
    let maps: Vec<Map> = rows
        .iter()
        .filter_map(|r| r.read_lock::<Map>().map(|m| m.clone()))
        .collect();
    let first: Vec<String> = maps
        .first()
        .map(|m| m.keys().map(|k| k.to_string()).collect())
        .unwrap_or_default();
    match orders.order_of(&first) {
        Some(order) => render_maps(&maps, order),
        None => render(rows),
    }
}

/// Rows as the REPL prints them: a table with the columns in their remembered order
/// (`render_ordered`); when a line of that table would be wider than `width`, records instead,
/// one field a line (as psql's expanded display), so that nothing wraps.
pub fn render_fit(rows: &Array, orders: &ColumnOrders, width: Option<usize>) -> String {
    let table = render_ordered(rows, orders);
    let Some(width) = width else {
        return table;
    };
    if table.lines().all(|l| l.chars().count() <= width) {
        return table;
    }
    let maps: Vec<Map> = rows
        .iter()
        .filter_map(|r| r.read_lock::<Map>().map(|m| m.clone()))
        .collect();
    // The columns as the table had them: its header line.
    let cols: Vec<String> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split(" | ")
        .map(|c| c.trim().to_string())
        .collect();
    records(&maps, &cols)
}

/// Maps as records: `-[ RECORD 1 ]-`, then `key | value` a line (a value's further lines
/// indented under it).
pub fn records(maps: &[Map], cols: &[String]) -> String {
    let key_w = cols.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (i, m) in maps.iter().enumerate() {
        out.push_str(&format!("-[ RECORD {} ]-\n", i + 1));
        let mut keys: Vec<String> = cols.to_vec();
        keys.extend(
            m.keys()
                .map(|k| k.to_string())
                .filter(|k| !cols.contains(k)),
        );
        for k in keys {
            let v = m.get(k.as_str()).map(cell).unwrap_or_default();
            let mut lines = v.lines();
            out.push_str(&format!(
                "{k:<key_w$} | {}\n",
                lines.next().unwrap_or_default()
            ));
            for l in lines {
                out.push_str(&format!("{:key_w$} | {l}\n", ""));
            }
        }
    }
    out
}

pub fn render_cells(cols: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = cols.iter().map(|c| c.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |vals: &[String]| -> String {
        vals.iter()
            .enumerate()
            .map(|(i, v)| format!("{:<w$}", v, w = widths[i]))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out = line(cols);
    out.push('\n');
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut a = Map::new();
        a.insert("name".into(), "pg-bases2".into());
        a.insert("ok".into(), Dynamic::from_bool(true));
        let mut b = Map::new();
        b.insert("name".into(), "x".into());
        b.insert("ok".into(), Dynamic::UNIT);
        let t = render(&vec![Dynamic::from(a), Dynamic::from(b)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "name      | ok");
        assert_eq!(lines[1], "----------+-----");
        assert_eq!(lines[2], "pg-bases2 | true");
        assert_eq!(lines[3], "x         |");
    }

    fn row(pairs: &[(&str, i64)]) -> Dynamic {
        let mut m = Map::new();
        for (k, v) in pairs {
            m.insert((*k).into(), Dynamic::from_int(*v));
        }
        Dynamic::from_map(m)
    }

    fn names(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn remembered_query_order_comes_back() {
        // `select 3 as c, 1 as a, 2 as b`: the map sorts its keys, the table does not.
        let orders = ColumnOrders::default();
        let rows = vec![row(&[("c", 3), ("a", 1), ("b", 2)])];
        assert_eq!(render(&rows).lines().next().unwrap(), "a | b | c");
        assert_eq!(
            render_ordered(&rows, &orders).lines().next().unwrap(),
            "a | b | c",
            "nothing remembered: sorted, as before"
        );
        orders.remember(&names(&["c", "a", "b"]));
        let t = render_ordered(&rows, &orders);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "c | a | b");
        assert_eq!(lines[2], "3 | 1 | 2");

        // The most recent result with these columns decides.
        orders.remember(&names(&["b", "c", "a"]));
        assert_eq!(
            render_ordered(&rows, &orders).lines().next().unwrap(),
            "b | c | a"
        );
        // Other keys than any result's: sorted.
        let other = vec![row(&[("c", 3), ("a", 1)])];
        assert_eq!(
            render_ordered(&other, &orders).lines().next().unwrap(),
            "a | c"
        );
        // A key a later row adds comes last.
        let more = vec![
            row(&[("c", 3), ("a", 1), ("b", 2)]),
            row(&[("a", 1), ("z", 0)]),
        ];
        assert_eq!(
            render_ordered(&more, &orders).lines().next().unwrap(),
            "b | c | a | z"
        );
        assert_eq!(render_ordered(&vec![], &orders), "(no rows)\n");
    }

    #[test]
    fn column_orders_are_bounded_and_ignore_repeats() {
        let orders = ColumnOrders::default();
        orders.remember(&names(&["a", "b", "a"]));
        assert_eq!(
            orders.order_of(&names(&["b", "a"])),
            Some(names(&["a", "b"]))
        );
        // One column has no order to keep.
        orders.remember(&names(&["x"]));
        assert_eq!(orders.order_of(&names(&["x"])), None);
        for i in 0..ColumnOrders::KEEP {
            orders.remember(&names(&["k", &format!("c{i}")]));
        }
        assert_eq!(orders.order_of(&names(&["b", "a"])), None, "forgotten");
        assert_eq!(orders.recent.lock().unwrap().len(), ColumnOrders::KEEP);
    }
}
