//! Plain-text tables of the operator views, aligned for a terminal.

use std::fmt::Write;

use crate::store::{HistoryRow, StatusRow};

/// Renders rows under headers, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, width) in cells.zip(&widths) {
            let _ = write!(text, "{cell:<width$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut rule.iter().map(String::as_str));
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// The `request_status` view as a table.
pub fn status_table(rows: &[StatusRow]) -> String {
    let headers = [
        "id",
        "state",
        "region",
        "name",
        "from",
        "job",
        "progress",
        "last error",
        "updated",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.id.to_string(),
                row.state.clone(),
                row.region_id.clone(),
                row.name.clone(),
                row.origin_region_id.clone(),
                row.job_uuid.clone().unwrap_or_default(),
                row.progress.map(|p| format!("{p:.0}%")).unwrap_or_default(),
                row.last_error.clone().unwrap_or_default(),
                row.updated_at.clone(),
            ]
        })
        .collect();
    table(&headers, &cells)
}

/// One request's timeline as a table.
pub fn history_table(rows: &[HistoryRow]) -> String {
    let headers = [
        "at",
        "event",
        "state",
        "progress",
        "detail",
        "api requestId",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut detail = row.detail.clone().unwrap_or_default();
            if let Some(errno) = row.errno {
                let _ = write!(detail, " (errno {errno}");
                if let Some(errmsg) = &row.errmsg {
                    let _ = write!(detail, ": {errmsg}");
                }
                detail.push(')');
            }
            vec![
                row.at.clone(),
                row.kind.clone(),
                row.state.clone(),
                row.progress.map(|p| format!("{p:.0}%")).unwrap_or_default(),
                detail,
                row.api_request_id.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&headers, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let text = table(
            &["id", "name"],
            &[
                vec!["1".into(), "web".into()],
                vec!["10".into(), "a".into()],
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["id  name", "--  ----", "1   web", "10  a"]);
    }
}
