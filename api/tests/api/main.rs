//! Integration tests of crust-api against real Postgres: one module per
//! resource, each test on a database of its own.

mod access;
mod auth;
mod charts;
mod csv;
mod edits;
mod flow;
mod hardening;
mod helpers;
mod hooks;
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
mod triggers;
mod ui;
mod versions;
mod workers;
