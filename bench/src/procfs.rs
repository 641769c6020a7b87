//! A process's memory as the kernel reports it in `/proc/<pid>/status`
//! (`VmRSS`, the resident set now; `VmHWM`, its peak), for the benches
//! that watch a worker's or the api's memory, and finding a process by name.

use anyhow::Context;

/// A `/proc/<pid>/status` field given in kB (KiB), in KiB.
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status (has the worker exited?)"))?;
    parse_kib(&status, field).with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The pid of the only process named `name` (`flag` is the option that
/// names one when there are several or none).
pub fn find(name: &str, flag: &str) -> anyhow::Result<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            if comm.trim() == name {
                found.push(pid);
            }
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => anyhow::bail!("no process named {name} runs; start one or pass {flag}"),
        many => anyhow::bail!("several {name} processes run ({many:?}); pass {flag}"),
    }
}

/// `field`'s value in KiB from the text of a status file.
fn parse_kib(status: &str, field: &str) -> Option<f64> {
    let line = status
        .lines()
        .find(|line| line.starts_with(&format!("{field}:")))?;
    line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_kib() {
        let status = "Name:\tcrust-worker\nVmPeak:\t  99999 kB\nVmHWM:\t  204800 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(parse_kib(status, "VmRSS"), Some(10_240.0));
        assert_eq!(parse_kib(status, "VmHWM"), Some(204_800.0));
        assert_eq!(parse_kib(status, "VmSwap"), None);
        assert_eq!(parse_kib("Name:\tx\n", "VmRSS"), None);
    }
}
