//! `cimg-importd check-config`: everything the daemon needs before it starts, checked in
//! one go with a line per check: the configuration, the API token, the database (that this
//! user can write it, then its schema) and, with `--api`, one harmless ListCIMG call.
//!
//! It also holds [`check_writable`], which `run` and `migrate` call at start: SQLite needs
//! to write the database, its directory and its `-wal`/`-shm` files, and the classic way to
//! break that is an operator running `sqlite3` as root, which leaves root-owned `-wal` and
//! `-shm` files behind. Without this check the daemon would fail later with SQLite's
//! "attempt to write a readonly database", which names neither the file nor the fix.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::Access;
use rustix::io::Errno;

use super::usage;
use crate::api::{ApiClient, ApiError, Disposition};
use crate::config::{Settings, Token, DEFAULT_CONFIG_PATH, ENV_PREFIX};
use crate::service;

/// `check-config --help`.
pub const CHECK_CONFIG_ABOUT: &str = "\
Check what the daemon needs before it starts, one line per check, and say what to fix:

  configuration  the file (--config, else /etc/cimg-importd/config.toml if it exists) and
                 the CIMG_IMPORTD__* variables: unknown keys and bad values are errors
  api token      where it is found (api.token_file, $CREDENTIALS_DIRECTORY/token, or
                 CIMG_IMPORTD_TOKEN); the token itself is never shown
  database       that this user can write the database, its directory and its -wal/-shm
                 files; then creates or upgrades the schema
  api            with --api only: one ListCIMG call (start 0, limit 1) in --region, which
                 reads and changes nothing; a failure shows the API's errno and requestId

Run it as the service's user, e.g. `sudo -u cimg-importd cimg-importd check-config`. The
unit hands the token over with LoadCredential=, which a shell does not have: there, point
to the token file with CIMG_IMPORTD__API__TOKEN_FILE.

Exit status: 0 all good, 1 the database or the API failed, 2 the configuration or the
token is wrong.";

/// Options of `cimg-importd check-config`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckConfigArgs {
    /// Also make one harmless ListCIMG call, to check the URL, the token and the account.
    #[arg(long)]
    pub api: bool,

    /// Region the --api call lists images in.
    #[arg(long, value_name = "REGION", default_value = "gz")]
    pub region: String,
}

/// Runs every check and prints one line for each.
///
/// # Errors
///
/// One error naming the checks that failed: a [`UsageError`](super::UsageError) if the
/// token is missing or unreadable, a plain error if only the database or the API failed.
pub async fn run(
    settings: &Settings,
    config_path: Option<&Path>,
    args: CheckConfigArgs,
) -> anyhow::Result<()> {
    let mut checks = Checks::default();
    checks.passed("configuration", &configuration_sources(config_path));

    let token = match Token::discover(&settings.api) {
        Ok((token, source)) => {
            checks.passed("api token", &format!("found in {source}"));
            Some(token)
        }
        Err(err) => {
            let hint = token_hint(settings);
            checks.failed("api token", usage(format!("{err:#}{hint}")));
            None
        }
    };

    match check_database(settings).await {
        Ok(text) => checks.passed("database", &text),
        Err(err) => checks.failed("database", err),
    }

    if args.api {
        match &token {
            Some(token) => match check_api(settings, token, &args.region).await {
                Ok(text) => checks.passed("api", &text),
                Err(err) => checks.failed("api", err),
            },
            None => checks.skipped("api", "no token to call it with"),
        }
    }
    checks.finish()
}

/// Prints one line per check as it ends, and keeps the failures for the verdict.
#[derive(Default)]
struct Checks {
    failed: Vec<(&'static str, anyhow::Error)>,
}

impl Checks {
    fn passed(&mut self, name: &str, text: &str) {
        println!("{name:<14} ok       {text}");
    }

    fn skipped(&mut self, name: &str, text: &str) {
        println!("{name:<14} skipped  {text}");
    }

    fn failed(&mut self, name: &'static str, err: anyhow::Error) {
        println!("{name:<14} FAILED   {err:#}");
        self.failed.push((name, err));
    }

    fn finish(self) -> anyhow::Result<()> {
        if self.failed.is_empty() {
            println!("all checks passed");
            return Ok(());
        }
        let names: Vec<&str> = self.failed.iter().map(|(name, _)| *name).collect();
        let message = format!(
            "{} failed: {}: fix what the FAILED lines above say and run check-config \
             again",
            super::count(names.len(), "check", "checks"),
            names.join(", ")
        );
        let is_usage = self
            .failed
            .iter()
            .any(|(_, err)| super::exit_code(err) == crate::cli::EXIT_CONFIG);
        Err(if is_usage {
            usage(message)
        } else {
            anyhow::anyhow!(message)
        })
    }
}

/// Where the settings came from, as a sentence.
fn configuration_sources(config_path: Option<&Path>) -> String {
    let file = match config_path {
        Some(path) => format!("file {}", path.display()),
        None if Path::new(DEFAULT_CONFIG_PATH).is_file() => {
            format!("file {DEFAULT_CONFIG_PATH}")
        }
        None => format!("built-in defaults ({DEFAULT_CONFIG_PATH} does not exist)"),
    };
    let prefix = format!("{ENV_PREFIX}__");
    let mut overrides: Vec<String> = std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with(&prefix))
        .collect();
    overrides.sort();
    if overrides.is_empty() {
        file
    } else {
        format!("{file}, overridden by {}", overrides.join(", "))
    }
}

/// Advice for a shell, where systemd's credential is not there.
fn token_hint(settings: &Settings) -> String {
    let outside_systemd = std::env::var_os("CREDENTIALS_DIRECTORY").is_none();
    if outside_systemd && settings.api.token_file.is_none() {
        format!(
            " (in a shell, LoadCredential= does not apply: run as root with \
             {ENV_PREFIX}__API__TOKEN_FILE=/etc/cimg-importd/token)"
        )
    } else {
        String::new()
    }
}

async fn check_database(settings: &Settings) -> anyhow::Result<String> {
    let path = &settings.database.path;
    check_writable(path)?;
    let store = service::open_store(settings).await?;
    let unfinished = store.count_unfinished().await?;
    store.close().await;
    Ok(format!(
        "{} is writable and up to date ({unfinished} unfinished requests)",
        path.display()
    ))
}

async fn check_api(settings: &Settings, token: &Token, region: &str) -> anyhow::Result<String> {
    let base_url = &settings.api.base_url;
    let client = ApiClient::new(&settings.api, token)?;
    match client.list_cimg(region, &[], 0, 1).await {
        Ok(answer) => Ok(format!(
            "{base_url} answered ListCIMG in {region}: {} custom images (requestId {})",
            answer.data.count, answer.request_id
        )),
        Err(err) => Err(anyhow::anyhow!(api_failure(settings, &err))),
    }
}

/// A failed call in words: the API's own, its requestId, and what to do.
fn api_failure(settings: &Settings, err: &ApiError) -> String {
    let base_url = &settings.api.base_url;
    let mut text = err.to_string();
    if let Some(request_id) = err.request_id().filter(|id| !id.is_empty()) {
        text.push_str(&format!(" (requestId {request_id})"));
    }
    let advice = match (err.disposition(&settings.api.errno), err) {
        (Disposition::AccountWide, _) => {
            "the API refuses this token or account: check the token, and the account's \
             balance and permissions"
                .to_owned()
        }
        (_, ApiError::NotSent { .. }) => format!(
            "cannot reach {base_url}: check `api.base_url` and the network (proxy, firewall)"
        ),
        (Disposition::Permanent, _) => "the API refused the call: check --region".to_owned(),
        _ => format!("try again later; if it persists, check `api.base_url` ({base_url})"),
    };
    format!("{text}: {advice}")
}

/// Checks that this process can write everything SQLite writes for the database at `path`:
/// its directory (SQLite creates `-wal` and `-shm` there), the file, and its `-wal` and
/// `-shm` files when they exist. `run` and `migrate` call it before opening the database.
///
/// # Errors
///
/// The directory does not exist, or one of those paths is not writable: the message names
/// the path, its owner and mode, this process's user, and the command that fixes it.
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    let dir = directory_of(path);
    if !dir.is_dir() {
        anyhow::bail!(
            "the database directory `{}` does not exist: create it, owned by the user the \
             daemon runs as, or set `database.path`",
            dir.display()
        );
    }
    let me = Identity::current();
    for (candidate, role) in paths_to_check(path, |p| p.exists()) {
        let wanted = match role {
            Role::Directory => Access::WRITE_OK | Access::EXEC_OK,
            _ => Access::WRITE_OK,
        };
        let Err(errno) = rustix::fs::access(&candidate, wanted) else {
            continue;
        };
        let metadata = fs::metadata(&candidate)
            .map_err(|err| anyhow::anyhow!("cannot read `{}`: {err}", candidate.display()))?;
        let facts = Unwritable {
            path: candidate,
            role,
            owner: Owner::of(&metadata),
            cause: Cause::from_errno(errno),
        };
        anyhow::bail!(explain(&facts, &me));
    }
    Ok(())
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What a path is to SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Directory,
    Database,
    Wal,
    Shm,
}

impl Role {
    fn describe(self) -> &'static str {
        match self {
            Role::Directory => "the database directory",
            Role::Database => "the database",
            Role::Wal => "the database's write-ahead log",
            Role::Shm => "the database's shared-memory file",
        }
    }
}

/// The paths to check, in order: the directory always, the others when they exist.
fn paths_to_check(db: &Path, exists: impl Fn(&Path) -> bool) -> Vec<(PathBuf, Role)> {
    let mut paths = vec![(directory_of(db), Role::Directory)];
    let mut with_suffix = |suffix: &str, role: Role| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = PathBuf::from(name);
        if exists(&path) {
            paths.push((path, role));
        }
    };
    with_suffix("", Role::Database);
    with_suffix("-wal", Role::Wal);
    with_suffix("-shm", Role::Shm);
    paths
}

/// Why a path cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cause {
    /// Owner and mode do not let this user write it.
    Permission,
    /// The file system is mounted read-only (for this process).
    ReadOnlyFileSystem,
    /// Anything else the access check said.
    Other(String),
}

impl Cause {
    fn from_errno(errno: Errno) -> Cause {
        match errno {
            Errno::ACCESS | Errno::PERM => Cause::Permission,
            Errno::ROFS => Cause::ReadOnlyFileSystem,
            other => Cause::Other(std::io::Error::from(other).to_string()),
        }
    }
}

/// A user or the owner of a file, with the names resolved where they can be.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    uid: u32,
    gid: u32,
    user: Option<String>,
    group: Option<String>,
    mode: u32,
}

impl Owner {
    fn of(metadata: &fs::Metadata) -> Owner {
        Owner {
            uid: metadata.uid(),
            gid: metadata.gid(),
            user: user_name(metadata.uid()),
            group: group_name(metadata.gid()),
            mode: metadata.mode() & 0o7777,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} (uid {}), group {} (gid {})",
            self.user.as_deref().unwrap_or("?"),
            self.uid,
            self.group.as_deref().unwrap_or("?"),
            self.gid
        )
    }
}

/// The user this process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    uid: u32,
    gid: u32,
    name: Option<String>,
}

impl Identity {
    fn current() -> Identity {
        let uid = rustix::process::geteuid().as_raw();
        Identity {
            uid,
            gid: rustix::process::getegid().as_raw(),
            name: user_name(uid),
        }
    }

    fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} (uid {})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }

    /// The owner argument of a `chown` that gives a file to this user and its group.
    fn chown_owner(&self) -> String {
        match &self.name {
            Some(name) => format!("{name}:"),
            None => format!("{}:{}", self.uid, self.gid),
        }
    }
}

/// A path that cannot be written, and what was found out about it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unwritable {
    path: PathBuf,
    role: Role,
    owner: Owner,
    cause: Cause,
}

/// The message for an unwritable path: what, whose, why, and the fix.
fn explain(facts: &Unwritable, me: &Identity) -> String {
    let Unwritable {
        path,
        role,
        owner,
        cause,
    } = facts;
    let path = path.display();
    let what = role.describe();
    match cause {
        Cause::ReadOnlyFileSystem => format!(
            "cannot write {what} `{path}`: it is on a file system that is read-only for this \
             process; under systemd's ProtectSystem=strict only the unit's StateDirectory= \
             (/var/lib/cimg-importd) and ReadWritePaths= are writable: keep `database.path` \
             there"
        ),
        Cause::Other(err) => format!("cannot check that {what} `{path}` is writable: {err}"),
        Cause::Permission => {
            let chown = format!("chown {} {path}", me.chown_owner());
            let fix = match role {
                Role::Wal | Role::Shm => format!(
                    "fix: `{chown}` (and the same for the other -wal/-shm file); such files \
                     are usually left by someone who ran sqlite3 on the database as root: run \
                     sqlite3 as {me_name}, or as a member of its group, instead",
                    me_name = me.name.as_deref().unwrap_or("the daemon's user")
                ),
                Role::Database => format!("fix: `{chown}`"),
                Role::Directory => format!(
                    "fix: `{chown}` (systemd's StateDirectory= does this for \
                     /var/lib/cimg-importd), or set `database.path` to a directory this user \
                     can write"
                ),
            };
            format!(
                "cannot write {what} `{path}`: it belongs to {owner} with mode {mode:04o}, and \
                 this process runs as {me}; {fix}",
                owner = owner.describe(),
                mode = owner.mode,
                me = me.describe()
            )
        }
    }
}

/// The name of a user id, from `/etc/passwd`; `None` when it is not there (for example a
/// directory service user) or the file cannot be read.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    name_in(&fs::read_to_string("/etc/passwd").ok()?, uid)
}

fn group_name(gid: u32) -> Option<String> {
    name_in(&fs::read_to_string("/etc/group").ok()?, gid)
}

/// The name of `id` in a file shaped like `/etc/passwd` or `/etc/group`: `name:x:id:…`.
fn name_in(table: &str, id: u32) -> Option<String> {
    table.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let line_id = fields.nth(1)?.parse::<u32>().ok()?;
        (line_id == id && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_owner(mode: u32) -> Owner {
        Owner {
            uid: 0,
            gid: 0,
            user: Some("root".into()),
            group: Some("root".into()),
            mode,
        }
    }

    fn service_user() -> Identity {
        Identity {
            uid: 998,
            gid: 997,
            name: Some("cimg-importd".into()),
        }
    }

    #[test]
    fn ids_are_named_from_passwd_and_group_files() {
        let table = "# comment\nroot:x:0:0:root:/root:/bin/bash\n\
                     cimg-importd:x:998:997::/var/lib/cimg-importd:/usr/sbin/nologin\n\
                     broken-line\n";
        let cases = [
            ("root", 0, Some("root")),
            ("service user", 998, Some("cimg-importd")),
            ("unknown id", 5, None),
        ];
        for (name, id, want) in cases {
            assert_eq!(name_in(table, id).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn the_directory_is_always_checked_and_sqlite_files_when_present() {
        let db = Path::new("/var/lib/cimg-importd/imports.db");
        let all = |_: &Path| true;
        let none = |_: &Path| false;
        let only_db = |p: &Path| p == db;
        type Exists<'a> = &'a dyn Fn(&Path) -> bool;
        let cases: &[(&str, Exists, Vec<Role>)] = &[
            (
                "everything there",
                &all,
                vec![Role::Directory, Role::Database, Role::Wal, Role::Shm],
            ),
            ("nothing yet", &none, vec![Role::Directory]),
            (
                "database closed cleanly",
                &only_db,
                vec![Role::Directory, Role::Database],
            ),
        ];
        for (name, exists, want) in cases {
            let roles: Vec<Role> = paths_to_check(db, exists)
                .into_iter()
                .map(|(_, r)| r)
                .collect();
            assert_eq!(&roles, want, "{name}");
        }
        let paths = paths_to_check(db, all);
        assert_eq!(paths[0].0, Path::new("/var/lib/cimg-importd"));
        assert_eq!(
            paths[2].0,
            Path::new("/var/lib/cimg-importd/imports.db-wal")
        );
        assert_eq!(paths_to_check(Path::new("x.db"), none)[0].0, Path::new("."));
    }

    #[test]
    fn access_errors_are_read_as_causes() {
        let cases = [
            ("permission", Errno::ACCESS, Cause::Permission),
            ("not permitted", Errno::PERM, Cause::Permission),
            ("read-only mount", Errno::ROFS, Cause::ReadOnlyFileSystem),
        ];
        for (name, errno, want) in cases {
            assert_eq!(Cause::from_errno(errno), want, "{name}");
        }
        assert!(matches!(Cause::from_errno(Errno::IO), Cause::Other(_)));
    }

    #[test]
    fn messages_name_the_path_the_owner_and_the_fix() {
        let wal = Unwritable {
            path: "/var/lib/cimg-importd/imports.db-wal".into(),
            role: Role::Wal,
            owner: root_owner(0o644),
            cause: Cause::Permission,
        };
        let dir = Unwritable {
            path: "/srv/db".into(),
            role: Role::Directory,
            owner: root_owner(0o755),
            cause: Cause::Permission,
        };
        let read_only = Unwritable {
            cause: Cause::ReadOnlyFileSystem,
            ..dir.clone()
        };
        let nameless = Identity {
            name: None,
            ..service_user()
        };
        let cases: &[(&str, &Unwritable, &Identity, &[&str])] = &[
            (
                "root-owned wal",
                &wal,
                &service_user(),
                &[
                    "cannot write the database's write-ahead log",
                    "`/var/lib/cimg-importd/imports.db-wal`",
                    "root (uid 0), group root (gid 0) with mode 0644",
                    "runs as cimg-importd (uid 998)",
                    "`chown cimg-importd: /var/lib/cimg-importd/imports.db-wal`",
                    "sqlite3 on the database as root",
                ],
            ),
            (
                "directory, user without a name",
                &dir,
                &nameless,
                &[
                    "runs as uid 998",
                    "`chown 998:997 /srv/db`",
                    "database.path",
                ],
            ),
            (
                "read-only mount",
                &read_only,
                &service_user(),
                &["read-only", "ReadWritePaths="],
            ),
        ];
        for (name, facts, me, needles) in cases {
            let text = explain(facts, me);
            for needle in *needles {
                assert!(text.contains(needle), "{name}: `{text}` lacks `{needle}`");
            }
        }
    }

    #[test]
    fn a_writable_temporary_database_passes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("imports.db");
        check_writable(&db).unwrap();
        fs::write(&db, b"").unwrap();
        fs::write(dir.path().join("imports.db-wal"), b"").unwrap();
        check_writable(&db).unwrap();
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = check_writable(Path::new("/nonexistent/cimg/imports.db")).unwrap_err();
        assert!(
            err.to_string()
                .contains("`/nonexistent/cimg` does not exist"),
            "{err}"
        );
    }
}
