//! The job store's state machine, tested straight against a database of
//! its own per test: no HTTP, no broker, no processes. Each test names one
//! rule the big statements of `crust_store::jobs` must keep, so they can be
//! changed safely.

mod access;
mod engine;
mod flow;
mod jobs;
mod pause;
mod retention;
mod secrets;
mod steps;
mod support;
mod triggers;
mod workflows;
