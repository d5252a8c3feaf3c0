//! cimg-importd queues cross-region copies of DiDi Cloud custom images from a SQLite table,
//! submits each to the ImportCIMG API, tracks the job to its end and keeps the whole
//! history in the same database.
//!
//! A tour, in the order a request meets the parts:
//!
//! - [`config`]: settings from defaults, the TOML file and the environment; the API token.
//! - [`store`]: the SQLite database (queue, jobs, history); every SQL statement.
//! - [`validate`]: checks a queued row before anything is sent.
//! - [`submitter`]: claims due rows and calls ImportCIMG, a bounded number at a time.
//! - [`api`]: the HTTP client of the three endpoints and what each failure means.
//! - [`poller`]: asks JobResult about open jobs, batched per region, on a schedule that
//!   slows as jobs age, and records every change.
//! - [`reconciler`]: settles requests whose submission had an unknown outcome, through
//!   ListCIMG, so that no image is ever imported twice.
//! - [`schedule`]: the poll interval and retry backoff rules.
//! - [`service`]: start-up, recovery after a crash, the loops, shutdown.
//! - [`health`] and [`notify`]: what the loops are doing, told to systemd (readiness,
//!   status, a watchdog that only vouches for loops making progress).
//! - [`simulator`]: a loopback stand-in for the API, for tests, the demo and benchmarks.
//! - [`demo`]: the whole path on a fresh database against the simulator.
//! - [`report`]: plain-text tables and JSON of the operator views.
//! - [`metrics`]: the optional Prometheus endpoint.
//! - [`retention`]: removal of old finished requests, off by default.
//! - [`cli`] and [`commands`]: the command line; one file per command (`run`, `enqueue`,
//!   `list`, `show`, `watch`, `retry`/`cancel`, `check-config`), all SQL left to the store.
//!
//! An operator's `INSERT INTO import_requests …` (or `cimg-importd enqueue`) is picked up by
//! the submitter within `queue.scan_interval`; the job the API returns goes into `jobs`; the
//! poller moves the request to `succeeded` or `failed` when the job ends; every step lands in
//! `events`, read through the `request_status` and `request_history` views.

#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod poller;
pub mod reconciler;
pub mod report;
pub mod retention;
pub mod schedule;
pub mod service;
pub mod simulator;
pub mod store;
pub mod submitter;
pub mod validate;
