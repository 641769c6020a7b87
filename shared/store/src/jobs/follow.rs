//! What live log followers need from Postgres: the channels triggers notify
//! (migration 0009) and how their payloads read.
//!
//! A bump of `jobs.log_seq` (every log writer hands out seq numbers that
//! way, in the transaction that inserts the lines) notifies [`LOG_CHANNEL`]
//! with `<jobID>:<new log_seq>`; a job reaching a final status notifies
//! [`STATUS_CHANNEL`] with `<jobID>`. Both are sent in the
//! writer's transaction, so Postgres delivers them at its commit, when the
//! lines and status are visible, to every api process listening.

use crust_model::Id;

/// Channel of "a job has new log lines" (`<jobID>:<seq>`).
pub const LOG_CHANNEL: &str = "crust_job_logs";

/// Channel of "a job finished" (`<jobID>`).
pub const STATUS_CHANNEL: &str = "crust_job_status";

/// A notification as the followers' hub sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The job's log now reaches `seq`.
    Logged { job: Id, seq: i32 },
    /// The job reached a final status.
    Finished { job: Id },
}

/// Reads a notification of [`LOG_CHANNEL`] or [`STATUS_CHANNEL`]; `None`
/// for another channel or a payload of another shape.
pub fn parse_notice(channel: &str, payload: &str) -> Option<Notice> {
    match channel {
        LOG_CHANNEL => {
            let (job, seq) = payload.split_once(':')?;
            Some(Notice::Logged {
                job: Id::parse(job).ok()?,
                seq: seq.parse().ok()?,
            })
        }
        STATUS_CHANNEL => Some(Notice::Finished {
            job: Id::parse(payload).ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_and_strangers_do_not() {
        let job = Id::parse("12").unwrap();
        assert_eq!(
            parse_notice(LOG_CHANNEL, "12:7"),
            Some(Notice::Logged { job, seq: 7 })
        );
        assert_eq!(
            parse_notice(STATUS_CHANNEL, "12"),
            Some(Notice::Finished { job })
        );
        assert_eq!(parse_notice(LOG_CHANNEL, "12"), None);
        assert_eq!(parse_notice("other", "12"), None);
    }
}
