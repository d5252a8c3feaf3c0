//! Checks a queued row before anything is sent: a row that is not a valid request is
//! `rejected` with a reason the operator can act on, and never reaches the API.

use crate::api::ImportSpec;
use crate::store::RequestFields;

/// Longest image name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Longest description accepted, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 256;

/// Longest region id accepted, in characters.
pub const MAX_REGION_CHARS: usize = 32;

/// Turns an operator's row into what the API is sent, or says why it cannot be.
///
/// `allowed_regions` empty means any region id made of `a-z`, `0-9` and `-`; otherwise
/// both regions must be in the list.
///
/// # Errors
///
/// The first problem found, as a sentence naming the column and the value.
pub fn check(fields: RequestFields, allowed_regions: &[String]) -> Result<ImportSpec, String> {
    let RequestFields {
        region_id,
        name,
        origin_image_uuid,
        origin_region_id,
        description,
    } = fields;

    check_region("region_id", &region_id, allowed_regions)?;
    check_region("origin_region_id", &origin_region_id, allowed_regions)?;
    if region_id == origin_region_id {
        return Err(format!(
            "`region_id` and `origin_region_id` are both `{region_id}`: an import copies an \
             image to another region"
        ));
    }
    check_text("name", &name, MAX_NAME_CHARS)?;
    if origin_image_uuid.len() != 32 || !origin_image_uuid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "`origin_image_uuid` `{}` is not a uuid of 32 hex characters",
            shorten(&origin_image_uuid)
        ));
    }
    let description = match description {
        Some(text) if text.is_empty() => None,
        Some(text) => {
            check_text("description", &text, MAX_DESCRIPTION_CHARS)?;
            Some(text)
        }
        None => None,
    };
    Ok(ImportSpec {
        region_id,
        name,
        origin_image_uuid: origin_image_uuid.to_ascii_lowercase(),
        origin_region_id,
        description,
    })
}

fn check_region(column: &str, value: &str, allowed: &[String]) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("`{column}` is empty"));
    }
    if value.chars().count() > MAX_REGION_CHARS {
        return Err(format!(
            "`{column}` `{}` is longer than {MAX_REGION_CHARS} characters: not a region id",
            shorten(value)
        ));
    }
    if !allowed.is_empty() {
        if allowed.iter().any(|region| region == value) {
            return Ok(());
        }
        return Err(format!(
            "`{column}` `{}` is not one of the allowed regions ({})",
            shorten(value),
            allowed.join(", ")
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "`{column}` `{}` does not look like a region id such as `gz` or `bj`",
            shorten(value)
        ));
    }
    Ok(())
}

fn check_text(column: &str, value: &str, max_chars: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("`{column}` is empty"));
    }
    if value.trim() != value {
        return Err(format!(
            "`{column}` `{}` starts or ends with spaces",
            shorten(value)
        ));
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(format!(
            "`{column}` is {chars} characters long; at most {max_chars} are allowed"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "`{column}` contains control characters such as a newline or tab"
        ));
    }
    Ok(())
}

/// A value short enough to quote in a message.
fn shorten(value: &str) -> String {
    const KEEP: usize = 40;
    if value.chars().count() <= KEEP {
        value.to_owned()
    } else {
        format!("{}…", value.chars().take(KEEP).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> RequestFields {
        RequestFields {
            region_id: "gz".into(),
            name: "web-2026-12".into(),
            origin_image_uuid: "4a48f88391134a01befe88ff98b68af8".into(),
            origin_region_id: "bj".into(),
            description: None,
        }
    }

    #[test]
    fn a_plain_row_is_accepted() {
        let spec = check(fields(), &[]).unwrap();
        assert_eq!(spec.name, "web-2026-12");
        assert_eq!(spec.description, None);
    }

    #[test]
    fn bad_rows_are_refused_with_the_column_named() {
        type Edit = fn(&mut RequestFields);
        let cases: &[(&str, Edit, &str)] = &[
            ("empty name", |f| f.name = String::new(), "`name` is empty"),
            ("blank name", |f| f.name = "   ".into(), "`name` is empty"),
            (
                "long name",
                |f| f.name = "x".repeat(129),
                "`name` is 129 characters",
            ),
            (
                "newline in name",
                |f| f.name = "a\nb".into(),
                "control characters",
            ),
            (
                "padded name",
                |f| f.name = " web ".into(),
                "starts or ends with spaces",
            ),
            (
                "long description",
                |f| f.description = Some("d".repeat(300)),
                "`description` is 300",
            ),
            (
                "short uuid",
                |f| f.origin_image_uuid = "4a48".into(),
                "32 hex",
            ),
            (
                "non-hex uuid",
                |f| f.origin_image_uuid = "z".repeat(32),
                "32 hex",
            ),
            (
                "dashed uuid",
                |f| f.origin_image_uuid = "4a48f883-9113-4a01-befe-88ff98b68af8".into(),
                "32 hex",
            ),
            (
                "empty region",
                |f| f.region_id = String::new(),
                "`region_id` is empty",
            ),
            (
                "odd region",
                |f| f.region_id = "Guang Zhou".into(),
                "does not look like a region",
            ),
            (
                "empty origin region",
                |f| f.origin_region_id = String::new(),
                "`origin_region_id` is empty",
            ),
            (
                "same regions",
                |f| f.origin_region_id = "gz".into(),
                "both `gz`",
            ),
        ];
        for (name, edit, needle) in cases {
            let mut row = fields();
            edit(&mut row);
            let err = check(row, &[]).expect_err(name);
            assert!(err.contains(needle), "{name}: `{err}` lacks `{needle}`");
        }
    }

    #[test]
    fn allow_list_limits_regions_when_set() {
        let allowed = vec!["gz".to_owned(), "bj".to_owned()];
        assert!(check(fields(), &allowed).is_ok());
        let mut row = fields();
        row.region_id = "sh".into();
        assert!(check(row, &allowed)
            .unwrap_err()
            .contains("not one of the allowed regions"));
    }

    #[test]
    fn empty_description_is_no_description() {
        let mut row = fields();
        row.description = Some(String::new());
        assert_eq!(check(row, &[]).unwrap().description, None);
    }
}
