//! owamp-cli shared code
