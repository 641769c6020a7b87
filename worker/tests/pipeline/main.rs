//! End-to-end tests of the job pipeline against real Postgres and RabbitMQ:
//! api, scheduler and workers through their real `run` functions (and the
//! real worker binary where a process must die), each test with a database
//! and queue names of its own. Every guarantee of DESIGN.md's "Workflows
//! and jobs" has a test here that fails if it breaks.

mod access;
mod crashes;
mod csv;
mod engine;
mod flow;
mod follow;
mod helpers;
mod isolation;
mod otlp;
mod pause;
mod recovery;
mod runs;
mod scheduling;
mod secrets;
mod stops;
mod traces;
mod triggers;
mod ui;
mod versions;
mod workers;
