//! owamp-std adapter
