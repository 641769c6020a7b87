//! Integration tests of crust-api against real Postgres: one module per
//! resource, each test on a database of its own.

mod auth;
mod charts;
mod edits;
mod hardening;
mod helpers;
mod job_keys;
mod jobs;
mod limits;
mod modules;
mod pages;
mod pause;
mod process;
mod query;
mod queues;
mod records;
mod search;
mod secrets;
mod ui;
mod versions;
mod workers;
