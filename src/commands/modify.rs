//! `cimg-importd retry ID` and `cimg-importd cancel ID`: an operator's changes of state,
//! each allowed only from certain states, checked by the store's conditional `UPDATE` so
//! they cannot race the daemon, and recorded in the history with who made them.

use std::time::SystemTime;

use super::{check_config, open_existing};
use crate::config::Settings;
use crate::store::operator::{ChangeOutcome, OperatorAction, RequestRecord};
use crate::store::{RequestFields, RequestState};
use crate::validate;

/// `retry --help`.
pub const RETRY_ABOUT: &str = "\
Put a request back in the queue: due now, attempts reset to 0, its last error cleared
(the history keeps it). The daemon sends it again within queue.scan_interval.

Allowed from:
  failed     the job or the API refused it; fix the cause first (source image, quota)
  rejected   the row was not a valid request; correct it first, for example
             sqlite3 imports.db \"UPDATE import_requests SET name = 'web-2' WHERE id = 7\"
             (retry checks the row again and refuses it while it is still not valid)
  in_doubt   a call was sent without a clear answer: first check that the target region
             has no image of that name, or the image may be copied twice

The history gets a `retried` event saying who retried it and when. Any other state is
refused with exit status 1, and so is an unknown id.

Example:
  cimg-importd retry 7";

/// `cancel --help`.
pub const CANCEL_ABOUT: &str = "\
Withdraw a request that is still queued: it becomes cancelled and is never sent. A request
the daemon has already claimed (submitting, submitted, in_doubt) cannot be cancelled, since
the API has no way to withdraw an import; neither can one that has ended.

The history gets a `cancelled` event saying who cancelled it and when. Any other state is
refused with exit status 1, and so is an unknown id.

Example:
  cimg-importd cancel 7";

/// Options of `cimg-importd retry` and `cimg-importd cancel`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModifyArgs {
    /// The request's id, as `list` shows it.
    #[arg(value_name = "ID")]
    pub id: i64,
}

/// `retry ID`.
///
/// # Errors
///
/// The request is unknown, not in a state retry is allowed from, still not a valid
/// request, or the database cannot be written.
pub async fn retry(settings: &Settings, args: ModifyArgs) -> anyhow::Result<()> {
    change(settings, args.id, OperatorAction::Retry).await
}

/// `cancel ID`.
///
/// # Errors
///
/// The request is unknown, not queued, or the database cannot be written.
pub async fn cancel(settings: &Settings, args: ModifyArgs) -> anyhow::Result<()> {
    change(settings, args.id, OperatorAction::Cancel).await
}

async fn change(settings: &Settings, id: i64, action: OperatorAction) -> anyhow::Result<()> {
    let store = open_existing(settings).await?;
    let request = store.request(id).await?;
    if let (OperatorAction::Retry, Some(request)) = (action, &request) {
        check_still_valid(request, &settings.queue.allowed_regions)?;
    }
    let detail = format!(
        "by {} via cimg-importd {} at {}",
        operator(),
        action.name(),
        humantime::format_rfc3339_millis(SystemTime::now())
    );
    let outcome = store.apply_change(id, action, &detail).await?;
    store.close().await;
    match outcome {
        ChangeOutcome::Applied { from } => {
            report_applied(action, id, &from, request.as_ref());
            Ok(())
        }
        ChangeOutcome::Refused { state } => Err(anyhow::anyhow!(refusal(action, id, &state))),
        ChangeOutcome::NotFound => Err(anyhow::anyhow!(
            "no request has id {id}: `cimg-importd list` shows the ids there are"
        )),
    }
}

/// A retried request goes through the daemon's check again; refusing it here saves the
/// operator a round trip through `rejected`.
fn check_still_valid(request: &RequestRecord, allowed_regions: &[String]) -> anyhow::Result<()> {
    let retryable = OperatorAction::Retry
        .allowed_from()
        .iter()
        .any(|state| state.as_str() == request.state);
    if !retryable {
        return Ok(());
    }
    let fields = RequestFields {
        region_id: request.region_id.clone(),
        name: request.name.clone(),
        origin_image_uuid: request.origin_image_uuid.clone(),
        origin_region_id: request.origin_region_id.clone(),
        description: request.description.clone(),
    };
    validate::check(fields, allowed_regions)
        .map(drop)
        .map_err(|reason| {
            anyhow::anyhow!(
                "request {} is still not a valid request: {reason}: correct the row first \
             (sqlite3: UPDATE import_requests SET … WHERE id = {}), then retry it",
                request.id,
                request.id
            )
        })
}

fn report_applied(action: OperatorAction, id: i64, from: &str, request: Option<&RequestRecord>) {
    match action {
        OperatorAction::Retry => {
            println!("request {id} is queued again (was {from}); attempts reset to 0");
            let was_in_doubt = from == RequestState::InDoubt.as_str();
            if let (true, Some(request)) = (was_in_doubt, request) {
                eprintln!(
                    "note: it was in_doubt; if region {} already has an image named `{}`, \
                     this copies it a second time",
                    request.region_id, request.name
                );
            }
        }
        OperatorAction::Cancel => println!("request {id} is cancelled (was {from})"),
    }
}

/// Why a change is refused, naming the state, what is allowed, and what to do instead.
fn refusal(action: OperatorAction, id: i64, state: &str) -> String {
    let allowed: Vec<&str> = action
        .allowed_from()
        .iter()
        .map(|state| state.as_str())
        .collect();
    let allowed = match allowed.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    let advice = match (action, state) {
        (OperatorAction::Retry, "queued") => "it is already waiting to be sent".to_owned(),
        (OperatorAction::Retry, "submitting" | "submitted") => {
            "it has been sent and its job is being followed: see `cimg-importd watch`".to_owned()
        }
        (OperatorAction::Retry, "succeeded") => {
            "it already succeeded: to copy the image again, queue a new request with \
             `cimg-importd enqueue`"
                .to_owned()
        }
        (OperatorAction::Retry, _) => "queue it anew with `cimg-importd enqueue`".to_owned(),
        (OperatorAction::Cancel, "submitting" | "submitted") => {
            "it has been sent, and the API cannot withdraw an import: wait for it to end \
             (`cimg-importd watch`)"
                .to_owned()
        }
        (OperatorAction::Cancel, "in_doubt") => format!(
            "it may have been sent already: check the target region for an image of its \
             name; if there is none, `cimg-importd retry {id}` queues it again"
        ),
        (OperatorAction::Cancel, _) => "it has already ended; nothing more will be sent".to_owned(),
    };
    format!(
        "cannot {} request {id}: it is {state}, and {} is allowed only from {allowed}: {advice}",
        action.name(),
        action.name()
    )
}

/// Who is at the keyboard, for the history.
fn operator() -> String {
    let lookup = |name: &str| std::env::var(name).ok();
    let uid = rustix::process::getuid().as_raw();
    operator_from(lookup, uid, check_config::user_name)
}

/// `$USER`, else `$LOGNAME`, else the name of `uid`, else `uid N`; with the person behind
/// `sudo` when there is one.
fn operator_from(
    env: impl Fn(&str) -> Option<String>,
    uid: u32,
    user_name: impl FnOnce(u32) -> Option<String>,
) -> String {
    let set = |name: &str| env(name).filter(|value| !value.is_empty());
    let login = set("USER")
        .or_else(|| set("LOGNAME"))
        .or_else(|| user_name(uid))
        .unwrap_or_else(|| format!("uid {uid}"));
    match set("SUDO_USER").filter(|sudo| *sudo != login) {
        Some(sudo) => format!("{sudo} (as {login} through sudo)"),
        None => login,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_is_named_from_the_environment_or_the_uid() {
        // (case, environment, name in /etc/passwd, expected)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>, &'a str);
        let cases: &[Case] = &[
            (
                "user",
                &[("USER", "alice"), ("LOGNAME", "bob")],
                None,
                "alice",
            ),
            ("logname", &[("LOGNAME", "bob")], Some("carol"), "bob"),
            (
                "empty user",
                &[("USER", ""), ("LOGNAME", "bob")],
                None,
                "bob",
            ),
            ("passwd", &[], Some("carol"), "carol"),
            ("nothing", &[], None, "uid 1234"),
            (
                "sudo",
                &[("USER", "cimg-importd"), ("SUDO_USER", "alice")],
                None,
                "alice (as cimg-importd through sudo)",
            ),
            (
                "sudo to self",
                &[("USER", "alice"), ("SUDO_USER", "alice")],
                None,
                "alice",
            ),
        ];
        for (name, vars, passwd, want) in cases {
            let env = |key: &str| {
                vars.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            };
            let got = operator_from(env, 1234, |_| passwd.map(str::to_owned));
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn refusals_name_the_state_and_what_is_allowed() {
        use OperatorAction::{Cancel, Retry};
        let cases: &[(&str, OperatorAction, &str, &[&str])] = &[
            (
                "retry a running job",
                Retry,
                "submitted",
                &[
                    "it is submitted",
                    "only from failed, rejected or in_doubt",
                    "watch",
                ],
            ),
            ("retry a success", Retry, "succeeded", &["enqueue"]),
            ("retry a queued one", Retry, "queued", &["already waiting"]),
            (
                "cancel a sent one",
                Cancel,
                "submitted",
                &["it is submitted", "only from queued", "cannot withdraw"],
            ),
            ("cancel in doubt", Cancel, "in_doubt", &["retry 7"]),
            ("cancel an ended one", Cancel, "failed", &["already ended"]),
        ];
        for (name, action, state, needles) in cases {
            let text = refusal(*action, 7, state);
            for needle in *needles {
                assert!(text.contains(needle), "{name}: `{text}` lacks `{needle}`");
            }
        }
    }
}
