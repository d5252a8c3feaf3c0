//! `cimg-importd enqueue`: queues one request from options, or many from a file, after
//! checking each exactly as the daemon will ([`validate::check`]). A file is queued whole
//! or not at all: one bad line names its line number and nothing of the file is queued.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::usage;
use crate::api::ImportSpec;
use crate::config::Settings;
use crate::store::RequestFields;
use crate::validate;

/// `enqueue --help`.
pub const ENQUEUE_ABOUT: &str = "\
Queue one request from options, or many from a file, checked exactly as the daemon checks
them (region ids, a 32-hex source uuid, different regions, name and description lengths).
The daemon picks new rows up within queue.scan_interval. Prints the id of each new request.

A file is queued whole or not at all: every bad line is named with its line number and
nothing of the file is queued, so the same command can simply be run again once the file
is corrected.

File formats, chosen by the extension (.csv, or .jsonl / .json) or by --format:

  CSV with a header line; columns region_id, name, origin_image_uuid, origin_region_id and
  optionally description, in any order; spaces around values are ignored:

    region_id,name,origin_image_uuid,origin_region_id,description
    gz,web-2026-12,4a48f88391134a01befe88ff98b68af8,bj,nginx release 2026.12
    bj,db-base,9c1d0e2f3a4b5c6d7e8f90a1b2c3d4e5,gz,

  JSON lines: one object per line with the same keys (description optional):

    {\"region_id\": \"gz\", \"name\": \"web-2026-12\", \
     \"origin_image_uuid\": \"4a48f88391134a01befe88ff98b68af8\", \"origin_region_id\": \"bj\"}

Examples:

  cimg-importd enqueue --region gz --name web-2026-12 \\
      --origin-image 4a48f88391134a01befe88ff98b68af8 --origin-region bj
  cimg-importd enqueue --file december.csv
  some-script | cimg-importd enqueue --file - --format jsonl

Exit status: 0 queued, 1 the database could not be written, 2 a bad option or a bad
request (nothing queued).";

/// Most bad lines listed one by one; the rest are counted.
const PROBLEMS_SHOWN: usize = 20;

/// Options of `cimg-importd enqueue`.
#[derive(Debug, Clone, clap::Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["region", "file"]))]
pub struct EnqueueArgs {
    /// Target region: where the copy is created, e.g. gz.
    #[arg(
        long,
        value_name = "REGION",
        requires_all = ["name", "origin_image", "origin_region"],
        conflicts_with = "file"
    )]
    pub region: Option<String>,

    /// Name of the new image (at most 128 characters).
    #[arg(long, value_name = "NAME", requires = "region")]
    pub name: Option<String>,

    /// Uuid of the source image: 32 hex characters.
    #[arg(long, value_name = "UUID", requires = "region")]
    pub origin_image: Option<String>,

    /// Region of the source image; must differ from --region.
    #[arg(long, value_name = "REGION", requires = "region")]
    pub origin_region: Option<String>,

    /// Description of the new image (at most 256 characters).
    #[arg(long, value_name = "TEXT", requires = "region")]
    pub description: Option<String>,

    /// Queue every request in this file (CSV or JSON lines); `-` reads standard input.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Format of --file, when its extension does not tell (always for `-`).
    #[arg(long, value_enum, requires = "file")]
    pub format: Option<InputFormat>,
}

/// How a file of requests is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// A request read from a file: the line it starts on, and its fields or why it could not
/// be read.
type ReadLine = (u64, Result<RequestFields, String>);

/// A request that passed the daemon's check, with its line.
type Accepted = (u64, ImportSpec);

/// A line that is not a valid request, with the reason.
type Problem = (u64, String);

/// One line of a JSON-lines file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    region_id: String,
    name: String,
    origin_image_uuid: String,
    origin_region_id: String,
    #[serde(default)]
    description: Option<String>,
}

/// Queues what `args` names.
///
/// # Errors
///
/// A [`UsageError`](super::UsageError) for a bad request or file (nothing queued); a plain
/// error when the database cannot be written.
pub async fn run(settings: &Settings, args: EnqueueArgs) -> anyhow::Result<()> {
    match &args.file {
        Some(path) => from_file(settings, path, args.format).await,
        None => single(settings, args).await,
    }
}

async fn single(settings: &Settings, args: EnqueueArgs) -> anyhow::Result<()> {
    let (Some(region_id), Some(name), Some(origin_image_uuid), Some(origin_region_id)) = (
        args.region,
        args.name,
        args.origin_image,
        args.origin_region,
    ) else {
        return Err(usage(
            "give --region, --name, --origin-image and --origin-region, or --file",
        ));
    };
    let fields = RequestFields {
        region_id,
        name,
        origin_image_uuid,
        origin_region_id,
        description: args.description,
    };
    let spec = validate::check(fields, &settings.queue.allowed_regions).map_err(|reason| {
        usage(format!(
            "not a valid request, nothing queued: {reason}: correct the option and run again"
        ))
    })?;
    let store = super::open_existing(settings).await?;
    let ids = store.enqueue(std::slice::from_ref(&spec)).await?;
    store.close().await;
    for id in ids {
        println!("queued request {id}: {}", describe(&spec));
    }
    Ok(())
}

async fn from_file(
    settings: &Settings,
    path: &Path,
    format: Option<InputFormat>,
) -> anyhow::Result<()> {
    let format = format_of(path, format).map_err(usage)?;
    let shown = shown_name(path);
    let text = read_input(path)?;
    let lines = read_requests(&text, format)
        .map_err(|problem| usage(format!("{shown} {problem}; nothing was queued")))?;
    let total = lines.len();
    let (numbered, problems) = check_all(lines, &settings.queue.allowed_regions);
    if !problems.is_empty() {
        report_problems(&shown, &problems);
        return Err(usage(format!(
            "{} of {total} requests in {shown} are not valid (listed above); nothing was \
             queued: correct those lines and run the same command again",
            problems.len()
        )));
    }
    if numbered.is_empty() {
        return Err(usage(format!(
            "{shown} holds no requests: see `cimg-importd enqueue --help` for the format"
        )));
    }

    let specs: Vec<ImportSpec> = numbered.iter().map(|(_, spec)| spec.clone()).collect();
    let store = super::open_existing(settings).await?;
    let ids = store.enqueue(&specs).await?;
    store.close().await;
    for (id, (line, spec)) in ids.iter().zip(&numbered) {
        println!("queued request {id} (line {line}): {}", describe(spec));
    }
    println!(
        "queued {} from {shown}; follow them with `cimg-importd watch`",
        super::count(ids.len(), "request", "requests")
    );
    Ok(())
}

/// How a queued request is shown: its name, then target <- source region/image, as the
/// history's `queued` event shows it.
fn describe(spec: &ImportSpec) -> String {
    format!(
        "{}, {} <- {}/{}",
        spec.name, spec.region_id, spec.origin_region_id, spec.origin_image_uuid
    )
}

/// The file's name as messages show it.
fn shown_name(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        format!("`{}`", path.display())
    }
}

/// The format `--format` gives, or else the one the extension names.
fn format_of(path: &Path, given: Option<InputFormat>) -> Result<InputFormat, String> {
    if let Some(format) = given {
        return Ok(format);
    }
    let extension = path
        .extension()
        .and_then(|ext| ext.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("csv") => Ok(InputFormat::Csv),
        Some("jsonl" | "json" | "ndjson") => Ok(InputFormat::Jsonl),
        _ if path == Path::new("-") => {
            Err("reading standard input needs --format csv or --format jsonl".to_owned())
        }
        _ => Err(format!(
            "cannot tell the format of `{}` from its name: name it .csv or .jsonl, or pass \
             --format csv or --format jsonl",
            path.display()
        )),
    }
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    let read = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map(|_| bytes)
    } else {
        std::fs::read(path)
    };
    let bytes = read.map_err(|err| {
        usage(format!(
            "cannot read {}: {err}: check the path",
            shown_name(path)
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        usage(format!(
            "{} is not UTF-8 text: save it as UTF-8 and run again",
            shown_name(path)
        ))
    })?;
    Ok(text.trim_start_matches('\u{feff}').to_owned())
}

/// Every request of a file with its line number, or a problem with the file as a whole
/// (its header), naming the line.
fn read_requests(text: &str, format: InputFormat) -> Result<Vec<ReadLine>, String> {
    match format {
        InputFormat::Csv => read_csv(text),
        InputFormat::Jsonl => read_json_lines(text),
    }
}

/// Where each column is in a CSV file.
#[derive(Debug, PartialEq, Eq)]
struct Columns {
    region_id: usize,
    name: usize,
    origin_image_uuid: usize,
    origin_region_id: usize,
    description: Option<usize>,
}

const CSV_COLUMNS: &str = "region_id,name,origin_image_uuid,origin_region_id[,description]";

impl Columns {
    fn from_header(header: &csv::StringRecord) -> Result<Columns, String> {
        let mut found: [Option<usize>; 5] = [None; 5];
        let names = [
            "region_id",
            "name",
            "origin_image_uuid",
            "origin_region_id",
            "description",
        ];
        for (index, column) in header.iter().enumerate() {
            let Some(slot) = names.iter().position(|name| *name == column) else {
                return Err(format!(
                    "line 1: unknown column `{column}` in the header: expected {CSV_COLUMNS}"
                ));
            };
            if found[slot].replace(index).is_some() {
                return Err(format!(
                    "line 1: column `{column}` appears twice in the header"
                ));
            }
        }
        let required = |slot: usize| {
            found[slot].ok_or_else(|| {
                format!(
                    "line 1: the header has no `{}` column: expected {CSV_COLUMNS}",
                    names[slot]
                )
            })
        };
        Ok(Columns {
            region_id: required(0)?,
            name: required(1)?,
            origin_image_uuid: required(2)?,
            origin_region_id: required(3)?,
            description: found[4],
        })
    }

    fn fields(&self, record: &csv::StringRecord) -> RequestFields {
        let cell = |index: usize| record.get(index).unwrap_or_default().to_owned();
        RequestFields {
            region_id: cell(self.region_id),
            name: cell(self.name),
            origin_image_uuid: cell(self.origin_image_uuid),
            origin_region_id: cell(self.origin_region_id),
            description: self.description.map(cell).filter(|text| !text.is_empty()),
        }
    }
}

fn read_csv(text: &str) -> Result<Vec<ReadLine>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|err| format!("line 1: cannot read the header: {err}"))?
        .clone();
    let columns = Columns::from_header(&header)?;
    let line_of = |position: Option<&csv::Position>| line_at(text, position);
    let lines = reader
        .records()
        .map(|record| match record {
            Ok(record) => (line_of(record.position()), Ok(columns.fields(&record))),
            Err(err) => (line_of(err.position()), Err(csv_problem(&err))),
        })
        .collect();
    Ok(lines)
}

/// The line a record starts on. The reader's own position is where it began to look for
/// the record, before the blank lines it skips, so count from the first byte after them.
fn line_at(text: &str, position: Option<&csv::Position>) -> u64 {
    let Some(position) = position else {
        return 0;
    };
    let bytes = text.as_bytes();
    let mut start = usize::try_from(position.byte()).map_or(bytes.len(), |b| b.min(bytes.len()));
    while matches!(bytes.get(start), Some(b'\n' | b'\r')) {
        start += 1;
    }
    let before = bytes[..start].iter().filter(|b| **b == b'\n').count();
    before as u64 + 1
}

fn csv_problem(err: &csv::Error) -> String {
    match err.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "has {len} fields but the header has {expected_len}: quote values that contain \
             commas"
        ),
        _ => err.to_string(),
    }
}

fn read_json_lines(text: &str) -> Result<Vec<ReadLine>, String> {
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index as u64 + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if lines.is_empty() && line.starts_with('[') {
            return Err(format!(
                "line {number}: a JSON array is not read here: write one JSON object per line"
            ));
        }
        let parsed = serde_json::from_str::<JsonRequest>(line)
            .map(|request| RequestFields {
                region_id: request.region_id,
                name: request.name,
                origin_image_uuid: request.origin_image_uuid,
                origin_region_id: request.origin_region_id,
                description: request.description,
            })
            .map_err(|err| {
                // Each line is parsed alone, so serde's "line 1" would only mislead.
                err.to_string().replace(" at line 1 column ", " at column ")
            });
        lines.push((number, parsed));
    }
    Ok(lines)
}

/// Runs the daemon's own check on every request read; returns the good ones with their
/// line numbers, and every problem as (line, reason).
fn check_all(lines: Vec<ReadLine>, allowed_regions: &[String]) -> (Vec<Accepted>, Vec<Problem>) {
    let mut good = Vec::new();
    let mut problems = Vec::new();
    for (line, read) in lines {
        match read.and_then(|fields| validate::check(fields, allowed_regions)) {
            Ok(spec) => good.push((line, spec)),
            Err(reason) => problems.push((line, reason)),
        }
    }
    (good, problems)
}

fn report_problems(shown: &str, problems: &[Problem]) {
    for (line, reason) in problems.iter().take(PROBLEMS_SHOWN) {
        eprintln!("{shown} line {line}: {reason}");
    }
    if problems.len() > PROBLEMS_SHOWN {
        eprintln!(
            "{shown}: {} more bad lines not shown",
            problems.len() - PROBLEMS_SHOWN
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "4a48f88391134a01befe88ff98b68af8";

    /// Each request of a file, as a line of text or the reason it is refused.
    type Outcome = (u64, Result<String, String>);

    /// A file, its format, and per line: no problem, or a word of the expected reason.
    type FileCase<'a> = (&'a str, &'a str, InputFormat, &'a [(u64, Option<&'a str>)]);

    fn outcomes(text: &str, format: InputFormat) -> Result<Vec<Outcome>, String> {
        let lines = read_requests(text, format)?;
        Ok(lines
            .into_iter()
            .map(|(line, read)| {
                let shown = read.and_then(|fields| {
                    validate::check(fields, &[]).map(|spec| {
                        format!("{} {} {:?}", spec.region_id, spec.name, spec.description)
                    })
                });
                (line, shown)
            })
            .collect())
    }

    #[test]
    fn format_comes_from_the_option_or_the_extension() {
        let cases: &[(&str, &str, Option<InputFormat>, Option<InputFormat>)] = &[
            ("csv extension", "a.csv", None, Some(InputFormat::Csv)),
            ("upper case", "A.CSV", None, Some(InputFormat::Csv)),
            ("jsonl extension", "a.jsonl", None, Some(InputFormat::Jsonl)),
            ("json extension", "a.json", None, Some(InputFormat::Jsonl)),
            (
                "option wins",
                "a.csv",
                Some(InputFormat::Jsonl),
                Some(InputFormat::Jsonl),
            ),
            ("unknown extension", "a.txt", None, None),
            ("no extension", "requests", None, None),
            ("stdin without option", "-", None, None),
            (
                "stdin with option",
                "-",
                Some(InputFormat::Csv),
                Some(InputFormat::Csv),
            ),
        ];
        for (name, path, given, want) in cases {
            assert_eq!(format_of(Path::new(path), *given).ok(), *want, "{name}");
        }
    }

    #[test]
    fn csv_rows_are_read_with_their_line_numbers() {
        let text = format!(
            "region_id, name, origin_image_uuid, origin_region_id, description\n\
             gz, web, {UUID}, bj, release 12\n\
             \n\
             bj,db,{UUID},gz,\n"
        );
        let got = outcomes(&text, InputFormat::Csv).unwrap();
        assert_eq!(
            got,
            vec![
                (2, Ok(r#"gz web Some("release 12")"#.to_owned())),
                (4, Ok("bj db None".to_owned())),
            ]
        );
    }

    #[test]
    fn csv_columns_may_come_in_any_order_without_description() {
        let text = format!("name,origin_region_id,region_id,origin_image_uuid\nweb,bj,gz,{UUID}\n");
        let got = outcomes(&text, InputFormat::Csv).unwrap();
        assert_eq!(got, vec![(2, Ok("gz web None".to_owned()))]);
    }

    #[test]
    fn bad_csv_headers_are_refused_naming_the_column() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "unknown column",
                "region_id,name,uuid,origin_region_id\n",
                "unknown column `uuid`",
            ),
            (
                "missing column",
                "region_id,name,origin_image_uuid\n",
                "no `origin_region_id`",
            ),
            (
                "column twice",
                "region_id,name,name,origin_image_uuid,origin_region_id\n",
                "`name` appears twice",
            ),
        ];
        for (name, text, needle) in cases {
            let err = read_requests(text, InputFormat::Csv).expect_err(name);
            assert!(
                err.starts_with("line 1: ") && err.contains(needle),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn bad_rows_are_named_by_line_and_good_rows_still_read() {
        let csv = format!(
            "region_id,name,origin_image_uuid,origin_region_id\n\
             gz,ok,{UUID},bj\n\
             gz,too,many,fields,here\n\
             gz,same,{UUID},gz\n"
        );
        let good = serde_json::json!({
            "region_id": "gz", "name": "ok", "origin_image_uuid": UUID, "origin_region_id": "bj"
        });
        let mut extra = good.clone();
        extra["colour"] = 1.into();
        let jsonl =
            format!("{good}\n{{\"region_id\":\"gz\",\"name\":\"x\"}}\n\n{extra}\nnot json\n");
        let cases: &[FileCase] = &[
            (
                "csv",
                &csv,
                InputFormat::Csv,
                &[
                    (2, None),
                    (3, Some("has 5 fields but the header has 4")),
                    (4, Some("both `gz`")),
                ],
            ),
            (
                "json lines",
                &jsonl,
                InputFormat::Jsonl,
                &[
                    (1, None),
                    (2, Some("missing field `origin_image_uuid`")),
                    (4, Some("unknown field `colour`")),
                    (5, Some("at column 2")),
                ],
            ),
        ];
        for (name, text, format, want) in cases {
            let got = outcomes(text, *format).unwrap();
            assert_eq!(got.len(), want.len(), "{name}: {got:?}");
            for ((line, shown), (want_line, needle)) in got.iter().zip(want.iter()) {
                assert_eq!(line, want_line, "{name}");
                match (shown, needle) {
                    (Ok(_), None) => {}
                    (Err(reason), Some(needle)) => {
                        assert!(reason.contains(needle), "{name} line {line}: {reason}")
                    }
                    other => panic!("{name} line {line}: unexpected {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_json_array_is_refused_with_the_expected_form() {
        let err = read_requests("[{\"region_id\": \"gz\"}]\n", InputFormat::Jsonl).unwrap_err();
        assert!(err.contains("one JSON object per line"), "{err}");
    }
}
