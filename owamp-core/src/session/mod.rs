//! Test sessions: schedules, sender and receiver.
