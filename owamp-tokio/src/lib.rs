//! owamp-tokio adapter
