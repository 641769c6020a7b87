//! Integration tests of crust-api against real Postgres: one module per
//! resource, each test on a database of its own.

mod auth;
mod charts;
mod helpers;
mod jobs;
mod limits;
mod modules;
mod pages;
mod query;
mod records;
