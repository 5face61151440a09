//! Rows (arrays of maps) as a plain text table.

use rhai::{Array, Dynamic, Map};

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
    if maps.is_empty() {
        return "(no rows)\n".into();
    }
    let mut cols: Vec<String> = maps[0].keys().map(|k| k.to_string()).collect();
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
}
