//! `crust-bench jobs` (being written).

/// Options of `crust-bench jobs`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the bench.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}
