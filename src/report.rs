//! Plain-text tables of the operator views, aligned for a terminal, and the same rows as
//! JSON for scripts (keys named as the views' columns).

use std::fmt::Write;

use serde_json::{json, Value};

use crate::store::operator::{JobRecord, RequestRecord};
use crate::store::{HistoryRow, StatusRow};

/// Longest cell a table shows, in characters; a longer one (a name or an error pasted a
/// thousand times over) is cut, ending in `…`. `show` prints the request's own columns whole.
const MAX_CELL: usize = 300;

/// Renders rows under headers, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| clip(&printable(cell))).collect())
        .collect();
    let rows = &rows;
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
            text.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count()) + 2;
            text.extend(std::iter::repeat_n(' ', pad));
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

/// `text` cut to [`MAX_CELL`] characters.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_CELL - 1) {
        Some((end, _)) if text.len() > end + 1 => format!("{}…", &text[..end]),
        _ => text.to_owned(),
    }
}

/// Whether a character would change how a terminal shows what follows: a control
/// character (an escape sequence, a newline) or a bidirectional override that reverses
/// the text around it.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// A value as it may reach a terminal: control characters (an escape sequence or a
/// newline typed into a name) and bidirectional overrides are shown escaped, never sent as
/// they are.
pub fn printable(text: &str) -> String {
    if !text.chars().any(is_unsafe) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if is_unsafe(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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

/// Labelled lines, `label  value`, labels padded to the longest; pairs with an empty value
/// are left out.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let shown: Vec<&(&str, String)> = pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    let width = shown
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in shown {
        let _ = writeln!(out, "{label:<width$}  {}", printable(value));
    }
    out
}

/// One request's stored columns, as labelled lines.
pub fn request_fields(request: &RequestRecord) -> String {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let api_error = match (request.last_errno, &request.last_errmsg) {
        (Some(errno), Some(errmsg)) => format!("errno {errno}: {errmsg}"),
        (Some(errno), None) => format!("errno {errno}"),
        (None, _) => String::new(),
    };
    fields(&[
        ("id", request.id.to_string()),
        ("state", request.state.clone()),
        ("region", request.region_id.clone()),
        ("name", request.name.clone()),
        (
            "from",
            format!("{}/{}", request.origin_region_id, request.origin_image_uuid),
        ),
        ("description", text(&request.description)),
        ("attempts", request.attempts.to_string()),
        ("reason", text(&request.reason)),
        ("api error", api_error),
        ("api requestId", text(&request.last_api_request_id)),
        ("created", request.created_at.clone()),
        ("updated", request.updated_at.clone()),
        ("first attempt", text(&request.first_attempt_at)),
        (
            "next attempt",
            if request.state == "queued" {
                request.next_attempt_at.clone()
            } else {
                String::new()
            },
        ),
    ])
}

/// The jobs of one request as a table, oldest first.
pub fn jobs_table(jobs: &[JobRecord]) -> String {
    let headers = [
        "job",
        "status",
        "progress",
        "ended",
        "new image",
        "result",
        "last checked",
    ];
    let cells: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            let ended = match (job.done, job.success) {
                (false, _) => "no",
                (true, true) => "succeeded",
                (true, false) => "failed",
            };
            vec![
                job.job_uuid.clone(),
                job.status.clone().unwrap_or_default(),
                format!("{:.0}%", job.progress),
                ended.to_owned(),
                job.resource_uuid.clone().unwrap_or_default(),
                job.result.clone().unwrap_or_default(),
                job.last_checked_at.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&headers, &cells)
}

/// One `request_status` row as JSON, keyed by the view's column names.
pub fn status_json(row: &StatusRow) -> Value {
    json!({
        "id": row.id,
        "state": row.state,
        "region_id": row.region_id,
        "name": row.name,
        "origin_region_id": row.origin_region_id,
        "job_uuid": row.job_uuid,
        "resource_uuid": row.resource_uuid,
        "progress": row.progress,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

/// One `request_history` row as JSON, keyed by the view's column names.
pub fn history_json(row: &HistoryRow) -> Value {
    json!({
        "at": row.at,
        "kind": row.kind,
        "state": row.state,
        "job_uuid": row.job_uuid,
        "progress": row.progress,
        "detail": row.detail,
        "errno": row.errno,
        "errmsg": row.errmsg,
        "api_request_id": row.api_request_id,
    })
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

    #[test]
    fn fields_are_aligned_and_empty_ones_left_out() {
        let text = fields(&[
            ("id", "7".into()),
            ("description", String::new()),
            ("state", "queued".into()),
        ]);
        assert_eq!(text, "id     7\nstate  queued\n");
    }

    #[test]
    fn what_could_steer_a_terminal_is_shown_escaped() {
        let typed = "tab\tnl\nesc\u{1b}[31mred \u{202E}desrever";
        let want = "tab\\tnl\\nesc\\u{1b}[31mred \\u{202e}desrever";
        assert_eq!(printable(typed), want);
        assert_eq!(fields(&[("name", typed.into())]), format!("name  {want}\n"));
        let table = table(&["name"], &[vec![typed.into()]]);
        assert_eq!(table.lines().nth(2), Some(want));
    }

    #[test]
    fn a_huge_cell_is_cut_and_cannot_break_the_table() {
        let huge = "b".repeat(1_000_000);
        let text = table(&["id", "name"], &[vec!["1".into(), huge]]);
        let row = text.lines().nth(2).unwrap();
        assert_eq!(row.chars().count(), "1   ".len() + MAX_CELL);
        assert!(row.ends_with("b…"), "{row}");
    }
}
