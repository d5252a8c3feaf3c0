//! What the API answers, parsed defensively.
//!
//! The public documentation contradicts itself (ListCIMG's `data` is an object where every
//! other endpoint promises an array), and fields may be missing or typed loosely. Everything
//! here ignores unknown fields, tolerates missing optional ones, and accepts numbers as
//! integers or floats and booleans as `true`/`false`, `0`/`1` or strings of them.

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// One asynchronous job, as ImportCIMG returns it and JobResult reports it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Job {
    /// The job's id; JobResult is asked about it.
    #[serde(deserialize_with = "lenient_string")]
    pub job_uuid: String,
    /// For an import, the uuid of the new image in the target region.
    #[serde(deserialize_with = "lenient_string")]
    pub resource_uuid: String,
    /// Free-form status text such as `Processing`.
    #[serde(deserialize_with = "lenient_string")]
    pub status: String,
    /// 0 to 100.
    #[serde(deserialize_with = "lenient_f64")]
    pub progress: f64,
    /// The job has ended, one way or the other.
    #[serde(deserialize_with = "lenient_bool")]
    pub done: bool,
    /// Meaningful once `done`: whether it ended well.
    #[serde(deserialize_with = "lenient_bool")]
    pub success: bool,
    /// Failure reason once done and not successful.
    #[serde(deserialize_with = "lenient_string")]
    pub result: String,
    /// The `uuid` field some answers carry beside `jobUuid`.
    #[serde(deserialize_with = "lenient_string")]
    pub uuid: String,
}

impl Job {
    /// The job's uuid, from `jobUuid` or, failing that, `uuid`.
    pub fn id(&self) -> &str {
        if self.job_uuid.is_empty() {
            &self.uuid
        } else {
            &self.job_uuid
        }
    }
}

/// One custom image, as ListCIMG lists it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Image {
    /// The image's uuid.
    #[serde(deserialize_with = "lenient_string")]
    pub cimg_uuid: String,
    /// The image's name.
    #[serde(deserialize_with = "lenient_string")]
    pub name: String,
    /// Creation time in milliseconds since the Unix epoch.
    #[serde(deserialize_with = "lenient_i64")]
    pub create_time: i64,
    /// Such as `Ready`.
    #[serde(deserialize_with = "lenient_string")]
    pub status: String,
    /// Shared images cannot be copied.
    #[serde(deserialize_with = "lenient_bool")]
    pub is_shared: bool,
    /// The job running on this image, present only while one runs.
    pub job: Option<Job>,
}

/// A page of ListCIMG.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImagePage {
    /// All matching images, not only this page's.
    pub count: u64,
    /// This page.
    pub items: Vec<Image>,
}

impl ImagePage {
    /// Reads `{count, items}` (what the endpoint really answers) or a bare array (what the
    /// documentation promises).
    pub(crate) fn from_data(data: Value) -> Result<ImagePage, serde_json::Error> {
        match data {
            Value::Array(items) => {
                let items: Vec<Image> = serde_json::from_value(Value::Array(items))?;
                Ok(ImagePage {
                    count: items.len() as u64,
                    items,
                })
            }
            Value::Object(mut object) => {
                let items: Vec<Image> = match object.remove("items") {
                    Some(Value::Null) | None => Vec::new(),
                    Some(items) => serde_json::from_value(items)?,
                };
                let count = object
                    .get("count")
                    .and_then(number_of)
                    .map_or(items.len() as u64, |n| n.max(0.0) as u64);
                Ok(ImagePage { count, items })
            }
            Value::Null => Ok(ImagePage::default()),
            other => Err(serde::de::Error::custom(format!(
                "expected a list of images, found {}",
                kind_of(&other)
            ))),
        }
    }
}

/// The jobs of an answer's `data`, read straight from the answer when it is an array (as
/// documented, and as every JobResult answer of a poll round is); any other shape goes
/// through [`jobs_from_data`].
#[derive(Debug, Default)]
pub(crate) struct JobList(pub(crate) Vec<Job>);

impl<'de> Deserialize<'de> for JobList {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(JobListVisitor)
    }
}

struct JobListVisitor;

impl<'de> Visitor<'de> for JobListVisitor {
    type Value = JobList;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of jobs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JobList, A::Error> {
        let mut jobs = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(job) = seq.next_element::<Job>()? {
            jobs.push(job);
        }
        Ok(JobList(jobs))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<JobList, A::Error> {
        let object = Value::deserialize(MapAccessDeserializer::new(map))?;
        jobs_from_data(object)
            .map(JobList)
            .map_err(de::Error::custom)
    }

    fn visit_unit<E: de::Error>(self) -> Result<JobList, E> {
        Ok(JobList::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<JobList, E> {
        Ok(JobList::default())
    }
}

/// Reads a list of jobs from `data`: an array (as documented), a single object, or an
/// object wrapping `items`.
pub(crate) fn jobs_from_data(data: Value) -> Result<Vec<Job>, serde_json::Error> {
    match data {
        Value::Array(_) => serde_json::from_value(data),
        Value::Null => Ok(Vec::new()),
        Value::Object(mut object) => match object.remove("items") {
            Some(items) => serde_json::from_value(items),
            None => Ok(vec![serde_json::from_value(Value::Object(object))?]),
        },
        other => Err(serde::de::Error::custom(format!(
            "expected a list of jobs, found {}",
            kind_of(&other)
        ))),
    }
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn lenient_f64<'de, D: Deserializer<'de>>(de: D) -> Result<f64, D::Error> {
    let value = Value::deserialize(de)?;
    Ok(number_of(&value).filter(|n| n.is_finite()).unwrap_or(0.0))
}

fn lenient_i64<'de, D: Deserializer<'de>>(de: D) -> Result<i64, D::Error> {
    let value = Value::deserialize(de)?;
    Ok(number_of(&value).map_or(0, |n| n as i64))
}

fn lenient_bool<'de, D: Deserializer<'de>>(de: D) -> Result<bool, D::Error> {
    let value = Value::deserialize(de)?;
    Ok(match &value {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1"),
        _ => number_of(&value).is_some_and(|n| n != 0.0),
    })
}

fn lenient_string<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    let value = Value::deserialize(de)?;
    Ok(match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn job_fields_are_read_whatever_their_json_type() {
        let cases = [
            (
                "documented form",
                json!({"jobUuid": "a", "progress": 12.5, "done": false, "success": false}),
                12.5,
                false,
            ),
            (
                "integer progress",
                json!({"jobUuid": "a", "progress": 100, "done": true, "success": true}),
                100.0,
                true,
            ),
            (
                "strings everywhere",
                json!({"jobUuid": "a", "progress": "40", "done": "true", "success": "1"}),
                40.0,
                true,
            ),
            (
                "numbers for bools",
                json!({"jobUuid": "a", "progress": 1, "done": 1, "success": 0}),
                1.0,
                true,
            ),
            ("missing fields", json!({"uuid": "a"}), 0.0, false),
            (
                "nulls",
                json!({"jobUuid": "a", "progress": null, "done": null, "result": null}),
                0.0,
                false,
            ),
        ];
        for (name, value, progress, done) in cases {
            let job: Job = serde_json::from_value(value).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(job.id(), "a", "{name}");
            assert_eq!(job.progress, progress, "{name}");
            assert_eq!(job.done, done, "{name}");
        }
    }

    #[test]
    fn job_lists_come_in_three_shapes() {
        let one = json!({"jobUuid": "a"});
        let cases = [
            ("array", json!([one.clone(), {"jobUuid": "b"}]), 2),
            ("single object", one.clone(), 1),
            ("object with items", json!({"count": 1, "items": [one]}), 1),
            ("empty array", json!([]), 0),
            ("null", Value::Null, 0),
        ];
        for (name, data, len) in cases {
            let text = data.to_string();
            assert_eq!(jobs_from_data(data).unwrap().len(), len, "{name}");
            let direct: JobList = serde_json::from_str(&text).unwrap();
            assert_eq!(direct.0.len(), len, "{name}, read directly");
        }
        assert!(jobs_from_data(json!("nope")).is_err());
        assert!(serde_json::from_str::<JobList>("\"nope\"").is_err());
    }

    #[test]
    fn image_pages_come_as_object_or_array() {
        let item = json!({"cimgUuid": "c", "name": "web", "createTime": 1700000000000_i64,
                          "status": "Ready", "isShared": false, "extra": [1, 2]});
        let page = ImagePage::from_data(json!({"count": 7, "items": [item.clone()]})).unwrap();
        assert_eq!(page.count, 7);
        assert_eq!(page.items[0].name, "web");
        assert_eq!(page.items[0].create_time, 1_700_000_000_000);
        let page = ImagePage::from_data(json!([item])).unwrap();
        assert_eq!(page.count, 1);
        assert!(ImagePage::from_data(json!(3)).is_err());
    }
}
