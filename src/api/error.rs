//! What can go wrong in a call, and what each outcome means for the caller.
//!
//! This is the one place that decides whether a failure is worth retrying, stops the
//! whole account, dooms one request, or leaves unknown whether the API acted. The errno
//! lists come from configuration (`[api.errno]`), with defaults from the API's own table.

use std::time::Duration;

use crate::config::ErrnoSettings;

/// Which endpoint a call went to. The same failure means different things for a call that
/// creates something (ImportCIMG) and for one that only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /dicloud/i/storage/cimg/import`: creates an image; not idempotent.
    ImportCimg,
    /// `GET /dicloud/i/result`: reads job progress.
    JobResult,
    /// `POST /dicloud/i/storage/cimg/list`: reads images.
    ListCimg,
}

impl Endpoint {
    /// The API's name for the endpoint, as logs and the history show it.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ImportCimg => "ImportCIMG",
            Endpoint::JobResult => "JobResult",
            Endpoint::ListCimg => "ListCIMG",
        }
    }

    /// Whether sending the call twice could create something twice.
    pub fn creates(self) -> bool {
        matches!(self, Endpoint::ImportCimg)
    }
}

/// A call that did not end in `errno` 0.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request never left this host: no connection could be made. Nothing happened on
    /// the provider's side.
    #[error("{endpoint} not sent: cannot connect: {detail}", endpoint = .endpoint.name())]
    NotSent {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The transport's own words.
        detail: String,
    },
    /// The request was sent but no complete answer came back (timeout, reset, cut off).
    /// The provider may or may not have acted on it.
    #[error("{endpoint} sent but not answered: {detail}", endpoint = .endpoint.name())]
    NoAnswer {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The transport's own words.
        detail: String,
    },
    /// An HTTP status other than 200, usually from a gateway, often with an HTML body.
    #[error("{endpoint} answered HTTP {status}{excerpt}", endpoint = .endpoint.name(),
            excerpt = excerpt_suffix(.body_excerpt))]
    Http {
        /// The endpoint called.
        endpoint: Endpoint,
        /// HTTP status code.
        status: u16,
        /// `Retry-After`, when the answer carried one in seconds.
        retry_after: Option<Duration>,
        /// The start of the body, as text, for the operator.
        body_excerpt: String,
    },
    /// HTTP 200 with a body that is not the documented envelope.
    #[error("{endpoint} answer unreadable: {detail}", endpoint = .endpoint.name())]
    Malformed {
        /// The endpoint called.
        endpoint: Endpoint,
        /// What was wrong with it.
        detail: String,
        /// `requestId`, if even that could be read.
        request_id: Option<String>,
    },
    /// The API refused the call with a nonzero `errno`.
    #[error("{endpoint} refused: errno {errno}: {errmsg}", endpoint = .endpoint.name())]
    Errno {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The API's error code.
        errno: i64,
        /// The API's message (usually Chinese).
        errmsg: String,
        /// The API's id of the call, for its support.
        request_id: String,
    },
}

fn excerpt_suffix(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!(": {excerpt}")
    }
}

/// What a failed call means for the work that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Nothing happened; try again later with backoff.
    Transient,
    /// Every call will fail until a person fixes the account or token: pause, alert, and
    /// do not spend any request's attempts.
    AccountWide,
    /// This request is wrong as it stands; retrying it unchanged cannot help.
    Permanent,
    /// The call may have acted: for ImportCIMG, sending again could create a second image.
    Unknown,
    /// An errno in none of the configured lists: retried like a transient failure, but
    /// only up to the request's maximum attempts.
    UnknownErrno,
}

impl ApiError {
    /// The endpoint of the failed call.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            ApiError::NotSent { endpoint, .. }
            | ApiError::NoAnswer { endpoint, .. }
            | ApiError::Http { endpoint, .. }
            | ApiError::Malformed { endpoint, .. }
            | ApiError::Errno { endpoint, .. } => *endpoint,
        }
    }

    /// A short name of the kind of failure, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::NotSent { .. } => "not_sent",
            ApiError::NoAnswer { .. } => "no_answer",
            ApiError::Http { status: 429, .. } => "rate_limited",
            ApiError::Http { .. } => "http_error",
            ApiError::Malformed { .. } => "malformed",
            ApiError::Errno { .. } => "errno",
        }
    }

    /// The API's errno, when the failure is one.
    pub fn errno(&self) -> Option<i64> {
        match self {
            ApiError::Errno { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The API's message, when the failure is an errno.
    pub fn errmsg(&self) -> Option<&str> {
        match self {
            ApiError::Errno { errmsg, .. } => Some(errmsg),
            _ => None,
        }
    }

    /// The API's `requestId`, when an answer carried one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Errno { request_id, .. } => Some(request_id),
            ApiError::Malformed { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// How long the API asked us to wait before calling again, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What this failure means, given the errno lists in force.
    ///
    /// For a call that creates (ImportCIMG), anything that may have reached the API
    /// without a clear answer is [`Disposition::Unknown`]: a timeout or reset after
    /// sending, a gateway error other than 429/503, or an unreadable answer. For reads
    /// the same failures are simply transient.
    pub fn disposition(&self, errno: &ErrnoSettings) -> Disposition {
        let unknown_if_creating = if self.endpoint().creates() {
            Disposition::Unknown
        } else {
            Disposition::Transient
        };
        match self {
            ApiError::NotSent { .. } => Disposition::Transient,
            ApiError::NoAnswer { .. } | ApiError::Malformed { .. } => unknown_if_creating,
            // A 429 or 503 is a refusal at the door: the request was not processed.
            ApiError::Http {
                status: 429 | 503, ..
            } => Disposition::Transient,
            ApiError::Http { .. } => unknown_if_creating,
            ApiError::Errno { errno: code, .. } => classify_errno(*code, errno),
        }
    }
}

/// Looks an errno up in the configured lists. Account-wide wins over the others when a code
/// is listed twice, since it is the safest reading.
pub fn classify_errno(code: i64, lists: &ErrnoSettings) -> Disposition {
    if lists.account_wide.contains(&code) {
        Disposition::AccountWide
    } else if lists.permanent.contains(&code) {
        Disposition::Permanent
    } else if lists.transient.contains(&code) {
        Disposition::Transient
    } else {
        Disposition::UnknownErrno
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(endpoint: Endpoint, status: u16) -> ApiError {
        ApiError::Http {
            endpoint,
            status,
            retry_after: None,
            body_excerpt: String::new(),
        }
    }

    fn errno(endpoint: Endpoint, code: i64) -> ApiError {
        ApiError::Errno {
            endpoint,
            errno: code,
            errmsg: "x".into(),
            request_id: "r".into(),
        }
    }

    #[test]
    fn every_outcome_has_one_disposition() {
        use Disposition::*;
        use Endpoint::*;
        let not_sent = |e| ApiError::NotSent {
            endpoint: e,
            detail: "refused".into(),
        };
        let no_answer = |e| ApiError::NoAnswer {
            endpoint: e,
            detail: "timeout".into(),
        };
        let malformed = |e| ApiError::Malformed {
            endpoint: e,
            detail: "eof".into(),
            request_id: None,
        };
        let cases = [
            ("connect failure on import", not_sent(ImportCimg), Transient),
            (
                "timeout after sending an import",
                no_answer(ImportCimg),
                Unknown,
            ),
            ("timeout on a read", no_answer(JobResult), Transient),
            ("html 502 on import", http(ImportCimg, 502), Unknown),
            ("html 502 on a read", http(JobResult, 502), Transient),
            ("429 on import", http(ImportCimg, 429), Transient),
            ("503 on import", http(ImportCimg, 503), Transient),
            ("unparsable json on import", malformed(ImportCimg), Unknown),
            ("unparsable json on a list", malformed(ListCimg), Transient),
            ("errno 1", errno(ImportCimg, 1), Permanent),
            ("errno 13", errno(ImportCimg, 13), Permanent),
            ("errno 2", errno(ImportCimg, 2), Transient),
            ("errno 3", errno(JobResult, 3), Transient),
            ("errno 40000", errno(ImportCimg, 40000), Transient),
            ("errno 41026", errno(ImportCimg, 41026), Permanent),
            ("errno 4", errno(ImportCimg, 4), AccountWide),
            ("errno 1000011", errno(ImportCimg, 1_000_011), AccountWide),
            ("errno 1100020", errno(ImportCimg, 1_100_020), AccountWide),
            ("errno 10000001", errno(ListCimg, 10_000_001), AccountWide),
            ("errno never seen", errno(ImportCimg, 777), UnknownErrno),
        ];
        let lists = ErrnoSettings::default();
        for (name, err, want) in cases {
            assert_eq!(err.disposition(&lists), want, "{name}");
        }
    }

    #[test]
    fn configured_lists_override_the_defaults() {
        let lists = ErrnoSettings {
            transient: vec![41026],
            account_wide: vec![1],
            permanent: vec![],
        };
        assert_eq!(classify_errno(41026, &lists), Disposition::Transient);
        assert_eq!(classify_errno(1, &lists), Disposition::AccountWide);
        assert_eq!(classify_errno(4, &lists), Disposition::UnknownErrno);
    }
}
