//! Test sessions: schedules, sender and receiver.

pub mod schedule;

pub use schedule::{ExpDeviates, Schedule, ScheduleError, ScheduleIter, ScheduledPacket};
