//! The ImportCIMG API client: every HTTP call the daemon makes lives here.
//!
//! One `reqwest` client (rustls, connection pooling) is built at start and shared. Each
//! call sends the bearer token, waits at most the configured timeouts, checks `errno`,
//! keeps the `requestId`, and turns every other outcome into an [`ApiError`] whose
//! [`ApiError::disposition`] tells the caller what it means.

mod error;
mod model;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

pub use error::{classify_errno, ApiError, Disposition, Endpoint};
pub use model::{Image, ImagePage, Job};

use model::JobList;

use crate::config::{ApiSettings, Token};

/// Longest body excerpt kept from an answer that is not the API's JSON.
const EXCERPT_CHARS: usize = 200;

/// One image to copy, in the API's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSpec {
    /// Target region: where the copy is created.
    pub region_id: String,
    /// Name of the new image.
    pub name: String,
    /// Uuid of the source image.
    pub origin_image_uuid: String,
    /// Region of the source image.
    pub origin_region_id: String,
    /// Optional description of the new image.
    pub description: Option<String>,
}

/// A successful answer: its data and the API's id of the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    /// What `data` held, parsed.
    pub data: T,
    /// `requestId`, kept with every outcome recorded.
    pub request_id: String,
}

/// Client of the three endpoints the daemon uses.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base_url: String,
    /// Shared by every clone: no call leaves before this instant. Set from `Retry-After`,
    /// which speaks for the whole account, not for the one call that got it.
    not_before: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The envelope every answer comes in, without its `data`: read first, so that `data`
/// is only read, straight into its endpoint's type, when `errno` says there is one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    errno: Option<Value>,
    #[serde(default)]
    errmsg: Option<Value>,
    #[serde(default)]
    request_id: Option<Value>,
}

/// The `data` of an answer whose `errno` is 0 (absent: the type's default).
#[derive(Debug, Deserialize)]
struct Data<T: Default> {
    #[serde(default)]
    data: T,
}

impl ApiClient {
    /// Builds the client once; its connections are reused by every call.
    ///
    /// # Errors
    ///
    /// The token cannot be put in a header, or the TLS stack cannot start.
    pub fn new(settings: &ApiSettings, token: &Token) -> anyhow::Result<ApiClient> {
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                anyhow::anyhow!("the API token contains characters not allowed in a header")
            })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);

        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("cimg-importd/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ApiClient {
            http,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            not_before: Arc::default(),
        })
    }

    /// Asks for one image to be copied into `spec.region_id`, in the documented form
    /// (`regionId` plus `cimg` as a one-element array).
    ///
    /// # Errors
    ///
    /// Any failure; for this endpoint a [`Disposition::Unknown`] one means the image may
    /// exist. An `errno` 0 answer without a job is [`ApiError::Malformed`].
    pub async fn import_cimg(&self, spec: &ImportSpec) -> Result<Answer<Job>, ApiError> {
        let mut cimg = json!({
            "name": spec.name,
            "originImageUuid": spec.origin_image_uuid,
            "originRegionId": spec.origin_region_id,
        });
        if let Some(description) = &spec.description {
            cimg["description"] = json!(description);
        }
        let body = json!({ "regionId": spec.region_id, "cimg": [cimg] });
        let endpoint = Endpoint::ImportCimg;
        let request = self
            .http
            .post(self.url("/dicloud/i/storage/cimg/import"))
            .json(&body);
        let answer: Answer<JobList> = self.call(endpoint, request).await?;
        match answer.data.0.into_iter().find(|job| !job.id().is_empty()) {
            Some(job) => Ok(Answer {
                data: job,
                request_id: answer.request_id,
            }),
            None => Err(malformed(
                endpoint,
                "errno 0 but no job in the answer".into(),
                &answer.request_id,
            )),
        }
    }

    /// Asks for the state of several jobs of one region in one call. The answer may
    /// leave some out; callers must not assume one job per uuid asked.
    ///
    /// # Errors
    ///
    /// Any failure; none of them means a job has ended.
    pub async fn job_results(
        &self,
        region_id: &str,
        job_uuids: &[String],
    ) -> Result<Answer<Vec<Job>>, ApiError> {
        let endpoint = Endpoint::JobResult;
        let joined = job_uuids.join(",");
        let request = self
            .http
            .get(self.url("/dicloud/i/result"))
            .query(&[("regionId", region_id), ("jobUuids", joined.as_str())]);
        let answer: Answer<JobList> = self.call(endpoint, request).await?;
        Ok(Answer {
            data: answer.data.0,
            request_id: answer.request_id,
        })
    }

    /// Lists the custom images of a region whose name is one of `names` (all of them when
    /// `names` is empty), one page at a time.
    ///
    /// # Errors
    ///
    /// Any failure.
    pub async fn list_cimg(
        &self,
        region_id: &str,
        names: &[String],
        start: u64,
        limit: u64,
    ) -> Result<Answer<ImagePage>, ApiError> {
        let endpoint = Endpoint::ListCimg;
        let mut body = json!({ "regionId": region_id, "start": start, "limit": limit });
        if !names.is_empty() {
            body["condition"] = json!({ "names": names });
        }
        let request = self
            .http
            .post(self.url("/dicloud/i/storage/cimg/list"))
            .json(&body);
        let answer: Answer<Value> = self.call(endpoint, request).await?;
        let page = ImagePage::from_data(answer.data)
            .map_err(|err| malformed(endpoint, err.to_string(), &answer.request_id))?;
        Ok(Answer {
            data: page,
            request_id: answer.request_id,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends one request and reads the envelope, then `data` as `T`: transport errors, HTTP
    /// errors, errno and unreadable data all come back as [`ApiError`]; `Ok` means errno 0.
    async fn call<T: DeserializeOwned + Default>(
        &self,
        endpoint: Endpoint,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer<T>, ApiError> {
        self.wait_for_retry_after().await;
        let started = Instant::now();
        let result = self.send(endpoint, request).await;
        let outcome = result.as_ref().err().map_or("ok", ApiError::kind);
        metrics::counter!(crate::metrics::API_CALLS, "endpoint" => endpoint.name(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(crate::metrics::API_CALL_SECONDS, "endpoint" => endpoint.name())
            .record(started.elapsed().as_secs_f64());
        if let Some(wait) = result.as_ref().err().and_then(ApiError::retry_after) {
            self.hold_calls_for(endpoint, wait);
        }
        result
    }

    /// Sleeps until the latest `Retry-After` has passed.
    async fn wait_for_retry_after(&self) {
        loop {
            let until = *self.not_before.lock().unwrap_or_else(|p| p.into_inner());
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    fn hold_calls_for(&self, endpoint: Endpoint, wait: Duration) {
        let until = Instant::now() + wait;
        let mut not_before = self.not_before.lock().unwrap_or_else(|p| p.into_inner());
        if not_before.is_none_or(|current| current < until) {
            *not_before = Some(until);
            tracing::warn!(
                endpoint = endpoint.name(),
                wait_s = wait.as_secs_f64(),
                "the API asked to slow down (Retry-After); holding every call until then"
            );
        }
    }

    async fn send<T: DeserializeOwned + Default>(
        &self,
        endpoint: Endpoint,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer<T>, ApiError> {
        let response = request
            .send()
            .await
            .map_err(|err| transport_error(endpoint, &err))?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|err| transport_error(endpoint, &err))?;

        if status != reqwest::StatusCode::OK {
            return Err(ApiError::Http {
                endpoint,
                status: status.as_u16(),
                retry_after,
                body_excerpt: excerpt(&bytes),
            });
        }
        let envelope: Envelope =
            serde_json::from_slice(&bytes).map_err(|err| ApiError::Malformed {
                endpoint,
                detail: format!("not the API's JSON envelope ({err}): {}", excerpt(&bytes)),
                request_id: None,
            })?;
        let request_id = envelope
            .request_id
            .as_ref()
            .map(value_text)
            .unwrap_or_default();
        let errno = match envelope.errno.as_ref().and_then(model::number_of) {
            Some(errno) => errno as i64,
            None => {
                return Err(malformed(
                    endpoint,
                    "the answer has no errno".into(),
                    &request_id,
                ))
            }
        };
        if errno != 0 {
            return Err(ApiError::Errno {
                endpoint,
                errno,
                errmsg: envelope.errmsg.as_ref().map(value_text).unwrap_or_default(),
                request_id,
            });
        }
        let data = serde_json::from_slice::<Data<T>>(&bytes)
            .map_err(|err| malformed(endpoint, err.to_string(), &request_id))?;
        Ok(Answer {
            data: data.data,
            request_id,
        })
    }
}

fn malformed(endpoint: Endpoint, detail: String, request_id: &str) -> ApiError {
    ApiError::Malformed {
        endpoint,
        detail,
        request_id: (!request_id.is_empty()).then(|| request_id.to_owned()),
    }
}

/// Splits transport failures into "never sent" and "sent, no answer": only a failure to
/// connect proves the request did not reach the API.
fn transport_error(endpoint: Endpoint, err: &reqwest::Error) -> ApiError {
    let detail = error_chain(err);
    // A request that could not be built or connected never left this host.
    if err.is_connect() || err.is_builder() {
        ApiError::NotSent { endpoint, detail }
    } else {
        ApiError::NoAnswer { endpoint, detail }
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(EXCERPT_CHARS).collect()
}
