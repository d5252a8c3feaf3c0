//! Validation of API requests, turning client input into typed requests or errno answers.
//!
//! Bodies are read as raw bytes and checked field by field, so that anything a client sends
//! (not JSON, wrong types, missing fields) becomes an errno 1 answer with a precise message
//! instead of a framework rejection or a panic.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::jobs::ImageSpec;

/// Largest `limit` ListCIMG accepts.
pub const MAX_LIST_LIMIT: u64 = 1000;
/// `originImageUuid` that the simulator treats as "source image not found" (errno 41026).
pub const MISSING_IMAGE_UUID: &str = "00000000000000000000000000000000";

/// An errno answer: what the envelope's `errno` and `errmsg` will say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) errno: u32,
    pub(crate) errmsg: String,
}

impl ApiError {
    /// errno 1: the request itself is wrong.
    pub(crate) fn invalid(detail: impl std::fmt::Display) -> ApiError {
        ApiError {
            errno: 1,
            errmsg: format!("请求参数错误: {detail}"),
        }
    }

    /// errno 2: transient system error.
    pub(crate) fn system() -> ApiError {
        ApiError {
            errno: 2,
            errmsg: "系统错误，请稍后再试".to_string(),
        }
    }

    /// errno 4: authentication failed.
    pub(crate) fn auth() -> ApiError {
        ApiError {
            errno: 4,
            errmsg: "认证失败".to_string(),
        }
    }

    /// errno 41026: the source image could not be found.
    pub(crate) fn image_not_found() -> ApiError {
        ApiError {
            errno: 41026,
            errmsg: "查询镜像失败".to_string(),
        }
    }
}

/// A valid ImportCIMG request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImportRequest {
    /// Target region.
    pub(crate) region: String,
    pub(crate) images: Vec<ImageSpec>,
}

/// A valid ListCIMG request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListRequest {
    pub(crate) region: String,
    pub(crate) start: usize,
    pub(crate) limit: usize,
    /// Names to match exactly; empty means no filter.
    pub(crate) names: HashSet<String>,
}

/// A valid JobResult request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobResultRequest {
    pub(crate) region: String,
    /// The uuids asked for, in order, empty entries removed.
    pub(crate) job_uuids: Vec<String>,
}

/// Parses and validates an ImportCIMG body (`cimg` as an array or as a single object).
pub(crate) fn import_request(body: &[u8]) -> Result<ImportRequest, ApiError> {
    let obj = json_object(body)?;
    let region = required_str(&obj, "regionId", "")?;
    let inputs: Vec<&Value> = match obj.get("cimg") {
        Some(Value::Array(items)) if !items.is_empty() => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => {
            return Err(ApiError::invalid(
                "cimg must be a non-empty array of CIMGInput",
            ))
        }
    };
    let mut images = Vec::with_capacity(inputs.len());
    let mut source_missing = false;
    for (index, input) in inputs.into_iter().enumerate() {
        let (spec, origin_uuid) = cimg_input(index, input)?;
        source_missing |= origin_uuid == MISSING_IMAGE_UUID;
        images.push(spec);
    }
    if source_missing {
        return Err(ApiError::image_not_found());
    }
    Ok(ImportRequest { region, images })
}

/// Validates one CIMGInput; returns the image to create and its origin uuid.
fn cimg_input(index: usize, input: &Value) -> Result<(ImageSpec, String), ApiError> {
    let ctx = format!("cimg[{index}].");
    let obj = input
        .as_object()
        .ok_or_else(|| ApiError::invalid(format!("cimg[{index}] must be an object")))?;
    let name = required_str(obj, "name", &ctx)?;
    let origin_uuid = required_str(obj, "originImageUuid", &ctx)?;
    if origin_uuid.len() != 32 || !origin_uuid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(format!(
            "{ctx}originImageUuid must be 32 hex digits"
        )));
    }
    required_str(obj, "originRegionId", &ctx)?;
    let description = match obj.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "{ctx}description must be a string"
            )))
        }
    };
    Ok((ImageSpec { name, description }, origin_uuid))
}

/// Parses and validates a ListCIMG body.
pub(crate) fn list_request(body: &[u8]) -> Result<ListRequest, ApiError> {
    let obj = json_object(body)?;
    let region = required_str(&obj, "regionId", "")?;
    let start = required_u64(&obj, "start")?;
    let limit = required_u64(&obj, "limit")?;
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1..={MAX_LIST_LIMIT}"
        )));
    }
    Ok(ListRequest {
        region,
        start: usize::try_from(start).unwrap_or(usize::MAX),
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
        names: condition_names(obj.get("condition"))?,
    })
}

/// Reads `condition.names`: absent, null or empty means no filter.
fn condition_names(condition: Option<&Value>) -> Result<HashSet<String>, ApiError> {
    let names = match condition {
        None | Some(Value::Null) => return Ok(HashSet::new()),
        Some(Value::Object(cond)) => cond.get("names"),
        Some(_) => return Err(ApiError::invalid("condition must be an object")),
    };
    match names {
        None | Some(Value::Null) => Ok(HashSet::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|n| n.as_str().map(str::to_string))
            .collect::<Option<HashSet<String>>>()
            .ok_or_else(|| ApiError::invalid("condition.names must be an array of strings")),
        Some(_) => Err(ApiError::invalid(
            "condition.names must be an array of strings",
        )),
    }
}

/// Parses and validates the query string of a JobResult call.
pub(crate) fn job_result_request(query: Option<&str>) -> Result<JobResultRequest, ApiError> {
    let mut region = None;
    let mut uuids = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "regionId" if region.is_none() => region = Some(value.into_owned()),
            "jobUuids" if uuids.is_none() => uuids = Some(value.into_owned()),
            _ => {}
        }
    }
    let region = region
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("regionId is required"))?;
    let job_uuids: Vec<String> = uuids
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    if job_uuids.is_empty() {
        return Err(ApiError::invalid("jobUuids is required"));
    }
    Ok(JobResultRequest { region, job_uuids })
}

/// The body as a JSON object.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(ApiError::invalid("body must be a JSON object")),
        Err(err) => Err(ApiError::invalid(format!("body is not JSON: {err}"))),
    }
}

/// A required, non-blank string field (returned as sent).
fn required_str(obj: &Map<String, Value>, field: &str, ctx: &str) -> Result<String, ApiError> {
    match obj.get(field) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        _ => Err(ApiError::invalid(format!(
            "{ctx}{field} is required (non-empty string)"
        ))),
    }
}

/// A required non-negative integer field.
fn required_u64(obj: &Map<String, Value>, field: &str) -> Result<u64, ApiError> {
    obj.get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| ApiError::invalid(format!("{field} is required (non-negative integer)")))
}
