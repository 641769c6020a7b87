//! `crust-bench`: benchmarks of a running Crust, each measured against the
//! physical limit (Postgres alone) in the same run on the same machine.
//!
//! One module per bench (`records`, `query`, `jobs/`, `engine/`, `memory`,
//! `prune`, `csv`);
//! what they share: `client` (the api, its token and the database),
//! `report` (the load driver, latency summaries, tables, failures and
//! verdicts) and `procfs` (a process's memory). `engine/` also reuses the
//! jobs bench's workers, warm-up, throughput phase and job-row waits.

mod client;
mod csv;
mod engine;
mod jobs;
mod jobs_follow;
mod jobs_search;
mod memory;
mod procfs;
mod prune;
mod query;
mod records;
mod report;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "crust-bench", version, about = "Benchmarks of a running Crust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Record create and read throughput through the API, against direct
    /// single-row INSERTs and SELECTs in Postgres.
    Records(records::Args),
    /// Filtered listing and reports over a million records, against the
    /// same report in plain SQL on a native typed table.
    Query(query::Args),
    /// Job throughput, start latency, delayed-start lateness, cancel
    /// latency and worker memory, against the same row work done directly
    /// in Postgres.
    Jobs(jobs::Args),
    /// Job search (`GET /job/?filter=`) over a million jobs, against the
    /// same page and count in plain SQL.
    JobsSearch(jobs_search::Args),
    /// Live logs: delivery delay to many SSE followers, and the api's CPU
    /// while they idle.
    JobsFollow(jobs_follow::Args),
    /// What the workflow engine costs over plain jobs: a `forEach` fan-out
    /// (items/s), 10 parallel tasks against 10 in sequence, and the two
    /// statements of a durable step, against plain jobs of the same run.
    Engine(engine::Args),
    /// A running worker's peak memory under jobs of many `http` tasks that
    /// each fetch a megabyte of JSON: one job, then many at once.
    Memory(memory::Args),
    /// CSV export of a million records (rows/s, the api's memory) against
    /// Postgres's COPY, and CSV import end to end against INSERT … SELECT.
    Csv(csv::Args),
    /// Retention at a million finished jobs: the row-by-row prune against
    /// dropping whole ranges of job IDs (log and step partitions).
    Prune(prune::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Records(args) => records::run(args).await,
        Command::Query(args) => query::run(args).await,
        Command::Jobs(args) => jobs::run(args).await,
        Command::JobsSearch(args) => jobs_search::run(args).await,
        Command::JobsFollow(args) => jobs_follow::run(args).await,
        Command::Engine(args) => engine::run(args).await,
        Command::Memory(args) => memory::run(args).await,
        Command::Prune(args) => prune::run(args).await,
        Command::Csv(args) => csv::run(args).await,
    }
}
